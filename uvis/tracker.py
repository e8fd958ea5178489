"""Tracking memory (DESIGN §1.6): frame-by-frame Hungarian linking, pure numpy.

For each frame t (in order), kept instances j are linked to open tracks k by
minimising cost = w·(1 − cos(Q*_k, q_j)) + (1 − w)·(1 − maskIoU(last mask of k, m_j))
with Q*_k = λ·q_k(last) + (1 − λ)·μ_k (μ_k the running mean of the track's
embeddings). A match with cost > ``max_cost`` is refused; unmatched instances open new
tracks; a track unseen for more than ``max_gap`` frames closes. Track class:
:func:`track_classes` (a person's labels win, else the score-weighted vote).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment

from uvis import masks as mask_ops
from uvis.config import TrackerConfig
from uvis.masks import RLE


class MaskIoUMemo:
    """Memo of mask IoUs between an instance and all instances of a later frame.

    Keys are (row, frame) in one video's flattened instance table; values are (n_t,)
    IoUs against every instance of that frame. Decisions re-run many times on a fixed
    cache, so after the first run tracking needs no mask operations. Belongs to one
    video cache; not shared between videos.
    """

    def __init__(self, masks: list[RLE], frame_slices: list[slice]) -> None:
        self._masks = masks
        self._native: list[RLE] | None = None  # pycocotools form, converted on first use
        self._slices = frame_slices
        # per frame: row -> position in that frame's IoU buffer, and the buffer (n_rows, n_frame)
        self._memo: dict[int, tuple[dict[int, int], np.ndarray]] = {}

    def frame_start(self, frame: int) -> int:
        """Row of the first instance of ``frame``."""
        return self._slices[frame].start

    def rows_vs_frame(self, rows: list[int], frame: int) -> np.ndarray:
        """(len(rows), n_frame) IoUs of the given rows' masks against all masks of ``frame``."""
        sl = self._slices[frame]
        index, buf = self._memo.get(frame, (None, None))
        if index is None:
            index, buf = {}, np.zeros((0, sl.stop - sl.start))
        missing = [r for r in rows if r not in index]
        if missing:  # pycocotools skips pairs whose boxes do not overlap by itself
            if frame > 0:  # the usual link is from the previous frame: take all of it at once, so
                prev = self._slices[frame - 1]  # a later threshold change finds its IoUs here
                wanted = set(missing)
                missing += [r for r in range(prev.start, prev.stop) if r not in index and r not in wanted]
            if self._native is None:
                self._native = [mask_ops.to_coco(m) for m in self._masks]
            ious = mask_ops.iou_matrix([self._native[r] for r in missing], self._native[sl])
            for r in missing:
                index[r] = len(index)
            buf = np.concatenate([buf, ious]) if len(buf) else ious
            self._memo[frame] = (index, buf)
        return buf[[index[r] for r in rows]]


@dataclass
class TrackSummary:
    """One track: its id, voted label, score (mean member score), first/last frame, length."""

    track_id: int
    label: int
    score: float
    first_frame: int
    last_frame: int
    length: int


class _TrackStore:
    """Growable per-track state (slot = track id): last/mean embedding memory, last row, last frame."""

    def __init__(self, dim: int, capacity: int = 64) -> None:
        self.n = 0
        self.sum = np.zeros((capacity, dim), np.float32)
        self.count = np.zeros(capacity, np.float32)
        self.memory = np.zeros((capacity, dim), np.float32)  # normalised Q*
        self.last_row = np.zeros(capacity, np.int64)
        self.last_frame = np.zeros(capacity, np.int64)

    def add(self, k: int) -> np.ndarray:
        if self.n + k > len(self.count):
            cap = max(2 * len(self.count), self.n + k)
            for name in ("sum", "memory"):
                arr = getattr(self, name)
                grown = np.zeros((cap, arr.shape[1]), arr.dtype)
                grown[: self.n] = arr[: self.n]
                setattr(self, name, grown)
            for name in ("count", "last_row", "last_frame"):
                arr = getattr(self, name)
                grown = np.zeros(cap, arr.dtype)
                grown[: self.n] = arr[: self.n]
                setattr(self, name, grown)
        slots = np.arange(self.n, self.n + k)
        self.n += k
        return slots


def track(frames: np.ndarray, rows: np.ndarray, embeddings: np.ndarray, cfg: TrackerConfig,
          iou: MaskIoUMemo) -> np.ndarray:
    """Assign track ids to kept instances.

    Args:
        frames: (N,) int frame index of each kept instance, non-decreasing.
        rows: (N,) int row of each kept instance in the video table (for IoU look-up).
        embeddings: (N, D) normalised embeddings of the kept instances.
        cfg: tracking settings.
        iou: mask IoU memo over the video table.
    Returns:
        (N,) int32 track ids, 0-based in order of track creation.
    """
    n = len(frames)
    out = np.full(n, -1, dtype=np.int32)
    if n == 0:
        return out
    w, lam = float(cfg.embedding_weight), float(cfg.memory_lambda)
    store = _TrackStore(embeddings.shape[1])
    active = np.zeros(0, np.int64)  # slots of open tracks
    bounds = np.flatnonzero(np.diff(frames)) + 1
    starts = np.concatenate([[0], bounds])
    ends = np.concatenate([bounds, [n]])
    max_gap, max_cost = int(cfg.max_gap), float(cfg.max_cost)
    for a, b in zip(starts.tolist(), ends.tolist()):
        t = int(frames[a])
        q = embeddings[a:b]
        if len(active):
            active = active[store.last_frame[active] >= t - 1 - max_gap]
        assigned = np.full(b - a, -1, dtype=np.int64)
        if len(active):
            frame_rows = rows[a:b] - iou.frame_start(t)
            mious = iou.rows_vs_frame(store.last_row[active].tolist(), t)
            if len(frame_rows) != mious.shape[1]:  # some instances of this frame were dropped
                mious = mious[:, frame_rows]
            # cost = w(1 - cos) + (1 - w)(1 - IoU) = 1 - (w cos + (1 - w) IoU)
            cost = 1.0 - (w * (store.memory[active] @ q.T) + (1.0 - w) * mious)
            ti, ji = linear_sum_assignment(cost)
            ok = cost[ti, ji] <= max_cost
            assigned[ji[ok]] = active[ti[ok]]
        new = assigned < 0
        if new.any():
            slots = store.add(int(new.sum()))
            assigned[new] = slots
            active = np.concatenate([active, slots])
        store.sum[assigned] += q
        store.count[assigned] += 1
        mem = lam * q + (1.0 - lam) * (store.sum[assigned] / store.count[assigned, None])
        norms = np.sqrt(np.einsum("ij,ij->i", mem, mem))
        store.memory[assigned] = mem / np.maximum(norms, 1e-12)[:, None]
        store.last_frame[assigned] = t
        store.last_row[assigned] = rows[a:b]
        out[a:b] = assigned
    return out


