"""Read and validate YouTube-VIS ground truth and results for evaluation.

Ground truth (annotation JSON)::

    {"videos": [{"id", "width", "height", "length", "file_names": [...]}],
     "annotations": [{"id", "video_id", "category_id", "segmentations": [RLE | null per frame],
                      "areas": [float | null per frame] (optional), "iscrowd": 0 | 1 (optional)}],
     "categories": [{"id", "name"}]}

Results: ``[{"video_id", "category_id", "score", "segmentations": [RLE | null per frame]}]``.

Segmentations may be compressed RLE (``counts`` a string), uncompressed RLE (``counts``
a list, as in the YouTube-VIS files) or COCO polygons (ground truth only). Every error
names the file (``source``), the entry (``annotations[12]``) and the problem: malformed
JSON, missing keys, unknown video or category ids, a segmentation list whose length is
not the video length, an RLE whose size is not the video's ``[height, width]``.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Sequence

from pycocotools import mask as mask_utils

from uvis import masks as mask_ops
from uvis.errors import BadInputError
from uvis.eval._rle import polygons_to_coco, to_coco
from uvis.eval.frame_f1 import FrameObject
from uvis.masks import RLE


@dataclass(frozen=True)
class YtvisVideo:
    """One video of the ground truth; ``name`` is the folder of ``file_names[0]``."""

    id: int
    width: int
    height: int
    length: int
    file_names: tuple[str, ...]

    @property
    def name(self) -> str:
        if not self.file_names:
            return str(self.id)
        first = PurePosixPath(self.file_names[0].replace("\\", "/"))
        return first.parent.name or first.stem


@dataclass(frozen=True)
class YtvisTrack:
    """One video-level instance (a ground-truth annotation or a result).

    Attributes:
        index: position in the source list (for messages).
        video_id, category_id: ids as in the JSON.
        segmentations: one entry per frame: pycocotools RLE (``bytes`` counts) or None.
        score: result confidence (ground truth: 1.0).
        iscrowd: ground-truth crowd flag.
        areas: ground truth's per-frame ``areas`` if given, else None.
    """

    index: int
    video_id: int
    category_id: int
    segmentations: tuple[RLE | None, ...]
    score: float = 1.0
    iscrowd: bool = False
    areas: tuple[float | None, ...] | None = None


@dataclass(frozen=True)
class YtvisGroundTruth:
    """Validated ground truth: videos and categories by id (sorted), annotations in file order."""

    videos: dict[int, YtvisVideo]
    categories: dict[int, str]
    annotations: tuple[YtvisTrack, ...]
    source: str = "ground truth"

    def video_by_name(self) -> dict[str, YtvisVideo]:
        """Videos keyed by :attr:`YtvisVideo.name`."""
        return {v.name: v for v in self.videos.values()}


def read_json(path: str | Path) -> Any:
    """Parse a JSON file; :class:`BadInputError` naming the file if missing or malformed."""
    path = Path(path)
    if not path.is_file():
        raise BadInputError(f"{path}: file not found")
    try:
        with path.open("rb") as fh:
            return json.load(fh)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BadInputError(f"{path}: malformed JSON: {exc}") from exc


def load_ground_truth(path: str | Path) -> YtvisGroundTruth:
    """Read and validate a YouTube-VIS annotation file."""
    return parse_ground_truth(read_json(path), source=str(path))


def load_results(path: str | Path, gt: YtvisGroundTruth) -> list[YtvisTrack]:
    """Read and validate a YouTube-VIS results file against ``gt``."""
    return parse_results(read_json(path), gt, source=str(path))


def parse_ground_truth(data: Any, source: str = "ground truth") -> YtvisGroundTruth:
    """Validate a YouTube-VIS annotation dict (see the module docstring)."""
    if isinstance(data, YtvisGroundTruth):
        return data
    if not isinstance(data, dict):
        raise BadInputError(f"{source}: a YouTube-VIS annotation file must be a JSON object, got {type(data).__name__}")
    for key in ("videos", "annotations", "categories"):
        if key not in data:
            raise BadInputError(f"{source}: missing top-level key '{key}'")
        if not isinstance(data[key], list):
            raise BadInputError(f"{source}: '{key}' must be a list")
    categories: dict[int, str] = {}
    for i, c in enumerate(data["categories"]):
        where = f"{source}: categories[{i}]"
        _keys(c, ("id", "name"), where)
        cid = _int(c["id"], where, "id")
        if cid in categories:
            raise BadInputError(f"{where}: duplicate category id {cid}")
        if str(c["name"]) in categories.values():
            raise BadInputError(f"{where}: duplicate category name {c['name']!r}")
        categories[cid] = str(c["name"])
    videos: dict[int, YtvisVideo] = {}
    for i, v in enumerate(data["videos"]):
        where = f"{source}: videos[{i}]"
        _keys(v, ("id", "width", "height"), where)
        vid = _int(v["id"], where, "id")
        if vid in videos:
            raise BadInputError(f"{where}: duplicate video id {vid}")
        names = v.get("file_names", [])
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise BadInputError(f"{where}: 'file_names' must be a list of strings")
        length = _int(v["length"], where, "length") if "length" in v else len(names)
        if names and len(names) != length:
            raise BadInputError(f"{where}: 'length' is {length} but there are {len(names)} file_names")
        if length <= 0:
            raise BadInputError(f"{where}: a video needs 'length' > 0 (or file_names)")
        width, height = _int(v["width"], where, "width"), _int(v["height"], where, "height")
        if width <= 0 or height <= 0:
            raise BadInputError(f"{where}: 'width' and 'height' must be positive, got {width}x{height}")
        videos[vid] = YtvisVideo(id=vid, width=width, height=height, length=length, file_names=tuple(names))
    anns: list[YtvisTrack] = []
    for i, a in enumerate(data["annotations"]):
        where = f"{source}: annotations[{i}]"
        _keys(a, ("video_id", "category_id", "segmentations"), where)
        video = _video(a, videos, where)
        cid = _category(a, categories, where)
        segs = _segmentations(a["segmentations"], video, where, allow_polygons=True)
        areas = a.get("areas")
        if areas is not None:
            if not isinstance(areas, list) or len(areas) != video.length:
                raise BadInputError(
                    f"{where}: 'areas' must be a list of {video.length} entries (the video length)"
                )
            if not all(x is None or (_is_number(x) and x >= 0) for x in areas):
                raise BadInputError(f"{where}: 'areas' entries must be non-negative numbers or null")
        anns.append(YtvisTrack(
            index=i, video_id=video.id, category_id=cid, segmentations=segs,
            iscrowd=bool(a.get("iscrowd", 0)), areas=None if areas is None else tuple(areas),
        ))
    return YtvisGroundTruth(
        videos=dict(sorted(videos.items())), categories=dict(sorted(categories.items())),
        annotations=tuple(anns), source=source,
    )


def parse_results(data: Any, gt: YtvisGroundTruth, source: str = "results") -> list[YtvisTrack]:
    """Validate a YouTube-VIS results list against the ground truth's videos and categories."""
    if not isinstance(data, list):
        raise BadInputError(f"{source}: YouTube-VIS results must be a JSON list, got {type(data).__name__}")
    if all(isinstance(r, YtvisTrack) for r in data):
        return list(data)
    out: list[YtvisTrack] = []
    for i, r in enumerate(data):
        where = f"{source}: [{i}]"
        _keys(r, ("video_id", "category_id", "score", "segmentations"), where)
        video = _video(r, gt.videos, where)
        cid = _category(r, gt.categories, where)
        score = r["score"]
        if not _is_number(score) or not math.isfinite(score):
            raise BadInputError(f"{where}: 'score' must be a finite number, got {score!r}")
        segs = _segmentations(r["segmentations"], video, where, allow_polygons=False)
        out.append(YtvisTrack(index=i, video_id=video.id, category_id=cid, segmentations=segs, score=float(score)))
    return out


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
    only where its mask has pixels.

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


