"""Review queues: the instances a person should look at, by kind, over decided videos.

Each queue is a rule over a :class:`~uvis.decide.VideoResult` (no UI, no model):

* ``dropped_pmf`` — dropped by prototype memory filtering;
* ``dropped_score_high_objectness`` — dropped by the label score although the proposer
  was confident (objectness ≥ :data:`HIGH_OBJECTNESS`);
* ``low_confidence_kept`` — kept with a label score less than :data:`LOW_MARGIN` above its
  threshold (the easiest to be wrong);
* ``short_tracks`` — kept instances of tracks of at most :data:`SHORT_TRACK` frames;
* ``curated`` — instances a person curated;
* ``unlabelled`` — instances without a class.

Items are ordered so the most doubtful come first (lowest label score, then frame).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import numpy as np

from uvis.decide import VideoResult
from uvis.types import Reason

HIGH_OBJECTNESS = 0.85
"""Objectness from which a proposal dropped by its label score is worth a look."""
LOW_MARGIN = 0.1
"""A kept instance whose label score is within this of its threshold is low-confidence."""
SHORT_TRACK = 3
"""Tracks of at most this many frames are short."""

QUEUES: dict[str, str] = {
    "dropped_pmf": "dropped by PMF",
    "dropped_score_high_objectness": f"dropped by score but objectness ≥ {HIGH_OBJECTNESS}",
    "low_confidence_kept": f"kept, score within {LOW_MARGIN} of its threshold",
    "short_tracks": f"short tracks (≤ {SHORT_TRACK} frames)",
    "curated": "curated by me",
    "unlabelled": "unlabelled",
}
"""Queue key -> its name in words."""


@dataclass(frozen=True)
class ReviewItem:
    """One instance in a queue: video, row in the video's table, frame, index in the frame."""

    video: str
    row: int
    frame: int
    index: int

    @property
    def key(self) -> str:
        return f"{self.video}|{self.frame}|{self.index}"


def queue_rows(result: VideoResult, queue: str) -> np.ndarray:
    """Rows of ``result`` in ``queue``, most doubtful first.

    Raises:
        KeyError: unknown queue.
    """
    inst = result.instances
    assert inst.decision is not None and inst.clip_score is not None and inst.label is not None
    assert inst.track_id is not None and inst.frame is not None
    dec = inst.decision
    if queue == "dropped_pmf":
        sel = dec == Reason.PMF
    elif queue == "dropped_score_high_objectness":
        sel = (dec == Reason.CLIP_SCORE) & (inst.objectness >= HIGH_OBJECTNESS)
    elif queue == "low_confidence_kept":
        fc = result.config.filters
        thr = np.full(len(inst), fc.clip_threshold, np.float32)
        for name, value in fc.clip_threshold_per_class.items():
            if name in result.vocabulary:
                thr[inst.label == result.vocabulary.index(name)] = value
        sel = (dec == Reason.KEPT) & ~result.user & (inst.clip_score < thr + LOW_MARGIN)
    elif queue == "short_tracks":
        short = [t.track_id for t in result.tracks if t.length <= SHORT_TRACK]
        sel = (dec == Reason.KEPT) & np.isin(inst.track_id, short)
    elif queue == "curated":
        sel = result.user.copy()
    elif queue == "unlabelled":
        sel = inst.label < 0
    else:
        raise KeyError(f"unknown review queue {queue!r} (one of {', '.join(QUEUES)})")
    rows = np.flatnonzero(sel)
    order = np.lexsort((inst.frame[rows], inst.clip_score[rows]))
    return rows[order]


def review_items(results: Mapping[str, VideoResult], queue: str, limit: int = 60) -> tuple[list[ReviewItem], int]:
    """The first ``limit`` items of ``queue`` over ``results`` (video name -> decisions),
    and the queue's total size."""
    items: list[ReviewItem] = []
    total = 0
    for name, res in results.items():
        rows = queue_rows(res, queue)
        total += len(rows)
        frames = res.instances.frame
        assert frames is not None
        starts = np.searchsorted(frames, frames[rows], side="left")
        for r, s in zip(rows[: max(0, limit - len(items))], starts):
            items.append(ReviewItem(name, int(r), int(frames[r]), int(r - s)))
    return items, total