def track_classes(track_ids: np.ndarray, labels: np.ndarray, scores: np.ndarray,
                  curated_labels: np.ndarray | None = None,
                  curated_order: np.ndarray | None = None) -> dict[int, int]:
    """The class of every track (DESIGN §1.6, the track-label rule): a person's labels win.

    If any member of the track carries a class a person gave (``curated_labels >= 0``: a
    relabel, or an accept — the class the person confirmed), the track's class is the
    majority of those curated labels; a tie goes to the most recently curated of the tied
    classes (largest ``curated_order``, the action id). Otherwise it is the score-weighted
    vote of its members' labels (weights = scores, NaN counted as 0; no positive weight:
    the first member's label).

    Args:
        track_ids, labels, scores: parallel (N,) arrays (track id -1 ignored; label -1 = none).
        curated_labels: (N,) int class a person gave, -1 where none (default: none).
        curated_order: (N,) int, the id of the action that gave it (ties; default 0).
    Returns:
        track id -> class index.
    """
    out: dict[int, int] = {}
    valid = track_ids >= 0
    if not valid.any():
        return out
    tids, inv = np.unique(track_ids[valid], return_inverse=True)
    lab = labels[valid].astype(np.int64)
    sc = np.nan_to_num(scores[valid].astype(np.float64), nan=0.0)
    n_lab = int(max(lab.max(), 0)) + 2
    votes = np.zeros((len(tids), n_lab))
    np.add.at(votes, (inv, lab + 1), sc)  # label -1 -> column 0
    first = np.full(len(tids), -1, np.int64)
    first[inv[::-1]] = lab[::-1]  # the first member's label per track
    for k, tid in enumerate(tids):
        row = votes[k, 1:]
        out[int(tid)] = int(row.argmax()) if row.max(initial=0) > 0 else int(first[k])
    if curated_labels is not None:
        cl = curated_labels[valid].astype(np.int64)
        order = np.zeros(len(cl), np.int64) if curated_order is None else curated_order[valid].astype(np.int64)
        given = np.flatnonzero(cl >= 0)
        per_track: dict[int, dict[int, list[int]]] = {}
        for j in given.tolist():
            entry = per_track.setdefault(int(tids[inv[j]]), {}).setdefault(int(cl[j]), [0, 0])
            entry[0] += 1
            entry[1] = max(entry[1], int(order[j]))
        for tid, counts in per_track.items():
            out[tid] = max(counts.items(), key=lambda kv: (kv[1][0], kv[1][1]))[0]
    return out


def summarise_tracks(track_ids: np.ndarray, labels: np.ndarray, scores: np.ndarray,
                     frames: np.ndarray, *, curated_labels: np.ndarray | None = None,
                     curated_order: np.ndarray | None = None,
                     objectness: np.ndarray | None = None) -> list[TrackSummary]:
    """Per track: its class (:func:`track_classes`), score and extent.

    Score = mean of the finite scores of the members labelled with the track's class
    (all members if none is); if none is finite (class-agnostic decisions, or a track only
    a person labelled with a class the model did not score), the mean ``objectness`` of
    those members (1.0 when ``objectness`` is not given).

    Args: parallel (N,) arrays over tracked instances (track id -1 ignored); see
    :func:`track_classes` for ``curated_labels``/``curated_order``.
    """
    out: list[TrackSummary] = []
    valid = track_ids >= 0
    if not valid.any():
        return out
    classes = track_classes(track_ids, labels, scores, curated_labels, curated_order)
    tids, inv = np.unique(track_ids[valid], return_inverse=True)
    lab = labels[valid]
    if curated_labels is not None:
        cl = curated_labels[valid]
        lab = np.where(cl >= 0, cl, lab)
    sc = scores[valid].astype(np.float64)
    obj = None if objectness is None else objectness[valid].astype(np.float64)
    fr = frames[valid]
    lengths = np.bincount(inv, minlength=len(tids))
    order = np.argsort(inv, kind="stable")
    bounds = np.searchsorted(inv[order], np.arange(len(tids) + 1))
    for k, tid in enumerate(tids):
        members = order[bounds[k]:bounds[k + 1]]
        lbl = classes[int(tid)]
        same = members[lab[members] == lbl]
        pick = same if len(same) else members
        finite = pick[np.isfinite(sc[pick])]
        if len(finite):
            score = float(sc[finite].mean())
        else:
            score = float(obj[pick].mean()) if obj is not None else 1.0
        out.append(TrackSummary(int(tid), lbl, score, int(fr[members].min()), int(fr[members].max()),
                                int(lengths[k])))
    return out
