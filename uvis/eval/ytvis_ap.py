"""Video-level YouTube-VIS AP/AR (DESIGN §1.7), on pycocotools mask operations.

This is the COCO evaluation protocol (``pycocotools.cocoeval.COCOeval``) with a video
in place of an image, as in the YouTube-VIS API (``ytvoseval``):

* IoU of a result d and a ground-truth track g is spatio-temporal:
  ``sum_t |d_t ∩ g_t| / sum_t |d_t ∪ g_t|`` over the video's frames; a frame where
  only one of them has a mask adds that mask's area to the union; frames where both
  are null add nothing. The same IoU is used for crowd tracks (as ``ytvoseval``).
* A track's area is the mean of its non-null, non-zero per-frame areas (ground
  truth: the ``areas`` field when given, as ``ytvoseval``; results: mask areas).
* IoU thresholds 0.50:0.05:0.95, 101 recall points, maxDets 1/10/100 per video, area
  ranges all/small/medium/large (COCO: 32², 96²; ``area_ranges="ytvis"`` gives the
  YouTube-VIS API's 128², 256²).
* Matching per (video, category): results by decreasing score (stable), each takes
  the best still-free ground truth with IoU >= threshold (crowd tracks can take many),
  regular ground truth before ignored (crowd or out of area range); the precision
  envelope and 101-point sampling as ``COCOeval.accumulate``; -1 where undefined.
* ``class_agnostic=True`` is ``useCats=0``: categories are ignored in matching.

Quirks kept for exactness: matching is done once with maxDets=100 and the lists are
cut to 1/10 afterwards (as COCOeval); ground-truth ids play no role (matches are
booleans, so an annotation with id 0 is not lost as it is in COCOeval).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
from pycocotools import mask as mask_utils

from uvis import masks as mask_ops
from uvis.errors import BadInputError
from uvis.eval.ytvis_io import YtvisGroundTruth, YtvisTrack, parse_ground_truth, parse_results

IOU_THRESHOLDS = np.linspace(0.5, 0.95, int(np.round((0.95 - 0.5) / 0.05)) + 1, endpoint=True)
RECALL_THRESHOLDS = np.linspace(0.0, 1.00, int(np.round((1.00 - 0.0) / 0.01)) + 1, endpoint=True)
MAX_DETS = (1, 10, 100)
AREA_LABELS = ("all", "small", "medium", "large")
AREA_RANGES: dict[str, tuple[tuple[float, float], ...]] = {
    "coco": ((0.0, 1e5**2), (0.0, 32.0**2), (32.0**2, 96.0**2), (96.0**2, 1e5**2)),
    "ytvis": ((0.0, 1e5**2), (0.0, 128.0**2), (128.0**2, 256.0**2), (256.0**2, 1e5**2)),
}
STAT_KEYS = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")


@dataclass(frozen=True)
class APResult:
    """YouTube-VIS AP/AR.

    Attributes:
        stats: the 12 COCO summary numbers keyed by :data:`STAT_KEYS` (-1: undefined).
        per_class: category id -> {"AP", "AP50", "AP75", "AR100"} (empty when class-agnostic).
        precision: (T=10, R=101, K, A=4, M=3) interpolated precision, -1 where undefined.
        recall: (T, K, A, M) recall, -1 where undefined.
        category_ids: the K category ids along axis K ([-1] when class-agnostic).
        class_names: category id -> name.
        class_agnostic: ``useCats=0``.
        area_ranges: name of the area-range preset used.
        num_videos: ground-truth videos evaluated.
    """

    stats: dict[str, float]
    per_class: dict[int, dict[str, float]]
    precision: np.ndarray = field(repr=False)
    recall: np.ndarray = field(repr=False)
    category_ids: tuple[int, ...]
    class_names: dict[int, str]
    class_agnostic: bool
    area_ranges: str
    num_videos: int

    def __getitem__(self, key: str) -> float:
        return self.stats[key]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary with fixed keys (see ``docs/evaluation.md``)."""
        out: dict[str, Any] = {
            "level": "video",
            "class_agnostic": self.class_agnostic,
            "area_ranges": {lbl: list(r) for lbl, r in zip(AREA_LABELS, AREA_RANGES[self.area_ranges])},
            "num_videos": self.num_videos,
        }
        out.update({k: float(self.stats[k]) for k in STAT_KEYS})
        out["per_class"] = {
            self.class_names.get(cid, str(cid)): {"id": cid, **{k: float(v) for k, v in vals.items()}}
            for cid, vals in self.per_class.items()
        }
        return out


