"""Cut a video's missing frames into work units (chunks) for parallel workers.

A chunk is a contiguous frame range ``start .. stop-1`` of one video plus
``warm_from``, the first frame a stateful proposer is fed before ``start``.

* Stateless proposers (CutLER, detectron2, file): the missing frames are cut into
  ranges of at most ``chunk_frames`` frames; chunks are independent.
* Stateful proposers (``motion``: a background model or the previous frame): one
  chunk per video, from its first to its last missing frame, fed from frame 0
  (``warm_from = 0``) so the proposer's state at every frame is that of an
  uninterrupted single-process run — the outputs are identical to it. Frames already
  cached inside the range are fed to the proposer, not recomputed or rewritten.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable


@dataclass(frozen=True)
class FrameRange:
    """Frames ``start .. stop-1`` to cache, a stateful proposer fed from ``warm_from``."""

    start: int
    stop: int
    warm_from: int

    def __len__(self) -> int:
        return self.stop - self.start


def contiguous_runs(frames: Iterable[int]) -> list[tuple[int, int]]:
    """Sorted frame indices -> ``[(start, stop), ...]`` maximal runs of consecutive frames."""
    runs: list[tuple[int, int]] = []
    for t in sorted(set(int(f) for f in frames)):
        if runs and runs[-1][1] == t:
            runs[-1] = (runs[-1][0], t + 1)
        else:
            runs.append((t, t + 1))
    return runs


def plan_chunks(missing: Iterable[int], *, chunk_frames: int, stateful: bool) -> list[FrameRange]:
    """Work units covering every frame in ``missing`` once (see the module docstring).

    Args:
        missing: frame indices without a cache file.
        chunk_frames: most frames per chunk of a stateless proposer (>= 1).
        stateful: the proposer needs the preceding frames (``context_frames > 0``).
    """
    if chunk_frames < 1:
        raise ValueError(f"chunk_frames must be >= 1, got {chunk_frames}")
    runs = contiguous_runs(missing)
    if not runs:
        return []
    if stateful:
        return [FrameRange(runs[0][0], runs[-1][1], 0)]
    out = []
    for a, b in runs:
        for s in range(a, b, chunk_frames):
            out.append(FrameRange(s, min(b, s + chunk_frames), s))
    return out
