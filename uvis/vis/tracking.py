"""Query matching across frames and the video-level output of MinVIS (reference semantics).

Per frame t the model gives Q queries: class logits (Q, C + 1), mask logits (Q, h, w) at 1/4 of
the padded input, embeddings (Q, D). Frame 0 defines the tracks (track j = query j of frame 0).
For t >= 1 the current queries are assigned one-to-one to the tracks by the Hungarian algorithm
on cost[i, j] = 1 - cos(cur[i], ref[j]) (scipy ``linear_sum_assignment`` on the transposed cost,
rows = tracks, exactly as MinVIS's ``match_from_embds``); frame t's aligned outputs are
``cur[idx]``. The reference ``ref`` is:

- ``"minvis"`` (reference mode): the previous ALIGNED frame's embeddings (a chain, not frame 0);
- ``"memory"`` (the paper's tracking memory): per track ``lambda * q_last + (1 - lambda) * mean``
  of its L2-normalised aligned embeddings so far, lambda = the pseudo-label tracker's
  ``memory_lambda`` (0.7).

Video output: ``video_logits`` = mean of the aligned logits over frames; scores =
``softmax(video_logits)[:, :C]``; the top-k (query, class) pairs of the flattened (Q, C) scores;
each pair's masks are the aligned mask logits resized bilinearly to the padded size, cropped to
the resized image, resized bilinearly to the output size, ``> 0``, one COCO RLE per frame (None
when empty). Masks are encoded frame by frame as they arrive, so memory stays bounded by one
frame's Q masks (no (T, Q, H, W) stack).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment

from uvis import masks as mask_ops

TRACKING_MODES: tuple[str, ...] = ("minvis", "memory")
MASK_CHUNK = 16
"""Queries resized to full resolution at once (bounds the temporary float buffer)."""


def match_queries(cur: torch.Tensor, ref: torch.Tensor) -> np.ndarray:
    """MinVIS ``match_from_embds``: (Q,) int64 ``idx`` with aligned = ``cur[idx]``.

    Args:
        cur: (Q, D) embeddings of the current frame.
        ref: (Q, D) reference embeddings (one per track).
    """
    cur_n = cur.float() / cur.float().norm(dim=1, keepdim=True)
    ref_n = ref.float() / ref.float().norm(dim=1, keepdim=True)
    cost = (1.0 - cur_n @ ref_n.t()).cpu().numpy()  # rows: current queries, columns: tracks
    return linear_sum_assignment(cost.T)[1].astype(np.int64)


def upsample_masks(masks: torch.Tensor, padded_hw: tuple[int, int], resized_hw: tuple[int, int],
                   output_hw: tuple[int, int]) -> torch.Tensor:
    """(N, h, w) mask logits -> (N, H_out, W_out) bool (pad size, crop, output size; bilinear)."""
    x = F.interpolate(masks[None].float(), size=padded_hw, mode="bilinear", align_corners=False)
    x = x[:, :, : resized_hw[0], : resized_hw[1]]
    x = F.interpolate(x, size=output_hw, mode="bilinear", align_corners=False)
    return x[0] > 0


@dataclass
class VideoTracker:
    """Accumulates per-frame outputs of one video; :meth:`finish` gives the top-k predictions.

    Args:
        output_hw: (H, W) of the returned masks (the original frame size).
        top_k: (query, class) pairs returned.
        tracking: ``"minvis"`` or ``"memory"`` (see the module docstring).
        memory_lambda: weight of the last embedding in the ``"memory"`` mode.
    """

    output_hw: tuple[int, int]
    top_k: int = 10
    tracking: str = "minvis"
    memory_lambda: float = 0.7
    num_frames: int = 0
    match_indices: list[np.ndarray] = field(default_factory=list)
    _logit_sum: torch.Tensor | None = None
    _ref: torch.Tensor | None = None
    _emb_sum: torch.Tensor | None = None
    _rles: list[list[dict[str, Any]]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.tracking not in TRACKING_MODES:
            raise ValueError(f"tracking must be one of {', '.join(TRACKING_MODES)}, got {self.tracking!r}")
        if not 0.0 <= self.memory_lambda <= 1.0:
            raise ValueError(f"memory_lambda must be in [0, 1], got {self.memory_lambda}")

    def add(self, logits: torch.Tensor, masks: torch.Tensor, embds: torch.Tensor,
            padded_hw: tuple[int, int], resized_hw: tuple[int, int]) -> np.ndarray:
        """Add one frame: ``logits`` (Q, C + 1), ``masks`` (Q, h, w) logits at 1/4 of ``padded_hw``,
        ``embds`` (Q, D). Returns the matching ``idx`` (identity for the first frame)."""
        q = logits.shape[0]
        if self._ref is None:
            idx = np.arange(q, dtype=np.int64)
        else:
            idx = match_queries(embds, self._ref)
            self.match_indices.append(idx)
        index = torch.from_numpy(idx).to(logits.device)
        logits, masks, embds = logits[index].float(), masks[index], embds[index].float()
        self._logit_sum = logits.clone() if self._logit_sum is None else self._logit_sum + logits
        self._update_reference(embds)
        rles: list[dict[str, Any]] = []
        for start in range(0, q, MASK_CHUNK):
            binary = upsample_masks(masks[start:start + MASK_CHUNK], padded_hw, resized_hw, self.output_hw)
            rles.extend(mask_ops.encode_many(binary.cpu().numpy()))
        self._rles.append(rles)
        self.num_frames += 1
        return idx

    def _update_reference(self, embds: torch.Tensor) -> None:
        if self.tracking == "minvis":
            self._ref = embds
            return
        normed = embds / embds.norm(dim=1, keepdim=True).clamp_min(1e-12)
        self._emb_sum = normed.clone() if self._emb_sum is None else self._emb_sum + normed
        mean = self._emb_sum / (self.num_frames + 1)
        self._ref = self.memory_lambda * normed + (1.0 - self.memory_lambda) * mean

    @property
    def video_logits(self) -> torch.Tensor:
        """(Q, C + 1) mean of the aligned logits over the frames so far."""
        if self._logit_sum is None:
            raise ValueError("no frame was added")
        return self._logit_sum / self.num_frames

    def finish(self) -> list[dict[str, Any]]:
        """The top-k predictions, best score first: dicts with ``score`` (float), ``label``
        (0-based class), ``query`` (track = frame-0 query index) and ``masks`` (one RLE or None
        per frame at ``output_hw``)."""
        scores = F.softmax(self.video_logits, dim=-1)[:, :-1]
        num_classes = scores.shape[1]
        k = min(self.top_k, scores.numel())
        top = scores.flatten().topk(k, sorted=True)
        out = []
        for score, flat in zip(top.values.tolist(), top.indices.tolist()):
            query, label = divmod(int(flat), num_classes)
            frames = [rles[query] for rles in self._rles]
            masks = [None if mask_ops.area([r])[0] == 0 else r for r in frames]
            out.append({"score": float(score), "label": int(label), "query": int(query), "masks": masks})
        return out
