"""The per-chunk work both engines share: propose, embed and cache a run of frames.

:func:`label_frames` processes the frames ``start .. stop-1`` of one video into its
cache. A stateful proposer (one with ``context_frames > 0``, e.g. ``motion``) is first
fed the frames ``warm_from .. start-1`` (results discarded) so that its state is that of
a run that went through them; frames already cached are skipped by a stateless
proposer and only fed (not embedded, not rewritten) to a stateful one. Each frame file
is written atomically by :meth:`uvis.cache.CacheWriter.write_frame`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from uvis.cache import CacheWriter
from uvis.embedders.base import Embedder
from uvis.proposers.base import Proposer
from uvis.types import Instances
from uvis.video import VideoReader


def context_frames(proposer: Proposer) -> int:
    """How many preceding frames ``proposer`` needs to resume (0: it is stateless)."""
    return int(getattr(proposer, "context_frames", 0))


def embed_instances(embedder: Embedder, frame: np.ndarray, inst: Instances) -> Instances:
    """``inst`` with the crop embeddings (N, D) of ``frame`` (RGB uint8 (H, W, 3)) attached."""
    emb = embedder.embed_crops(frame, inst.boxes, inst.masks)
    return inst.with_fields(embeddings=emb.reshape(len(inst), embedder.dim))


@dataclass(frozen=True)
class FramesDone:
    """What :func:`label_frames` did: frames ``written`` and frames found ``cached``."""

    written: int
    cached: int


def label_frames(reader: VideoReader, proposer: Proposer, embedder: Embedder, writer: CacheWriter, *,
                 start: int, stop: int, warm_from: int | None = None,
                 before_frame: Callable[[int], None] | None = None,
                 after_frame: Callable[[int], None] | None = None) -> FramesDone:
    """Propose, embed and cache frames ``start .. stop-1`` of ``reader``'s video.

    Args:
        reader: the open video (``reader.info`` matches ``writer.meta.info``).
        proposer: reset by the caller before the first frame it is fed.
        embedder: crop embedder.
        writer: the video's cache writer.
        start, stop: processed frame range, ``0 <= start <= stop <= num_frames``.
        warm_from: first frame fed to a stateful proposer (default
            ``max(0, start - context_frames)``; 0 makes its state exactly that of an
            uninterrupted run). Ignored for stateless proposers.
        before_frame: called with ``t`` before each frame is read (may raise to stop,
            e.g. on cancel); an error raised while processing frame ``t`` follows it.
        after_frame: called with ``t`` after frame ``t`` is in the cache.
    Raises:
        whatever reading (BadInputError), the models or writing raise, unchanged.
    """
    n = reader.info.num_frames
    if not 0 <= start <= stop <= n:
        raise ValueError(f"frame range {start}..{stop} outside 0..{n} of {reader.info.name}")
    context = context_frames(proposer)
    first = start
    if context > 0:
        first = max(0, start - context) if warm_from is None else max(0, min(int(warm_from), start))
    written = cached = 0
    consolidated = writer.consolidated_frames()  # columns only appear when no writer runs
    for t in range(first, stop):
        is_cached = t >= start and writer.is_cached(t, consolidated)
        if is_cached and context == 0:
            cached += 1
            continue
        if before_frame is not None:
            before_frame(t)
        frame = reader.read(t)
        inst = proposer.propose(frame, t)
        if t < start or is_cached:
            cached += int(is_cached)
            continue
        writer.write_frame(t, embed_instances(embedder, frame, inst))
        written += 1
        if after_frame is not None:
            after_frame(t)
    return FramesDone(written=written, cached=cached)
