"""YouTube-VIS export: annotation JSON (pseudo-labels as ground truth) and results JSON.

Annotation file (DESIGN §4)::

    {"info": {...}, "licenses": [],
     "videos": [{"id", "name", "width", "height", "length",
                 "file_names": ["<video>/00000.jpg", ...],          # every processed frame
                 "uvis": {"name", "info": VideoInfo}}],
     "categories": [{"id": vocabulary index + 1, "name", "supercategory": "object"}],
     "annotations": [{"id", "video_id", "category_id", "iscrowd": 0,
                      "segmentations": [RLE | null per frame],   # compressed RLE, str counts
                      "areas": [int | null per frame],
                      "bboxes": [[x, y, w, h] | null per frame],  # tight box of the mask, pixels
                      "height", "width", "length": 1,
                      "uvis": {"track_id", "track_label", "track_score",
                               "instances": {per-instance columns, one per non-null frame}}}],
     "uvis": {"version", "config", "vocabulary", "prompts"}}

One annotation per kept track: its frames' masks at the processed frame size (stride
and ``max_side`` applied), ``category_id`` = the track's voted label + 1. Should a
track hold two instances in one frame (a person merged two overlapping tracks), the
track is written as several annotations sharing ``uvis.track_id`` (the first instance
of each frame in the first, the second in the next...), so nothing is lost. The
``uvis`` keys are ignored by the YouTube-VIS API, Mask2Former/MinVIS's ``load_ytvis_json``
and pycocotools; :func:`uvis.export.importers.read_ytvis_instances` reads them back into
the exact decision table (masks, track ids, labels, scores, decisions, prompts).

Results file (for evaluation tools)::

    [{"video_id", "category_id": track label + 1, "score": track score,
      "segmentations": [RLE | null per frame]}]     # one entry per kept track

Video ids are 1-based in the order of ``results`` in both files.
"""
from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
from pycocotools import mask as mask_utils

import uvis
from uvis import masks as mask_ops
from uvis.decide import VideoResult
from uvis.export._common import common_vocabulary, export_labels, instance_columns, video_ids
from uvis.export.frames import frame_file_name, write_video_frames
from uvis.formats.ytvis import write_ytvis_dataset, write_ytvis_results

ProgressFn = Callable[[str, int, int], None]


def _kept_rows(r: VideoResult) -> np.ndarray:
    """Rows exported: kept instances with a label (frame-sorted)."""
    labels = export_labels(r)
    return np.flatnonzero(r.kept & (labels >= 0))


def _track_groups(r: VideoResult, rows: np.ndarray) -> list[tuple[int, list[list[int]]]]:
    """Kept rows grouped by track and exported class, each split into layers with at most
    one row per frame.

    Returns ``[(track_id, [layer rows...]), ...]`` sorted by track id; a track whose
    members have different classes (a person labelled some of them otherwise than the
    track's class) is one group per class; untracked rows (track id -1) are one group each.
    """
    inst = r.instances
    classes = export_labels(r)
    by_track: dict[tuple[int, int], list[int]] = defaultdict(list)
    singles: list[int] = []
    for row in rows.tolist():
        tid = int(inst.track_id[row])
        (by_track[(tid, int(classes[row]))] if tid >= 0 else singles).append(row)
    out: list[tuple[int, list[list[int]]]] = []
    for tid, cls in sorted(by_track):
        layers: list[list[int]] = []
        seen: dict[int, int] = defaultdict(int)  # frame -> members placed so far
        for row in by_track[(tid, cls)]:
            t = int(inst.frame[row])
            k = seen[t]
            seen[t] += 1
            if k == len(layers):
                layers.append([])
            layers[k].append(row)
        out.append((tid, layers))
    out.extend((-1, [[row]]) for row in singles)
    return out


def _rle_json(r: VideoResult, row: int) -> dict[str, Any]:
    m = r.instances.masks[row]
    return {"size": [int(m["size"][0]), int(m["size"][1])], "counts": m["counts"]}


