"""End to end on CPU: ``python -m uvis train --preset tiny`` on the bundled clip's curated
pseudo-labels (motion proposals + EfficientNet embeddings, confident proposals relabelled
"person" through the curation log). The tiny model (2 decoder layers, 16 queries, 64 dims,
short side 192, frozen random-init ResNet-50) must learn: the total loss falls, and its
predictions on the training frames match the training targets with mean IoU >= 0.5."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment

from uvis.cli import main
from uvis.vis.train_testing import make_curated_workspace


def _mean_iou(run_dir) -> tuple[float, int]:
    """Per training target: IoU with the prediction (class score > 0.5) assigned to it one to one
    (Hungarian on IoU; no prediction -> 0), averaged over all targets of all training frames."""
    from uvis.vis.model import load_minvis
    from uvis.vis.train_data import Augment, FrameDataset, TrainSet

    model = load_minvis(torch.load(run_dir / "model_final.pth", weights_only=True))
    data = TrainSet.load(run_dir / "data.json")
    short = json.loads((run_dir / "train_config.json").read_text())["train"]["min_sizes"][0]
    ds = FrameDataset(data, Augment((short,), 1333, flip_prob=0.0))
    ious: list[float] = []
    for i, s in enumerate(data.samples):
        if not s.labels:
            continue
        sample = ds[(i, 0)]
        assert len(sample["masks"]) == len(s.masks)
        images, sizes = model.preprocess([sample["image"]])
        with torch.no_grad():
            out = model(images)
        h, w = sizes[0]
        masks = F.interpolate(out["pred_masks"], size=images.shape[-2:], mode="bilinear",
                              align_corners=False)[0, :, :h, :w] > 0
        keep = out["pred_logits"][0].softmax(-1)[:, :-1].max(-1).values > 0.5
        pred = masks[keep].reshape(int(keep.sum()), -1).float()
        tgt = sample["masks"].reshape(len(sample["masks"]), -1).float()
        inter = tgt @ pred.T
        iou = (inter / (tgt.sum(1)[:, None] + pred.sum(1)[None] - inter).clamp(min=1)).numpy()
        per = np.zeros(len(tgt))
        if iou.size:
            r, c = linear_sum_assignment(-iou)
            per[r] = iou[r, c]
        ious += per.tolist()
    return float(np.mean(ious)), len(ious)


@pytest.mark.slow
def test_tiny_model_overfits_the_curated_clip(tmp_path, example_video, capsys):
    ws = make_curated_workspace(tmp_path / "ws", example_video, max_frames=8)
    run = tmp_path / "run"
    assert main(["train", "--workspace", str(ws), "--out", str(run), "--preset", "tiny", "--quiet"]) == 0
    metrics = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert len(metrics) == 300 and metrics[-1]["iter"] == 300
    first, last = np.mean([m["loss"] for m in metrics[:20]]), np.mean([m["loss"] for m in metrics[-20:]])
    assert last < 0.5 * first, f"loss did not fall: first 20 iterations {first:.2f}, last 20 {last:.2f}"
    for key in ("loss_ce", "loss_mask", "loss_dice", "loss_ce_0", "loss_dice_1", "lr", "s_per_iter", "memory_mb"):
        assert key in metrics[-1]
    miou, n = _mean_iou(run)
    assert n >= 10
    assert miou >= 0.5, f"mean IoU with the training targets {miou:.3f} < 0.5"
