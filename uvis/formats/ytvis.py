"""YouTube-VIS: datasets (ground truth, our exports) and results — parsed and validated once.

Dataset (annotation JSON)::

    {"videos": [{"id", "width", "height", "length", "file_names": [...], "name"?}],
     "annotations": [{"id", "video_id", "category_id", "segmentations": [RLE | null per frame],
                      "areas": [number | null per frame]?, "bboxes": [[x, y, w, h] | null per frame]?,
                      "iscrowd": 0 | 1 ?}],
     "categories": [{"id", "name"}]}

Results: ``[{"video_id", "category_id", "score", "segmentations": [RLE | null per frame]}]``.

Segmentations: see :mod:`uvis.formats.rle` (polygons in datasets only). Besides the
structure, every id, size and count is checked: ``width``/``height`` in
``1..MAX_SIDE``, ``length`` in ``1..MAX_VIDEO_LENGTH`` and all videos together at most
``MAX_TOTAL_FRAMES`` frames (a 113-byte file declaring 10⁸ frames made evaluation
allocate gigabytes), ``file_names`` relative paths without ``..``, one segmentation
per frame, every RLE of the video's size. Every error is a
:class:`~uvis.formats.base.FormatError` naming the file and the JSON path
(``annotations[3].segmentations[7]``).

Readers: :func:`read_ytvis_dataset`, :func:`read_ytvis_results` (and ``parse_*`` for
parsed JSON). Writers: :func:`write_ytvis_dataset`, :func:`write_ytvis_results`
(atomic, strict JSON).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Mapping, Sequence

from uvis.formats.base import (MAX_SIDE, MAX_TOTAL_FRAMES, MAX_VIDEO_LENGTH, FormatError, at, int_value, is_int,
                               is_number, number_value, require_list, require_object, side_value)
from uvis.formats.json_io import read_json
from uvis.formats.rle import RLE, native, parse_segmentation


@dataclass(frozen=True)
class YtvisVideo:
    """One video of a dataset; ``name`` is the folder of ``file_names[0]`` (else the id).

    ``declared_name`` is the optional ``videos[i].name``; ``index`` the position in ``videos``.
    """

    id: int
    width: int
    height: int
    length: int
    file_names: tuple[str, ...]
    declared_name: str | None = None
    index: int = 0

    @property
    def name(self) -> str:
        if not self.file_names:
            return str(self.id)
        first = PurePosixPath(self.file_names[0].replace("\\", "/"))
        return first.parent.name or first.stem


@dataclass(frozen=True)
class YtvisTrack:
    """One video-level instance (a dataset annotation or a result).

    Attributes:
        index: position in the source list (for messages).
        video_id, category_id: ids as in the JSON (``category_id`` -1 when absent
            and categories are not checked).
        segmentations: one entry per frame: pycocotools RLE (``bytes`` counts) or None.
        score: result confidence (datasets: 1.0, or ``score`` when given).
        iscrowd: crowd flag.
        areas: the per-frame ``areas`` if given, else None.
        id: the annotation ``id`` when given (datasets), else None.
    """

    index: int
    video_id: int
    category_id: int
    segmentations: tuple[RLE | None, ...]
    score: float = 1.0
    iscrowd: bool = False
    areas: tuple[float | None, ...] | None = None
    id: int | None = None


@dataclass(frozen=True)
class YtvisGroundTruth:
    """A validated dataset: videos and categories by id (sorted), annotations in file order."""

    videos: dict[int, YtvisVideo]
    categories: dict[int, str]
    annotations: tuple[YtvisTrack, ...]
    source: str = "ground truth"

    def video_by_name(self) -> dict[str, YtvisVideo]:
        """Videos keyed by :attr:`YtvisVideo.name`."""
        return {v.name: v for v in self.videos.values()}


#: Alias: a YouTube-VIS dataset is ground truth or pseudo-labels alike.
YtvisDataset = YtvisGroundTruth


def read_ytvis_dataset(path: str | Path, *, check_categories: bool = True) -> YtvisGroundTruth:
    """Read and validate a YouTube-VIS dataset (annotation) file; see the module docstring."""
    return parse_ytvis_dataset(read_json(path), source=str(path),
                               check_categories=check_categories)


def read_ytvis_results(path: str | Path, dataset: YtvisGroundTruth) -> list[YtvisTrack]:
    """Read and validate a YouTube-VIS results file against the dataset it refers to."""
    return parse_ytvis_results(read_json(path), dataset, source=str(path))


def parse_ytvis_dataset(data: Any, source: str = "ground truth", *, check_categories: bool = True,
                        require_annotations: bool = True) -> YtvisGroundTruth:
    """Validate a parsed YouTube-VIS dataset.

    Args:
        data: the JSON value.
        source: the file, for messages.
        check_categories: require ``categories`` and known ``category_id``s (False for
            class-agnostic readers such as the file proposer).
        require_annotations: require the ``annotations`` list (False: a video index).
    """
    if isinstance(data, YtvisGroundTruth):
        return data
    top = f"{source}: (top level)"
    if not isinstance(data, dict):
        raise FormatError(top, "a YouTube-VIS dataset must be a JSON object", type(data).__name__,
                          remedy="results files are lists; pass them as predictions")
    needed = ["videos"] + (["annotations"] if require_annotations else []) + (["categories"] if check_categories
                                                                               else [])
    for key in needed:
        if key not in data:
            raise FormatError(top, f"missing top-level key '{key}'", remedy="is it a YouTube-VIS file?")
    categories = _categories(data.get("categories", []), source) if check_categories or "categories" in data \
        else {}
    videos = _videos(require_list(data["videos"], f"{source}: videos"), source)
    anns: list[YtvisTrack] = []
    for i, a in enumerate(require_list(data.get("annotations", []), f"{source}: annotations")):
        where = f"{source}: annotations[{i}]"
        require_object(a, where, ("video_id", "segmentations") + (("category_id",) if check_categories else ()))
        video = _video(a, videos, where)
        cid = _category(a, categories, where) if check_categories else (
            int_value(a["category_id"], at(where, "category_id")) if "category_id" in a else -1)
        segs = _segmentations(a["segmentations"], video, where, allow_polygons=True)
        areas = a.get("areas")
        if areas is not None:
            aw = at(where, "areas")
            if not isinstance(areas, list) or len(areas) != video.length:
                raise FormatError(aw, f"must be a list of {video.length} entries (the video length)",
                                  areas if not isinstance(areas, list) else len(areas))
            bad = [t for t, x in enumerate(areas) if not (x is None or (is_number(x) and x >= 0))]
            if bad:
                raise FormatError(at(aw, bad[0]), "areas must be non-negative numbers or null", areas[bad[0]])
        _bboxes(a.get("bboxes"), video, at(where, "bboxes"))
        score = number_value(a["score"], at(where, "score"), lo=0.0, hi=1.0) if "score" in a else 1.0
        aid = a.get("id")
        anns.append(YtvisTrack(
            index=i, video_id=video.id, category_id=cid, segmentations=segs, score=score,
            iscrowd=_crowd(a.get("iscrowd", 0), at(where, "iscrowd")),
            areas=None if areas is None else tuple(areas), id=aid if is_int(aid) else None,
        ))
    return YtvisGroundTruth(videos=dict(sorted(videos.items())), categories=dict(sorted(categories.items())),
                            annotations=tuple(anns), source=source)


def parse_ytvis_results(data: Any, dataset: YtvisGroundTruth | None, source: str = "results", *,
                        check_categories: bool = True, allow_polygons: bool = False) -> list[YtvisTrack]:
    """Validate a parsed YouTube-VIS results list.

    Args:
        data: the JSON value (a list).
        dataset: the dataset the results refer to (videos, sizes, lengths, categories);
            None for bare results (the file proposer without an index): videos are
            known by ``video_id`` only and each mask carries its own size.
        check_categories: require known ``category_id``s (needs ``dataset``).
        allow_polygons: accept polygon segmentations (evaluation does not; the file
            proposer does when the frame size is known).
    """
    if not isinstance(data, list):
        raise FormatError(f"{source}: (top level)", "YouTube-VIS results must be a JSON list",
                          type(data).__name__, remedy="a dataset file is an object; pass it as ground truth")
    if all(isinstance(r, YtvisTrack) for r in data) and data:
        return list(data)
    check_categories = check_categories and dataset is not None
    out: list[YtvisTrack] = []
    lengths: dict[int, tuple[int, int]] = {}
    for i, r in enumerate(data):
        where = f"{source}: [{i}]"
        require_object(r, where, ("video_id", "score", "segmentations")
                       + (("category_id",) if check_categories else ()))
        if dataset is not None:
            video: YtvisVideo | None = _video(r, dataset.videos, where)
            vid = video.id
        else:
            video = None
            vid = int_value(r["video_id"], at(where, "video_id"))
        if check_categories:
            cid = _category(r, dataset.categories, where)
        else:
            cid = int_value(r["category_id"], at(where, "category_id")) if "category_id" in r else -1
        score = number_value(r["score"], at(where, "score"))
        sw = at(where, "segmentations")
        if video is not None:
            segs = _segmentations(r["segmentations"], video, where, allow_polygons=allow_polygons)
        else:
            segs = _free_segmentations(r["segmentations"], sw, allow_polygons)
            first = lengths.setdefault(vid, (len(segs), i))
            if first[0] != len(segs):
                raise FormatError(sw, f"has {len(segs)} entries but [{first[1]}] of video {vid} has {first[0]}",
                                  remedy="every result of a video has one entry per frame")
        out.append(YtvisTrack(index=i, video_id=vid, category_id=cid, segmentations=segs, score=score))
    return out


def write_ytvis_dataset(path: str | Path, data: Mapping[str, Any]) -> Path:
    """Write a YouTube-VIS dataset dict (see :func:`uvis.export.ytvis.ytvis_annotation_dict`)
    atomically as strict, compact JSON; returns the path."""
    from uvis.fsutil import atomic_write_json

    return atomic_write_json(path, data)


def write_ytvis_results(path: str | Path, results: Sequence[Mapping[str, Any]]) -> Path:
    """Write a YouTube-VIS results list ``[{video_id, category_id, score, segmentations}]``
    atomically (strict JSON: scores must be finite; RLE ``counts`` as ``str``); returns the path.

    This is the file :func:`read_ytvis_results` and ``python -m uvis eval --pred`` read.
    """
    from uvis.fsutil import atomic_write_json

    return atomic_write_json(path, list(results))


def str_rle(rle: RLE) -> RLE:
    """A pycocotools RLE (``bytes`` counts) in the UVIS form (``str`` counts)."""
    counts = rle["counts"]
    return {"size": [int(rle["size"][0]), int(rle["size"][1])],
            "counts": counts.decode("ascii") if isinstance(counts, bytes) else counts}


# ----------------------------------------------------------------------------- parts
def _categories(cats: Any, source: str) -> dict[int, str]:
    out: dict[int, str] = {}
    for i, c in enumerate(require_list(cats, f"{source}: categories")):
        where = f"{source}: categories[{i}]"
        require_object(c, where, ("id", "name"))
        cid = int_value(c["id"], at(where, "id"))
        name = c["name"]
        if not isinstance(name, (str, int)) or isinstance(name, bool) or str(name) == "":
            raise FormatError(at(where, "name"), "a category name must be a non-empty string", name)
        if cid in out:
            raise FormatError(where, f"duplicate category id {cid}")
        if str(name) in out.values():
            raise FormatError(where, f"duplicate category name {str(name)!r}")
        out[cid] = str(name)
    return out


def _file_names(names: Any, where: str) -> tuple[str, ...]:
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise FormatError(where, "'file_names' must be a list of strings", names)
    for k, n in enumerate(names):
        p = PurePosixPath(n.replace("\\", "/"))
        if not n or p.is_absolute() or ".." in p.parts or (len(n) > 1 and n[1] == ":") or "\0" in n:
            raise FormatError(at(where, k), "file names must be relative paths inside the image root "
                                            "(no '..', not absolute)", n)
    return tuple(names)


def _videos(vids: list[Any], source: str) -> dict[int, YtvisVideo]:
    videos: dict[int, YtvisVideo] = {}
    total = 0
    for i, v in enumerate(vids):
        where = f"{source}: videos[{i}]"
        require_object(v, where, ("id", "width", "height"))
        vid = int_value(v["id"], at(where, "id"))
        if vid in videos:
            raise FormatError(where, f"duplicate video id {vid}")
        names = _file_names(v.get("file_names", []), at(where, "file_names"))
        if "length" in v:
            length = int_value(v["length"], at(where, "length"), lo=1, hi=MAX_VIDEO_LENGTH)
        else:
            length = len(names)
        if names and len(names) != length:
            raise FormatError(at(where, "length"), f"is {length} but there are {len(names)} file_names")
        if length <= 0:
            raise FormatError(where, "a video needs 'length' > 0 (or file_names)")
        if length > MAX_VIDEO_LENGTH:
            raise FormatError(at(where, "file_names"), f"lists more than the {MAX_VIDEO_LENGTH} frames a video may "
                                                       "have", length, remedy="split the video")
        total += length
        if total > MAX_TOTAL_FRAMES:
            raise FormatError(where, f"the videos up to this one have {total} frames, more than the "
                                     f"{MAX_TOTAL_FRAMES} one file may hold", remedy="split the file")
        width, height = side_value(v["width"], at(where, "width")), side_value(v["height"], at(where, "height"))
        declared = v.get("name") if isinstance(v.get("name"), str) else None
        videos[vid] = YtvisVideo(id=vid, width=width, height=height, length=length, file_names=names,
                                 declared_name=declared, index=i)
    return videos


def _video(entry: dict, videos: dict[int, YtvisVideo], where: str) -> YtvisVideo:
    vid = int_value(entry["video_id"], at(where, "video_id"))
    if vid not in videos:
        raise FormatError(where, f"video_id {vid} is not in the dataset's videos")
    return videos[vid]


def _category(entry: dict, categories: dict[int, str], where: str) -> int:
    cid = int_value(entry["category_id"], at(where, "category_id"))
    if cid not in categories:
        known = ", ".join(str(c) for c in list(categories)[:10]) + (" ..." if len(categories) > 10 else "")
        raise FormatError(where, f"unknown category_id {cid} (known ids: {known})")
    return cid


def _crowd(x: Any, where: str) -> bool:
    if x in (0, 1) and (is_int(x) or isinstance(x, bool)):
        return bool(x)
    raise FormatError(where, "'iscrowd' must be 0 or 1", x)


def _bboxes(boxes: Any, video: YtvisVideo, where: str) -> None:
    if boxes is None:
        return
    if not isinstance(boxes, list) or len(boxes) != video.length:
        raise FormatError(where, f"must be a list of {video.length} entries (the video length)",
                          boxes if not isinstance(boxes, list) else len(boxes))
    for t, b in enumerate(boxes):
        if b is not None and not (isinstance(b, list) and len(b) == 4
                                  and all(is_number(x) and abs(x) <= 3 * MAX_SIDE for x in b)):
            raise FormatError(at(where, t), f"a box must be [x, y, w, h] numbers within ±{3 * MAX_SIDE} or null", b)


def _segmentations(segs: Any, video: YtvisVideo, entry: str, allow_polygons: bool) -> tuple[RLE | None, ...]:
    """An entry's ``segmentations`` (``entry`` is its where-string) as native RLEs or None."""
    where = entry
    if not isinstance(segs, list):
        raise FormatError(where, "'segmentations' must be a list (one entry per frame)", segs)
    if len(segs) != video.length:
        raise FormatError(where, f"'segmentations' has {len(segs)} entries but video {video.id} has length "
                                 f"{video.length}", remedy="one RLE or null per frame")
    size = (video.height, video.width)
    where = at(entry, "segmentations")
    return tuple(None if s is None else native(parse_segmentation(
        s, at(where, t), size=size, size_of=f"video {video.id}", allow_polygons=allow_polygons))
        for t, s in enumerate(segs))


def _free_segmentations(segs: Any, where: str, allow_polygons: bool) -> tuple[RLE | None, ...]:
    """Segmentations of a result whose video is unknown: each RLE with its own size."""
    if not isinstance(segs, list):
        raise FormatError(where, "'segmentations' must be a list (one RLE or null per frame)", segs)
    if len(segs) > MAX_VIDEO_LENGTH:
        raise FormatError(where, f"has more than the {MAX_VIDEO_LENGTH} frames a video may have", len(segs))
    return tuple(None if s is None else native(parse_segmentation(s, at(where, t), allow_polygons=allow_polygons))
                 for t, s in enumerate(segs))


__all__ = ["MAX_SIDE", "YtvisDataset", "YtvisGroundTruth", "YtvisTrack", "YtvisVideo", "parse_ytvis_dataset",
           "parse_ytvis_results", "read_ytvis_dataset", "read_ytvis_results", "str_rle", "write_ytvis_dataset",
           "write_ytvis_results"]