def ytvis_annotation_dict(results: Mapping[str, VideoResult]) -> dict[str, Any]:
    """The YouTube-VIS annotation file of ``results`` as a dict (see the module docstring)."""
    vocab, prompts = common_vocabulary(results)
    ids = video_ids(results)
    videos: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    config = next(iter(results.values())).config
    for name, r in results.items():
        info = r.info
        n_frames = info.num_frames
        videos.append({
            "id": ids[name], "name": name, "width": info.width, "height": info.height, "length": n_frames,
            "file_names": [frame_file_name(name, t) for t in range(n_frames)],
            "uvis": {"name": name, "info": info.to_dict()},
        })
        labels = export_labels(r)
        scores = {t.track_id: t.score for t in r.tracks}
        inst = r.instances
        for tid, layers in _track_groups(r, _kept_rows(r)):
            for layer in layers:
                frames = inst.frame[layer]
                if frames.max(initial=-1) >= n_frames:
                    raise ValueError(f"video {name}: instance frame {int(frames.max())} >= length {n_frames}")
                rles = [inst.masks[i] for i in layer]
                areas = mask_ops.area(rles)
                boxes = mask_ops.to_bbox(rles)
                segs: list[Any] = [None] * n_frames
                area_list: list[Any] = [None] * n_frames
                bbox_list: list[Any] = [None] * n_frames
                for k, row in enumerate(layer):
                    t = int(inst.frame[row])
                    segs[t] = _rle_json(r, row)
                    area_list[t] = int(areas[k])
                    x1, y1, x2, y2 = (float(v) for v in boxes[k])
                    bbox_list[t] = [x1, y1, x2 - x1, y2 - y1]
                first = layer[0]
                track_score = scores.get(tid, float(inst.clip_score[first]))
                annotations.append({
                    "id": len(annotations) + 1, "video_id": ids[name],
                    "category_id": int(labels[first]) + 1, "iscrowd": 0,
                    "segmentations": segs, "areas": area_list, "bboxes": bbox_list,
                    "height": info.height, "width": info.width, "length": 1,
                    "uvis": {"track_id": tid, "track_label": int(labels[first]),
                             "track_score": float(track_score), "instances": instance_columns(r, layer)},
                })
    return {
        "info": {"description": "UVIS Studio pseudo-labels", "version": uvis.__version__},
        "licenses": [],
        "videos": videos,
        "categories": [{"id": i + 1, "name": c, "supercategory": "object"} for i, c in enumerate(vocab)],
        "annotations": annotations,
        "uvis": {"version": uvis.__version__, "config": config.to_dict(), "vocabulary": vocab, "prompts": prompts},
    }


def export_ytvis(results: Mapping[str, VideoResult], out_path: str | Path, *,
                 frames_dir: str | Path | None = None, progress: ProgressFn | None = None) -> Path:
    """Write the YouTube-VIS annotation JSON of the kept, tracked pseudo-labels.

    Args:
        results: video name -> decisions (e.g. ``open_project(ws).decide(cfg)``).
        out_path: the JSON file to write (atomically).
        frames_dir: if given, every processed frame is written as JPEG to
            ``frames_dir/<video>/<t:05d>.jpg`` (the ``file_names`` of the JSON, so
            ``frames_dir`` is the image root for training) before the JSON is written.
        progress: optional ``progress(video, done_frames, total_frames)`` while frames are written.

    Returns:
        ``out_path``.

    Raises:
        BadInputError: no results, mixed vocabularies, or (with ``frames_dir``) a source
            video that is missing or changed since labelling.
    """
    data = ytvis_annotation_dict(results)
    if frames_dir is not None:
        for name, r in results.items():
            write_video_frames(r.info, frames_dir,
                               None if progress is None else (lambda d, t, n=name: progress(n, d, t)))
    return write_ytvis_dataset(out_path, data)


def ytvis_results_list(results: Mapping[str, VideoResult]) -> list[dict[str, Any]]:
    """The YouTube-VIS results list of ``results``: one entry per kept track."""
    ids = video_ids(results)
    out: list[dict[str, Any]] = []
    for name, r in results.items():
        inst = r.instances
        n_frames = r.info.num_frames
        labels = export_labels(r)
        scores = {t.track_id: t.score for t in r.tracks}
        for tid, layers in _track_groups(r, _kept_rows(r)):
            per_frame: dict[int, list[int]] = defaultdict(list)
            for layer in layers:
                for row in layer:
                    per_frame[int(inst.frame[row])].append(row)
            segs: list[Any] = [None] * n_frames
            for t, rows in per_frame.items():
                if len(rows) == 1:
                    segs[t] = _rle_json(r, rows[0])
                else:  # a merged track with two instances in a frame: their union
                    merged = mask_utils.merge([{"size": inst.masks[i]["size"],
                                                "counts": inst.masks[i]["counts"].encode("ascii")} for i in rows])
                    segs[t] = {"size": [int(v) for v in merged["size"]], "counts": merged["counts"].decode("ascii")}
            first = layers[0][0]
            out.append({"video_id": ids[name], "category_id": int(labels[first]) + 1,
                        "score": float(scores.get(tid, float(inst.clip_score[first]))), "segmentations": segs})
    return out


def export_ytvis_results(results: Mapping[str, VideoResult], out_path: str | Path) -> Path:
    """Write the YouTube-VIS results JSON (one scored entry per kept track) atomically."""
    return write_ytvis_results(out_path, ytvis_results_list(results))
