"""The PyTorch CutLER port reproduces the detectron2 reference outputs (shared/fixtures/cutler-ref).

Weights are rebuilt with the fixture's recipe.py from its key manifest, loaded through
the strict detectron2-key converter, and run on ``input_resized`` with ``resize=False``
and ``output_hw=orig_hw``. Tolerances are the fixture README's: features within 2e-2;
every reference detection matched by a port detection with box IoU >= 0.99 and
|score difference| <= 1e-3; pasted masks of matched pairs with mask IoU >= 0.98.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from torchvision.ops import box_iou

from uvis import masks as mask_ops
from uvis.proposers.cutler import CutlerNet, RawDetections, load_cutler
from uvis.proposers.cutler.testing import recipe_state_dict
from uvis.types import Instances

FIXTURES = Path(__file__).resolve().parents[1].parent / "shared" / "fixtures" / "cutler-ref"
CASES = ("dev_astronaut", "dev_chelsea_800")

FEATURE_ATOL = 2e-2
BOX_IOU_MIN = 0.99
SCORE_ATOL = 1e-3
MASK_IOU_MIN = 0.98
MASK_PROB_ATOL = 2e-2  # float16 storage, as the features


@dataclass
class Run:
    ref: dict[str, np.ndarray]
    meta: dict
    model: CutlerNet
    raw: RawDetections
    detected: Instances


def _fixture_files(case: str) -> tuple[Path, Path]:
    npz, js = FIXTURES / f"{case}.npz", FIXTURES / f"{case}.json"
    if not npz.is_file() or not js.is_file():
        pytest.fail(f"reference fixture {case} missing under {FIXTURES} (../shared must sit beside the repo)")
    return npz, js


def _build_run(case: str) -> Run:
    npz, js = _fixture_files(case)
    ref = dict(np.load(npz))
    meta = json.loads(js.read_text())
    model = load_cutler(recipe_state_dict(js), min_size=meta["min_size"], max_size=meta["max_size"])
    image = ref["input_resized"]
    orig_hw = tuple(int(v) for v in ref["orig_hw"])
    with torch.inference_mode():
        raw = model.forward_raw([torch.from_numpy(image).permute(2, 0, 1)], score_threshold=0.0)[0]
    detected = model.detect(image, output_hw=orig_hw, resize=False, score_threshold=0.0)
    return Run(ref=ref, meta=meta, model=model, raw=raw, detected=detected)


@pytest.fixture(scope="module")
def astronaut_run() -> Run:
    return _build_run("dev_astronaut")


@pytest.fixture(scope="module", params=CASES)
def run(request: pytest.FixtureRequest) -> Run:
    if request.param == "dev_astronaut":
        return request.getfixturevalue("astronaut_run")
    return _build_run(request.param)


def match(ref_boxes: np.ndarray, ref_scores: np.ndarray, boxes: np.ndarray, scores: np.ndarray,
          iou_min: float = BOX_IOU_MIN, score_atol: float = SCORE_ATOL) -> np.ndarray:
    """For each reference box, the index of the best-IoU port box that also has a score within
    ``score_atol`` and IoU >= ``iou_min``; -1 when there is none."""
    iou = box_iou(torch.as_tensor(ref_boxes, dtype=torch.float32), torch.as_tensor(boxes, dtype=torch.float32)).numpy()
    ok = (iou >= iou_min) & (np.abs(ref_scores[:, None] - scores[None, :]) <= score_atol)
    iou = np.where(ok, iou, -1.0)
    best = iou.argmax(axis=1) if iou.shape[1] else np.zeros(len(ref_boxes), dtype=np.int64)
    return np.where(ok.any(axis=1), best, -1)


def test_network_input_is_the_padded_shape(run: Run) -> None:
    batch, sizes = run.model.preprocess([torch.from_numpy(run.ref["input_resized"]).permute(2, 0, 1)])
    assert tuple(batch.shape[-2:]) == tuple(int(v) for v in run.ref["padded_shape"])
    assert sizes == [tuple(run.ref["input_resized"].shape[:2])]


def test_fpn_features_match_reference(astronaut_run: Run) -> None:
    ref = astronaut_run.ref
    _, js = _fixture_files("dev_astronaut")
    unfused = load_cutler(recipe_state_dict(js), fuse_bn=False, channels_last=False)
    image = torch.from_numpy(ref["input_resized"]).permute(2, 0, 1)
    # BN folded into the convs + channels-last (the default), and BN as separate ops
    for label, model in (("fused", astronaut_run.model), ("unfused", unfused)):
        with torch.inference_mode():
            batch, _ = model.preprocess([image])
            feats = model.features(batch)
        for level, feat in zip(range(2, 7), feats):
            expected = torch.from_numpy(ref[f"feat_p{level}"].astype(np.float32))
            assert feat.shape[1:] == expected.shape, f"p{level}"
            err = (feat[0] - expected).abs().max().item()
            assert err <= FEATURE_ATOL, f"p{level} ({label}): max abs error {err}"


def test_rpn_proposals_match_reference(run: Run) -> None:
    ref_boxes, ref_logits = run.ref["rpn_boxes"], run.ref["rpn_logits"]
    boxes, logits = run.raw.proposal_boxes.numpy(), run.raw.proposal_logits.numpy()
    assert len(boxes) == len(ref_boxes) == 1000
    assert np.all(np.diff(logits) <= 0), "proposals must come best first"
    idx = match(ref_boxes, ref_logits, boxes, logits)
    assert (idx >= 0).all(), f"{int((idx < 0).sum())} reference proposals have no match"
    assert len(set(idx.tolist())) == len(idx), "two reference proposals matched the same port proposal"


def test_detections_and_scores_match_reference(run: Run) -> None:
    ref_boxes, ref_scores = run.ref["det_boxes_resized"], run.ref["det_scores"]
    boxes, scores = run.raw.boxes.numpy(), run.raw.scores.numpy()
    assert len(boxes) == len(ref_boxes) == run.meta["n_final"]
    idx = match(ref_boxes, ref_scores, boxes, scores)
    assert (idx >= 0).all(), f"unmatched reference detections: {np.flatnonzero(idx < 0).tolist()}"
    assert len(set(idx.tolist())) == len(idx)
    probs = run.raw.mask_probs.numpy()[idx]
    ref_probs = run.ref["final_mask_probs_28"].astype(np.float32)
    assert probs.shape == ref_probs.shape == (len(ref_boxes), 1, 28, 28)
    assert np.abs(probs - ref_probs).max() <= MASK_PROB_ATOL


def test_detect_output_matches_reference_at_original_size(run: Run) -> None:
    det = run.detected
    orig_hw = tuple(int(v) for v in run.ref["orig_hw"])
    assert det.image_size == orig_hw
    assert det.boxes.dtype == np.float32 and det.boxes.shape == (len(det), 4)
    assert all(isinstance(m["counts"], str) and list(m["size"]) == list(orig_hw) for m in det.masks)
    ref_boxes, ref_scores = run.ref["final_boxes"], run.ref["final_scores"]
    idx = match(ref_boxes, ref_scores, det.boxes, det.objectness)
    assert (idx >= 0).all(), f"unmatched reference detections: {np.flatnonzero(idx < 0).tolist()}"
    ref_masks = json.loads(str(run.ref["final_masks_rle"]))
    assert len(ref_masks) == len(ref_boxes)
    worst = 1.0
    for i, j in enumerate(idx):
        a, b = ref_masks[i], det.masks[j]
        area_a, area_b = mask_ops.area([a])[0], mask_ops.area([b])[0]
        iou = 1.0 if area_a == area_b == 0 else float(mask_ops.iou_matrix([a], [b])[0, 0])
        worst = min(worst, iou)
        assert iou >= MASK_IOU_MIN, f"detection {i}: mask IoU {iou:.4f}"
    assert worst >= MASK_IOU_MIN


def test_score_threshold_keeps_a_prefix(astronaut_run: Run) -> None:
    """Thresholding inside the network equals thresholding its 0.0 output afterwards."""
    run = astronaut_run
    image = run.ref["input_resized"]
    orig_hw = tuple(int(v) for v in run.ref["orig_hw"])
    threshold = float(np.median(run.detected.objectness))
    high = run.model.detect(image, output_hw=orig_hw, resize=False, score_threshold=threshold)
    keep = run.detected.objectness > threshold
    assert len(high) == int(keep.sum())
    np.testing.assert_allclose(high.boxes, run.detected.boxes[keep], atol=1e-3)
