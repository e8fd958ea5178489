"""Frame-level F1 of instance masks (DESIGN §1.7, the paper's supplementary Table 1).

Definition. Within one frame and one class, predictions are taken in order of
decreasing score; each takes the still unmatched ground-truth mask of that class with
the highest mask IoU, provided that IoU is strictly greater than ``iou_threshold``
(0.5). TP, FP and FN are summed over all frames; per class
``F1 = 2 TP / (2 TP + FP + FN)``; ``mF1`` is the mean F1 over the classes present in
the ground truth (a class with ground truth but no prediction counts with F1 = 0; a
class only predicted has an F1 of 0 but does not enter mF1). The class-agnostic
variant puts every object in one class (:data:`AGNOSTIC_CLASS`).

Ties: predictions with equal scores keep their input order; a prediction whose IoU
with two unmatched ground-truth masks is equal takes the first of them.

Crowd ground truth (``crowd=True``, from YouTube-VIS ``iscrowd``) is a region to
ignore, as in COCO: a prediction that matches no regular ground truth but overlaps a
crowd region of its class with IoU > threshold is neither TP nor FP (any number of
predictions may fall in one crowd region); an unmatched crowd region is not a FN.

Frames hold :class:`FrameObject` records (plain ``(class_id, rle, score)`` tuples work
too). Masks are COCO RLE dicts; every mask of a frame must have the same ``size``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, NamedTuple, Sequence

import numpy as np
from pycocotools import mask as mask_utils

from uvis.errors import BadInputError
from uvis.formats.rle import coerce_native
from uvis.masks import RLE

AGNOSTIC_CLASS = 0
"""The class id every object gets in the class-agnostic variant."""


class FrameObject(NamedTuple):
    """One object in one frame: a ground-truth mask or a prediction.

    Attributes:
        class_id: category id (YouTube-VIS ids are 1-based); ignored when class-agnostic.
        rle: COCO RLE ``{"size": [H, W], "counts": str | bytes | list[int]}``.
        score: prediction confidence, higher is better (ground truth: unused).
        crowd: ground truth only: a crowd region to ignore (see module docstring).
    """

    class_id: int
    rle: RLE
    score: float = 1.0
    crowd: bool = False


Frame = Sequence[FrameObject]
"""The objects of one frame (order does not matter; predictions are sorted by score)."""


@dataclass(frozen=True)
class ClassCounts:
    """Counts of one class summed over frames."""

    tp: int = 0
    fp: int = 0
    fn: int = 0

    @property
    def f1(self) -> float:
        """``2TP / (2TP + FP + FN)``; NaN when all three are 0."""
        den = 2 * self.tp + self.fp + self.fn
        return 2 * self.tp / den if den else math.nan

    @property
    def precision(self) -> float:
        """``TP / (TP + FP)``; NaN without predictions."""
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else math.nan

    @property
    def recall(self) -> float:
        """``TP / (TP + FN)``; NaN without ground truth."""
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else math.nan

    @property
    def in_gt(self) -> bool:
        """Whether the class has (non-crowd) ground truth, i.e. enters mF1."""
        return self.tp + self.fn > 0

    def __add__(self, other: "ClassCounts") -> "ClassCounts":
        return ClassCounts(self.tp + other.tp, self.fp + other.fp, self.fn + other.fn)


@dataclass(frozen=True)
class F1Result:
    """Frame-level F1 counts.

    Attributes:
        per_class: class id -> counts, for every class seen in ground truth or
            predictions, sorted by id (class-agnostic: the single key :data:`AGNOSTIC_CLASS`).
        num_frames: number of frames evaluated.
        class_agnostic: whether classes were ignored.
        iou_threshold: a match needs mask IoU strictly greater than this.
        ignored_predictions: predictions that fell in a crowd region (neither TP nor FP).
    """

    per_class: dict[int, ClassCounts]
    num_frames: int
    class_agnostic: bool = False
    iou_threshold: float = 0.5
    ignored_predictions: int = 0

    @property
    def gt_classes(self) -> list[int]:
        """Ids of the classes present in the ground truth (those averaged by mF1)."""
        return [c for c, n in self.per_class.items() if n.in_gt]

    @property
    def mF1(self) -> float:  # noqa: N802 - the paper's name
        """Mean F1 over classes present in the ground truth; NaN if there are none."""
        vals = [self.per_class[c].f1 for c in self.gt_classes]
        return float(np.mean(vals)) if vals else math.nan

    @property
    def total(self) -> ClassCounts:
        """Counts summed over classes (micro)."""
        out = ClassCounts()
        for n in self.per_class.values():
            out = out + n
        return out

    def f1(self, class_id: int) -> float:
        """F1 of one class; NaN for a class that never occurs."""
        n = self.per_class.get(class_id)
        return n.f1 if n is not None else math.nan

    def to_dict(self, class_names: Mapping[int, str] | None = None) -> dict[str, Any]:
        """JSON-ready summary (keys documented in ``docs/evaluation.md``).

        ``per_class`` is keyed by class name (``class_names``; the id as text when a
        name is unknown). Undefined values (NaN) are written as ``None``.
        """
        names = dict(class_names or {})
        if self.class_agnostic:
            names.setdefault(AGNOSTIC_CLASS, "object")
        per_class: dict[str, Any] = {}
        for cid, n in self.per_class.items():
            per_class[names.get(cid, str(cid))] = {
                "id": cid, "tp": n.tp, "fp": n.fp, "fn": n.fn, "f1": _num(n.f1),
                "precision": _num(n.precision), "recall": _num(n.recall), "in_gt": n.in_gt,
            }
        tot = self.total
        return {
            "level": "frame",
            "class_agnostic": self.class_agnostic,
            "iou_threshold": self.iou_threshold,
            "num_frames": self.num_frames,
            "mF1": _num(self.mF1),
            "tp": tot.tp, "fp": tot.fp, "fn": tot.fn,
            "f1": _num(tot.f1),
            "ignored_predictions": self.ignored_predictions,
            "per_class": per_class,
        }


def _num(x: float) -> float | None:
    return None if math.isnan(x) else float(x)


def frame_f1(
    gt_frames: Sequence[Frame],
    pred_frames: Sequence[Frame],
    *,
    class_agnostic: bool = False,
    iou_threshold: float = 0.5,
) -> F1Result:
    """Frame-level TP/FP/FN and F1 per class (see the module docstring).

    Args:
        gt_frames: F frames of ground-truth objects (``score`` unused).
        pred_frames: the same F frames' predictions, aligned with ``gt_frames``.
        class_agnostic: ignore classes (every object in class :data:`AGNOSTIC_CLASS`).
        iou_threshold: a match needs mask IoU strictly greater than this, in [0, 1).
    Returns:
        :class:`F1Result`.
    Raises:
        BadInputError: frame counts differ, an object is malformed, or masks of one
            frame differ in size.
    """
    if len(gt_frames) != len(pred_frames):
        raise BadInputError(
            f"frame_f1: {len(gt_frames)} ground-truth frames but {len(pred_frames)} prediction frames; "
            "the two lists must be aligned frame by frame"
        )
    if not 0.0 <= iou_threshold < 1.0:
        raise BadInputError(f"frame_f1: iou_threshold must be in [0, 1), got {iou_threshold}")
    tp_cls: list[np.ndarray] = []
    fp_cls: list[np.ndarray] = []
    fn_cls: list[np.ndarray] = []
    ignored = 0
    for f, (gts, preds) in enumerate(zip(gt_frames, pred_frames)):
        if not gts and not preds:
            continue
        g_cls, g_rle, _, g_crowd = _unpack(gts, f, "ground truth", class_agnostic)
        p_cls, p_rle, p_score, _ = _unpack(preds, f, "prediction", class_agnostic)
        order = np.argsort(-p_score, kind="stable")
        p_cls = p_cls[order]
        p_rle = [p_rle[i] for i in order]
        if len(g_cls) == 0:
            fp_cls.append(p_cls)
            continue
        if len(p_cls) == 0:
            fn_cls.append(g_cls[~g_crowd])
            continue
        sizes = {tuple(r["size"]) for r in p_rle} | {tuple(r["size"]) for r in g_rle}
        if len(sizes) > 1:
            raise BadInputError(f"frame {f}: masks of different sizes {sorted(sizes)} in one frame")
        same = p_cls[:, None] == g_cls[None, :]
        rows, cols = np.flatnonzero(same.any(axis=1)), np.flatnonzero(same.any(axis=0))
        ious = np.zeros(same.shape)
        if len(rows):  # IoU only where a class is shared: the costly part is RLE parsing
            sub = mask_utils.iou([p_rle[i] for i in rows], [g_rle[j] for j in cols], [0] * len(cols))
            ious[np.ix_(rows, cols)] = np.asarray(sub, dtype=np.float64).reshape(len(rows), len(cols))
        cand = (ious > iou_threshold) & same
        p_match, g_match = _greedy(np.where(cand, ious, -1.0), cand, g_crowd)
        p_ignored = np.zeros(len(p_cls), dtype=bool)
        if g_crowd.any():
            p_ignored = ~p_match & cand[:, g_crowd].any(axis=1)
        tp_cls.append(p_cls[p_match])
        fp_cls.append(p_cls[~p_match & ~p_ignored])
        fn_cls.append(g_cls[~g_match & ~g_crowd])
        ignored += int(p_ignored.sum())
    per_class = _count(tp_cls, fp_cls, fn_cls)
    return F1Result(
        per_class=per_class, num_frames=len(gt_frames), class_agnostic=class_agnostic,
        iou_threshold=float(iou_threshold), ignored_predictions=ignored,
    )


def _unpack(
    objs: Frame, f: int, what: str, class_agnostic: bool
) -> tuple[np.ndarray, list[RLE], np.ndarray, np.ndarray]:
    """Class ids, pycocotools RLEs, scores and crowd flags of one frame's objects."""
    try:
        rles = [coerce_native(o[1]) for o in objs]
        n = len(rles)
        cls = np.full(n, AGNOSTIC_CLASS, np.int64) if class_agnostic else np.array([int(o[0]) for o in objs], np.int64)
        score = np.array([float(o[2]) if len(o) > 2 else 1.0 for o in objs], dtype=np.float64).reshape(n)
        crowd = np.array([len(o) > 3 and bool(o[3]) for o in objs], dtype=bool).reshape(n)
    except (TypeError, ValueError, IndexError, KeyError):
        for i, o in enumerate(objs):  # find the culprit for the message
            try:
                int(o[0]), coerce_native(o[1]), float(o[2]) if len(o) > 2 else 1.0
            except (TypeError, ValueError, IndexError, KeyError) as exc:
                raise BadInputError(f"frame {f}, {what} {i}: not a (class_id, rle, score) object: {exc}") from exc
        raise
    if what == "prediction" and crowd.any():
        raise BadInputError(f"frame {f}: a prediction is marked crowd; only ground truth can be crowd")
    return cls, rles, score, crowd


