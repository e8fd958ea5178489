"""YouTube-VIS ground truth and results for evaluation.

Parsing and validation live in :mod:`uvis.formats.ytvis` (one place for the format);
this module adds the evaluation view: :func:`frames_from_ytvis` unrolls video-level
ground truth and results into aligned per-frame objects for
:func:`uvis.eval.frame_f1.frame_f1`.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from uvis import masks as mask_ops
from uvis.eval.frame_f1 import FrameObject
from uvis.formats.json_io import read_json
from uvis.formats.ytvis import (YtvisGroundTruth, YtvisTrack, YtvisVideo, parse_ytvis_dataset,
                                parse_ytvis_results, read_ytvis_dataset, read_ytvis_results)

__all__ = ["YtvisFrames", "YtvisGroundTruth", "YtvisTrack", "YtvisVideo", "frames_from_ytvis", "load_ground_truth",
           "load_results", "parse_ground_truth", "parse_results", "read_json"]


def load_ground_truth(path: str | Path) -> YtvisGroundTruth:
    """Read and validate a YouTube-VIS annotation file (:func:`uvis.formats.ytvis.read_ytvis_dataset`)."""
    return read_ytvis_dataset(path)


def load_results(path: str | Path, gt: YtvisGroundTruth) -> list[YtvisTrack]:
    """Read and validate a YouTube-VIS results file against ``gt``."""
    return read_ytvis_results(path, gt)


def parse_ground_truth(data: Any, source: str = "ground truth") -> YtvisGroundTruth:
    """Validate a YouTube-VIS annotation dict (:func:`uvis.formats.ytvis.parse_ytvis_dataset`)."""
    return parse_ytvis_dataset(data, source)


def parse_results(data: Any, gt: YtvisGroundTruth, source: str = "results") -> list[YtvisTrack]:
    """Validate a YouTube-VIS results list against the ground truth's videos and categories."""
    return parse_ytvis_results(data, gt, source)


@dataclass(frozen=True)
class YtvisFrames:
    """Per-frame objects for :func:`uvis.eval.frame_f1.frame_f1`.

    ``keys[i]`` is (video_id, frame index) of frame i; ``gt[i]`` and ``pred[i]`` its
    ground truth and predictions (a result's score is used in every frame).
    """

    keys: list[tuple[int, int]]
    gt: list[list[FrameObject]]
    pred: list[list[FrameObject]]


def frames_from_ytvis(gt: dict | YtvisGroundTruth, results: Sequence[Any] | None = None) -> YtvisFrames:
    """Unroll video-level ground truth (and results) into aligned frames of every GT video.

    Null and empty (zero-area) segmentations are left out: an object is in a frame
    only where its mask has pixels. Memory is bounded by the format's frame caps
    (:data:`uvis.formats.base.MAX_TOTAL_FRAMES`).

    Args:
        gt: YouTube-VIS annotation dict or parsed :class:`YtvisGroundTruth`.
        results: YouTube-VIS results list (or parsed tracks); None gives empty predictions.
    """
    truth = parse_ground_truth(gt)
    tracks = [] if results is None else parse_results(list(results), truth)
    keys: list[tuple[int, int]] = []
    start: dict[int, int] = {}
    for v in truth.videos.values():
        start[v.id] = len(keys)
        keys.extend((v.id, t) for t in range(v.length))
    gt_frames: list[list[FrameObject]] = [[] for _ in keys]
    pred_frames: list[list[FrameObject]] = [[] for _ in keys]
    for frames, items, is_gt in ((gt_frames, truth.annotations, True), (pred_frames, tracks, False)):
        for tr in items:
            base = start[tr.video_id]
            idx = [t for t, s in enumerate(tr.segmentations) if s is not None]
            if not idx:
                continue
            areas = mask_ops.area([tr.segmentations[t] for t in idx])
            for t, a in zip(idx, areas):
                if a > 0:  # an empty mask means "not in this frame" (VIS models emit them)
                    frames[base + t].append(
                        FrameObject(tr.category_id, tr.segmentations[t], tr.score, tr.iscrowd and is_gt)
                    )
    return YtvisFrames(keys=keys, gt=gt_frames, pred=pred_frames)