def evaluate_ytvis(
    gt: dict | YtvisGroundTruth,
    results: Sequence[Any],
    *,
    class_agnostic: bool = False,
    area_ranges: str = "coco",
) -> APResult:
    """YouTube-VIS AP/AR of ``results`` against ``gt`` (see the module docstring).

    Args:
        gt: YouTube-VIS annotation dict (or parsed :class:`YtvisGroundTruth`).
        results: YouTube-VIS results list (or parsed tracks).
        class_agnostic: ignore categories (``useCats=0``).
        area_ranges: ``"coco"`` (32², 96², the project default) or ``"ytvis"`` (128², 256²).
    Raises:
        BadInputError: invalid input (message names the entry and the problem).
    """
    if area_ranges not in AREA_RANGES:
        raise BadInputError(f"area_ranges must be one of {', '.join(AREA_RANGES)}, got {area_ranges!r}")
    truth = parse_ground_truth(gt)
    dts = parse_results(list(results), truth)
    ranges = np.asarray(AREA_RANGES[area_ranges], dtype=np.float64)
    cat_ids = list(truth.categories) if not class_agnostic else [-1]
    video_ids = list(truth.videos)

    # Group by video (file order kept), then compute every video's IoU matrix once.
    gts_by_video: dict[int, list[YtvisTrack]] = {v: [] for v in video_ids}
    dts_by_video: dict[int, list[YtvisTrack]] = {v: [] for v in video_ids}
    for g in truth.annotations:
        gts_by_video[g.video_id].append(g)
    for d in dts:
        dts_by_video[d.video_id].append(d)

    T, A = len(IOU_THRESHOLDS), len(ranges)
    # evals[k][a] -> list over videos of (scores (D,), matched (T,D), ignored (T,D), gt_ignore (G,))
    evals: list[list[list[_Eval]]] = [[[] for _ in range(A)] for _ in cat_ids]
    max_det = MAX_DETS[-1]
    for vid in video_ids:
        vg, vd = gts_by_video[vid], dts_by_video[vid]
        if not vg and not vd:
            continue
        g_area_frames = [_frame_areas(g) for g in vg]
        d_area_frames = [_frame_areas(d) for d in vd]
        g_avg = np.array([_avg_area(g.areas if g.areas is not None else a) for g, a in zip(vg, g_area_frames)])
        d_avg = np.array([_avg_area(a) for a in d_area_frames])
        ious = _video_ious(vd, vg, d_area_frames, g_area_frames)
        g_cat = np.array([g.category_id for g in vg], dtype=np.int64)
        d_cat = np.array([d.category_id for d in vd], dtype=np.int64)
        g_crowd = np.array([g.iscrowd for g in vg], dtype=bool)
        d_score = np.array([d.score for d in vd], dtype=np.float64)
        for k, cid in enumerate(cat_ids):
            gi = _select(g_cat, None if class_agnostic else cid)
            di = _select(d_cat, None if class_agnostic else cid)
            if len(gi) == 0 and len(di) == 0:
                continue
            di = di[np.argsort(-d_score[di], kind="mergesort")][:max_det]
            sub = ious[np.ix_(di, gi)]
            for a in range(A):
                lo, hi = ranges[a]
                g_ign = g_crowd[gi] | (g_avg[gi] < lo) | (g_avg[gi] > hi)
                order = np.argsort(g_ign, kind="mergesort")
                matched, dt_ign = _match(sub[:, order], g_ign[order], g_crowd[gi][order])
                out_of_range = (d_avg[di] < lo) | (d_avg[di] > hi)
                dt_ign |= ~matched & out_of_range[None, :]
                evals[k][a].append(_Eval(d_score[di], matched, dt_ign, g_ign[order]))

    precision, recall = _accumulate(evals, T, len(cat_ids), A)
    stats = _summarize(precision, recall)
    per_class: dict[int, dict[str, float]] = {}
    if not class_agnostic:
        for k, cid in enumerate(cat_ids):
            per_class[cid] = {
                "AP": _mean_defined(precision[:, :, k, 0, -1]),
                "AP50": _mean_defined(precision[0, :, k, 0, -1]),
                "AP75": _mean_defined(precision[5, :, k, 0, -1]),
                "AR100": _mean_defined(recall[:, k, 0, -1]),
            }
    return APResult(
        stats=stats, per_class=per_class, precision=precision, recall=recall,
        category_ids=tuple(cat_ids), class_names=dict(truth.categories), class_agnostic=class_agnostic,
        area_ranges=area_ranges, num_videos=len(video_ids),
    )


