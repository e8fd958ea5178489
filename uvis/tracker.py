"""Tracking memory (DESIGN §1.6): frame-by-frame Hungarian linking, pure numpy.

For each frame t (in order), kept instances j are linked to open tracks k by
minimising cost = w·(1 − cos(Q*_k, q_j)) + (1 − w)·(1 − maskIoU(last mask of k, m_j))
with Q*_k = λ·q_k(last) + (1 − λ)·μ_k (μ_k the running mean of the track's
embeddings). A match with cost > ``max_cost`` is refused; unmatched instances open new
tracks; a track unseen for more than ``max_gap`` frames closes. Track label = the
score-weighted vote of its members' labels.
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


def summarise_tracks(track_ids: np.ndarray, labels: np.ndarray, scores: np.ndarray,
                     frames: np.ndarray) -> list[TrackSummary]:
    """Per-track label by score-weighted vote, mean member score of that label, extent.

    Args: parallel (N,) arrays over tracked instances (track id -1 ignored).
    """
    out: list[TrackSummary] = []
    valid = track_ids >= 0
    if not valid.any():
        return out
    tids, inv = np.unique(track_ids[valid], return_inverse=True)
    lab = labels[valid]
    sc = scores[valid].astype(np.float64)
    fr = frames[valid]
    n_lab = int(max(lab.max(), 0)) + 2
    votes = np.zeros((len(tids), n_lab))
    np.add.at(votes, (inv, lab + 1), sc)  # label -1 -> column 0
    winner = votes[:, 1:].argmax(axis=1) if n_lab > 1 else np.zeros(len(tids), int)
    lengths = np.bincount(inv, minlength=len(tids))
    for k, tid in enumerate(tids):
        members = inv == k
        lbl = int(winner[k]) if votes[k, 1:].max(initial=0) > 0 else int(lab[members][0])
        same = members & (lab == lbl)
        score = float(sc[same].mean()) if same.any() else float(sc[members].mean())
        out.append(TrackSummary(int(tid), lbl, score, int(fr[members].min()), int(fr[members].max()),
                                int(lengths[k])))
    return out