# ----------------------------------------------------------------------------- helpers
def _keys(obj: Any, keys: Sequence[str], where: str) -> None:
    if not isinstance(obj, dict):
        raise BadInputError(f"{where}: must be a JSON object, got {type(obj).__name__}")
    missing = [k for k in keys if k not in obj]
    if missing:
        raise BadInputError(f"{where}: missing key(s) {', '.join(repr(k) for k in missing)}")


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _int(x: Any, where: str, key: str) -> int:
    if isinstance(x, bool) or not isinstance(x, int):
        if isinstance(x, float) and x.is_integer():
            return int(x)
        raise BadInputError(f"{where}: '{key}' must be an integer, got {x!r}")
    return x


def _video(entry: dict, videos: dict[int, YtvisVideo], where: str) -> YtvisVideo:
    vid = _int(entry["video_id"], where, "video_id")
    if vid not in videos:
        raise BadInputError(f"{where}: video_id {vid} is not in the ground truth's videos")
    return videos[vid]


def _category(entry: dict, categories: dict[int, str], where: str) -> int:
    cid = _int(entry["category_id"], where, "category_id")
    if cid not in categories:
        known = ", ".join(str(c) for c in list(categories)[:10]) + (" ..." if len(categories) > 10 else "")
        raise BadInputError(f"{where}: unknown category_id {cid} (known ids: {known})")
    return cid


def _segmentations(segs: Any, video: YtvisVideo, where: str, allow_polygons: bool) -> tuple[RLE | None, ...]:
    if not isinstance(segs, list):
        raise BadInputError(f"{where}: 'segmentations' must be a list (one entry per frame)")
    if len(segs) != video.length:
        raise BadInputError(
            f"{where}: 'segmentations' has {len(segs)} entries but video {video.id} has length {video.length}"
        )
    out: list[RLE | None] = []
    for t, s in enumerate(segs):
        if s is None:
            out.append(None)
            continue
        try:
            if isinstance(s, list):
                if not allow_polygons:
                    raise ValueError("results must use RLE segmentations, not polygons")
                rle = polygons_to_coco(s, video.height, video.width)
            else:
                rle = to_coco(s)
        except (ValueError, TypeError) as exc:
            raise BadInputError(f"{where}: segmentations[{t}]: {exc}") from exc
        if list(rle["size"]) != [video.height, video.width]:
            raise BadInputError(
                f"{where}: segmentations[{t}]: RLE size {list(rle['size'])} does not match "
                f"video {video.id} [height, width] = [{video.height}, {video.width}]"
            )
        out.append(rle)
    return tuple(out)