@dataclass(frozen=True)
class _Eval:
    """One (video, category, area range) after matching: results sorted by score."""

    scores: np.ndarray  # (D,)
    matched: np.ndarray  # (T, D) bool
    ignored: np.ndarray  # (T, D) bool
    gt_ignore: np.ndarray  # (G,) bool


def _select(cats: np.ndarray, cid: int | None) -> np.ndarray:
    """Indices of one category's tracks in file order, or (``cid`` None, class-agnostic)
    of all tracks ordered by category id then file order, as COCOeval's concatenation
    over sorted category ids."""
    if cid is not None:
        return np.flatnonzero(cats == cid)
    return np.argsort(cats, kind="mergesort")


def _frame_areas(track: YtvisTrack) -> np.ndarray:
    """(L,) per-frame mask areas, NaN where the segmentation is null."""
    segs = track.segmentations
    idx = [t for t, s in enumerate(segs) if s is not None]
    out = np.full(len(segs), np.nan)
    if idx:
        out[idx] = mask_ops.area([segs[t] for t in idx])
    return out


def _avg_area(areas: Sequence[float | None] | np.ndarray) -> float:
    """Mean of the non-null, non-zero areas (ytvoseval's ``avg_area``); 0 if none."""
    vals = [float(a) for a in areas if a is not None and not np.isnan(a) and a]
    return float(np.mean(vals)) if vals else 0.0


