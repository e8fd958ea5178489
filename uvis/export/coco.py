"""COCO instances export (per-frame images) for detectron2 / Mask2Former / MinVIS-style
image-level training.

Layout written under ``out_dir``::

    annotations.json
    images/<video>/<t:05d>.jpg        every processed frame (stride, max_side applied)

``annotations.json``::

    {"info", "licenses": [], "videos": [{"id", "name"}],
     "images": [{"id", "file_name": "<video>/<t:05d>.jpg", "width", "height",
                 "video_id", "frame_index": t, "video": name}],
     "annotations": [{"id", "image_id", "category_id": label + 1, "iscrowd": 0,
                      "segmentation": RLE (str counts), "area", "bbox": [x, y, w, h],
                      "uvis": {per-instance columns, one entry each}}],
     "categories": [{"id": vocabulary index + 1, "name", "supercategory": "object"}],
     "uvis": {"version", "config", "vocabulary", "prompts", "videos": {name: VideoInfo}}}

Only kept instances are written; ``category_id`` is the track's voted label (the
instance's own label when untracked), the same as in the YouTube-VIS export. ``bbox``
is the tight box of the mask (pixels, x/y of the top-left corner). Frames without a
kept instance are still listed as images (negatives). Image ids are 1-based, in video
order then frame order. Extra keys (``videos``, ``video_id``, ``frame_index``, ``video``, ``uvis``)
are ignored by pycocotools and detectron2's ``load_coco_json``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

import uvis
from uvis import masks as mask_ops
from uvis.decide import VideoResult
from uvis.export._common import common_vocabulary, export_labels, instance_columns, video_ids
from uvis.export.frames import frame_file_name, write_video_frames
from uvis.formats.coco import write_coco_dataset

ProgressFn = Callable[[str, int, int], None]


def coco_annotation_dict(results: Mapping[str, VideoResult]) -> dict[str, Any]:
    """The COCO instances dict of ``results`` (see the module docstring)."""
    vocab, prompts = common_vocabulary(results)
    ids = video_ids(results)
    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    for name, r in results.items():
        info = r.info
        first_image = len(images) + 1
        for t in range(info.num_frames):
            images.append({"id": first_image + t, "file_name": frame_file_name(name, t), "width": info.width,
                           "height": info.height, "video_id": ids[name], "frame_index": t, "video": name})
        labels = export_labels(r)
        rows = np.flatnonzero(r.kept & (labels >= 0))
        if not len(rows):
            continue
        inst = r.instances
        rles = [inst.masks[i] for i in rows]
        areas = mask_ops.area(rles)
        boxes = mask_ops.to_bbox(rles)
        cols = instance_columns(r, rows)
        for k, row in enumerate(rows.tolist()):
            t = int(inst.frame[row])
            if t >= info.num_frames:
                raise ValueError(f"video {name}: instance frame {t} >= length {info.num_frames}")
            x1, y1, x2, y2 = (float(v) for v in boxes[k])
            m = inst.masks[row]
            annotations.append({
                "id": len(annotations) + 1, "image_id": first_image + t, "category_id": int(labels[row]) + 1,
                "iscrowd": 0, "segmentation": {"size": [int(m["size"][0]), int(m["size"][1])], "counts": m["counts"]},
                "area": int(areas[k]), "bbox": [x1, y1, x2 - x1, y2 - y1],
                "uvis": {key: col[k] for key, col in cols.items()},
            })
    config = next(iter(results.values())).config
    return {
        "info": {"description": "UVIS Studio pseudo-labels (per frame)", "version": uvis.__version__},
        "licenses": [],
        "videos": [{"id": ids[name], "name": name} for name in results],
        "images": images,
        "annotations": annotations,
        "categories": [{"id": i + 1, "name": c, "supercategory": "object"} for i, c in enumerate(vocab)],
        "uvis": {"version": uvis.__version__, "config": config.to_dict(), "vocabulary": vocab, "prompts": prompts,
                 "videos": {name: r.info.to_dict() for name, r in results.items()}},
    }


def export_coco(results: Mapping[str, VideoResult], out_dir: str | Path, *,
                progress: ProgressFn | None = None) -> Path:
    """Write ``out_dir/annotations.json`` and ``out_dir/images/<video>/<t:05d>.jpg``.

    Each video's image folder is replaced atomically, then the JSON is written
    atomically last, so a failure never leaves a JSON that names missing images.

    Args:
        results: video name -> decisions.
        out_dir: output folder (created).
        progress: optional ``progress(video, done_frames, total_frames)``.

    Returns:
        The path of ``annotations.json``.

    Raises:
        BadInputError: no results, mixed vocabularies, a missing or changed source video.
    """
    out_dir = Path(out_dir)
    data = coco_annotation_dict(results)
    images = out_dir / "images"
    images.mkdir(parents=True, exist_ok=True)
    for name, r in results.items():
        write_video_frames(r.info, images, None if progress is None else (lambda d, t, n=name: progress(n, d, t)))
    return write_coco_dataset(out_dir / "annotations.json", data)