def _greedy(ious: np.ndarray, cand: np.ndarray, g_crowd: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Greedy one-to-one matching of score-sorted predictions to regular ground truth.

    Args:
        ious: (D, G) IoU where ``cand``, else -1; rows sorted by decreasing score.
        cand: (D, G) bool, admissible pairs (same class, IoU > threshold).
        g_crowd: (G,) bool, crowd ground truth (never matched here).
    Returns:
        (D,) bool predictions matched, (G,) bool ground truth matched.
    """
    reg = cand & ~g_crowd[None, :]
    d, g = reg.shape
    # Fast path: no prediction has two candidates and no GT is wanted twice, so the
    # greedy matching is exactly the set of admissible pairs.
    if reg.sum(axis=1).max(initial=0) <= 1 and reg.sum(axis=0).max(initial=0) <= 1:
        return reg.any(axis=1), reg.any(axis=0)
    p_match = np.zeros(d, dtype=bool)
    g_match = np.zeros(g, dtype=bool)
    vals = np.where(reg, ious, -1.0)
    for i in np.flatnonzero(reg.any(axis=1)):
        row = np.where(g_match, -1.0, vals[i])
        j = int(np.argmax(row))
        if row[j] >= 0.0 and reg[i, j]:
            p_match[i] = True
            g_match[j] = True
    return p_match, g_match


def _count(tp: list[np.ndarray], fp: list[np.ndarray], fn: list[np.ndarray]) -> dict[int, ClassCounts]:
    """Per-class counts from the class ids of every TP, FP and FN, sorted by class id."""

    def cat(parts: list[np.ndarray]) -> np.ndarray:
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)

    t, p, n = cat(tp), cat(fp), cat(fn)
    classes = np.unique(np.concatenate([t, p, n]))
    k = len(classes)
    ct, cp, cn = (np.bincount(np.searchsorted(classes, a), minlength=k) for a in (t, p, n))
    return {int(c): ClassCounts(int(ct[i]), int(cp[i]), int(cn[i])) for i, c in enumerate(classes)}