def _video_ious(
    dts: list[YtvisTrack], gts: list[YtvisTrack], d_areas: list[np.ndarray], g_areas: list[np.ndarray]
) -> np.ndarray:
    """(D, G) spatio-temporal mask IoU of every result with every ground-truth track."""
    D, G = len(dts), len(gts)
    if D == 0 or G == 0:
        return np.zeros((D, G))
    da = np.nan_to_num(np.stack(d_areas))  # (D, L)
    ga = np.nan_to_num(np.stack(g_areas))  # (G, L)
    inter = np.zeros((D, G))
    for t in range(da.shape[1]):
        di = [i for i, d in enumerate(dts) if d.segmentations[t] is not None]
        gi = [j for j, g in enumerate(gts) if g.segmentations[t] is not None]
        if not di or not gi:
            continue
        iou = np.asarray(
            mask_utils.iou([dts[i].segmentations[t] for i in di], [gts[j].segmentations[t] for j in gi], [0] * len(gi)),
            dtype=np.float64,
        ).reshape(len(di), len(gi))
        # |d ∩ g| recovered exactly from IoU = i / (a + b - i): i = IoU (a + b) / (1 + IoU).
        s = da[di, t][:, None] + ga[gi, t][None, :]
        inter[np.ix_(di, gi)] += np.rint(iou * s / (1.0 + iou))
    union = da.sum(1)[:, None] + ga.sum(1)[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def _match(ious: np.ndarray, g_ignore: np.ndarray, g_crowd: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """COCOeval.evaluateImg's greedy matching, vectorised over the IoU thresholds.

    Args:
        ious: (D, G), results sorted by decreasing score, ground truth ignored-last.
        g_ignore: (G,) bool; g_crowd: (G,) bool (crowd tracks may be matched many times).
    Returns:
        (T, D) bool matched, (T, D) bool ignored (matched to an ignored track).
    """
    T = len(IOU_THRESHOLDS)
    D, G = ious.shape
    matched = np.zeros((T, D), dtype=bool)
    ignored = np.zeros((T, D), dtype=bool)
    if D == 0 or G == 0:
        return matched, ignored
    thr = np.minimum(IOU_THRESHOLDS, 1 - 1e-10)[:, None]  # (T, 1)
    g_taken = np.zeros((T, G), dtype=bool)
    regular = ~g_ignore
    ties_last = np.arange(G)[::-1]
    for d in range(D):
        row = ious[d]
        ok = (~g_taken | g_crowd) & (row[None, :] >= thr)  # (T, G)
        if not ok.any():
            continue
        ok_reg = ok & regular
        use = np.where(ok_reg.any(1, keepdims=True), ok_reg, ok & g_ignore)
        has = use.any(1)
        vals = np.where(use, row[None, :], -1.0)[:, ::-1]
        m = ties_last[np.argmax(vals, axis=1)]  # best IoU; among equals the last, as COCOeval
        t_idx = np.flatnonzero(has)
        m = m[t_idx]
        matched[t_idx, d] = True
        ignored[t_idx, d] = g_ignore[m]
        g_taken[t_idx, m] = True
    return matched, ignored


def _accumulate(evals: list[list[list[_Eval]]], T: int, K: int, A: int) -> tuple[np.ndarray, np.ndarray]:
    """COCOeval.accumulate: precision (T, R, K, A, M) and recall (T, K, A, M)."""
    R, M = len(RECALL_THRESHOLDS), len(MAX_DETS)
    precision = -np.ones((T, R, K, A, M))
    recall = -np.ones((T, K, A, M))
    for k in range(K):
        for a in range(A):
            E = evals[k][a]
            if not E:
                continue
            npig = int(sum(np.count_nonzero(~e.gt_ignore) for e in E))
            if npig == 0:
                continue
            for m, max_det in enumerate(MAX_DETS):
                scores = np.concatenate([e.scores[:max_det] for e in E])
                inds = np.argsort(-scores, kind="mergesort")
                dtm = np.concatenate([e.matched[:, :max_det] for e in E], axis=1)[:, inds]
                dtig = np.concatenate([e.ignored[:, :max_det] for e in E], axis=1)[:, inds]
                tps = dtm & ~dtig
                fps = ~dtm & ~dtig
                tp_sum = np.cumsum(tps, axis=1, dtype=np.float64)
                fp_sum = np.cumsum(fps, axis=1, dtype=np.float64)
                nd = tp_sum.shape[1]
                if nd == 0:
                    recall[:, k, a, m] = 0.0
                    precision[:, :, k, a, m] = 0.0
                    continue
                rc = tp_sum / npig
                pr = tp_sum / (fp_sum + tp_sum + np.spacing(1))
                recall[:, k, a, m] = rc[:, -1]
                pr = np.maximum.accumulate(pr[:, ::-1], axis=1)[:, ::-1]  # precision envelope
                for t in range(T):
                    idx = np.searchsorted(rc[t], RECALL_THRESHOLDS, side="left")
                    q = np.zeros(R)
                    ok = idx < nd
                    q[ok] = pr[t, idx[ok]]
                    precision[t, :, k, a, m] = q
    return precision, recall


def _mean_defined(x: np.ndarray) -> float:
    vals = x[x > -1]
    return float(np.mean(vals)) if vals.size else -1.0


def _summarize(precision: np.ndarray, recall: np.ndarray) -> dict[str, float]:
    """COCOeval.summarize's 12 numbers (area index: 0 all, 1 small, 2 medium, 3 large)."""
    t50 = int(np.flatnonzero(IOU_THRESHOLDS == 0.5)[0])
    t75 = int(np.flatnonzero(IOU_THRESHOLDS == 0.75)[0])
    return {
        "AP": _mean_defined(precision[:, :, :, 0, 2]),
        "AP50": _mean_defined(precision[t50, :, :, 0, 2]),
        "AP75": _mean_defined(precision[t75, :, :, 0, 2]),
        "APs": _mean_defined(precision[:, :, :, 1, 2]),
        "APm": _mean_defined(precision[:, :, :, 2, 2]),
        "APl": _mean_defined(precision[:, :, :, 3, 2]),
        "AR1": _mean_defined(recall[:, :, 0, 0]),
        "AR10": _mean_defined(recall[:, :, 0, 1]),
        "AR100": _mean_defined(recall[:, :, 0, 2]),
        "ARs": _mean_defined(recall[:, :, 1, 2]),
        "ARm": _mean_defined(recall[:, :, 2, 2]),
        "ARl": _mean_defined(recall[:, :, 3, 2]),
    }

