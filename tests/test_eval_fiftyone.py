"""Cross-check of frame-level TP/FP/FN against FiftyOne's COCO-style evaluation.

FiftyOne (``evaluate_detections(..., use_masks=True, iou=0.5)``) runs in a subprocess
(this file run as a script) with a temporary database, so the test session never
starts MongoDB itself and leaves nothing behind.

Definitional differences found (documented in docs/evaluation.md):
* FiftyOne matches at IoU >= threshold, ours (the paper) at IoU > threshold: a pair at
  exactly 0.5 is a TP there and FP + FN here (checked below on a constructed frame);
* FiftyOne computes mask IoU from box-cropped masks pasted back into the frame: exact
  when the box is the mask's tight pixel box, as here;
* crowd ground truth: FiftyOne counts a prediction matched to a crowd as TP; we ignore
  it (neither TP nor FP), as COCO does. The random set has no crowds.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from uvis.eval.frame_f1 import FrameObject, frame_f1
from uvis.masks import decode, encode, iou_matrix

H, W = 48, 64
N_CLASSES = 4


def _random_set(seed: int, n_frames: int = 80) -> tuple[list, list]:
    """Frames without exact-threshold or tied IoUs (where the two definitions may differ)."""
    rng = np.random.default_rng(seed)
    gts: list[list[FrameObject]] = []
    preds: list[list[FrameObject]] = []
    while len(gts) < n_frames:
        g, p = [], []
        for _ in range(rng.integers(0, 5)):
            c = int(rng.integers(1, N_CLASSES + 1))
            m = _blob(rng)
            g.append(FrameObject(c, encode(m)))
            for _ in range(rng.integers(0, 3)):
                dm = np.roll(m, tuple(rng.integers(-4, 5, 2)), axis=(0, 1))
                if dm.any():
                    pc = c if rng.random() < 0.8 else int(rng.integers(1, N_CLASSES + 1))
                    p.append(FrameObject(pc, encode(dm), float(rng.random())))
        for _ in range(rng.integers(0, 3)):
            p.append(FrameObject(int(rng.integers(1, N_CLASSES + 1)), encode(_blob(rng)), float(rng.random())))
        if _ambiguous(g, p):
            continue
        gts.append(g)
        preds.append(p)
    return gts, preds


def _blob(rng: np.random.Generator) -> np.ndarray:
    """A rectangle or an ellipse, never empty."""
    m = np.zeros((H, W), dtype=bool)
    y, x = int(rng.integers(0, H - 8)), int(rng.integers(0, W - 8))
    h, w = int(rng.integers(6, H - y + 1)), int(rng.integers(6, W - x + 1))
    if rng.random() < 0.5:
        m[y:y + h, x:x + w] = True
    else:
        yy, xx = np.mgrid[0:H, 0:W]
        m = ((yy - y - h / 2) / (h / 2)) ** 2 + ((xx - x - w / 2) / (w / 2)) ** 2 <= 1.0
    return m


def _ambiguous(g: list[FrameObject], p: list[FrameObject]) -> bool:
    if not g or not p:
        return False
    ious = iou_matrix([o.rle for o in p], [o.rle for o in g])
    same = np.array([[a.class_id == b.class_id for b in g] for a in p])
    if np.any(np.isclose(ious, 0.5) & same):
        return True
    for row, ok in zip(ious, same):
        vals = row[ok & (row >= 0.5)]
        if len(vals) != len(np.unique(vals)):
            return True
    return False


def _tie_set() -> tuple[list, list]:
    g = np.zeros((H, W), dtype=bool)
    g[10:20, 10:30] = True  # 200 px
    d = np.zeros((H, W), dtype=bool)
    d[10:20, 10:20] = True  # 100 px inside: IoU exactly 0.5
    return [[FrameObject(1, encode(g))]], [[FrameObject(1, encode(d), 0.9)]]


def _serialise(gts: list, preds: list) -> list:
    return [{"gt": [[o.class_id, o.rle] for o in g], "pred": [[o.class_id, o.rle, o.score] for o in p]}
            for g, p in zip(gts, preds)]


def _counts(result) -> dict[str, list[int]]:
    return {str(c): [n.tp, n.fp, n.fn] for c, n in result.per_class.items()}


@pytest.fixture(scope="session")
def fiftyone_counts(tmp_path_factory: pytest.TempPathFactory) -> dict:
    pytest.importorskip("fiftyone")
    tmp = tmp_path_factory.mktemp("fiftyone")
    sets = {"random": _serialise(*_random_set(0)), "tie": _serialise(*_tie_set())}
    (tmp / "in.json").write_text(json.dumps(sets))
    env = dict(os.environ, FIFTYONE_DATABASE_DIR=str(tmp / "db"), FIFTYONE_DO_NOT_TRACK="true",
               FIFTYONE_DATABASE_VALIDATION="false", FIFTYONE_DEFAULT_DATASET_DIR=str(tmp / "datasets"),
               PYTHONPATH=os.pathsep.join([str(Path(__file__).resolve().parents[1]), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.run([sys.executable, __file__, str(tmp / "in.json"), str(tmp / "out.json")],
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads((tmp / "out.json").read_text())


def test_tp_fp_fn_per_class_agree_with_fiftyone(fiftyone_counts: dict) -> None:
    gts, preds = _random_set(0)
    ours = _counts(frame_f1(gts, preds))
    theirs = fiftyone_counts["random"]
    assert ours == theirs
    assert sum(v[0] for v in ours.values()) > 40 and sum(v[1] for v in ours.values()) > 20


def test_exact_threshold_is_the_one_difference(fiftyone_counts: dict) -> None:
    gts, preds = _tie_set()
    assert _counts(frame_f1(gts, preds)) == {"1": [0, 1, 1]}  # ours: IoU must exceed 0.5
    assert fiftyone_counts["tie"] == {"1": [1, 0, 0]}  # FiftyOne: IoU >= 0.5


# ----------------------------------------------------------------------------- subprocess side
def _fiftyone_main(in_path: str, out_path: str) -> None:
    import fiftyone as fo

    def detection(cls: int, rle: dict, score: float | None):
        m = decode(rle)
        ys, xs = np.nonzero(m)
        y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
        return fo.Detection(label=str(cls), bounding_box=[x0 / W, y0 / H, (x1 - x0) / W, (y1 - y0) / H],
                            mask=m[y0:y1, x0:x1], confidence=score)

    out = {}
    for name, frames in json.loads(Path(in_path).read_text()).items():
        ds = fo.Dataset()
        samples = []
        for i, fr in enumerate(frames):
            s = fo.Sample(filepath=f"/nonexistent/{name}/{i:05d}.jpg")
            s["gt"] = fo.Detections(detections=[detection(c, r, None) for c, r in fr["gt"]])
            s["pred"] = fo.Detections(detections=[detection(c, r, sc) for c, r, sc in fr["pred"]])
            samples.append(s)
        ds.add_samples(samples)
        ds.evaluate_detections("pred", gt_field="gt", eval_key="ev", use_masks=True, iou=0.5, classwise=True)
        counts: dict[str, list[int]] = {}
        for s in ds:
            for d in s["pred"].detections:
                counts.setdefault(d.label, [0, 0, 0])[0 if d["ev"] == "tp" else 1] += 1
            for d in s["gt"].detections:
                if d["ev"] == "fn":
                    counts.setdefault(d.label, [0, 0, 0])[2] += 1
        out[name] = dict(sorted(counts.items(), key=lambda kv: int(kv[0])))
        ds.delete()
    Path(out_path).write_text(json.dumps(out))


if __name__ == "__main__":
    _fiftyone_main(sys.argv[1], sys.argv[2])
