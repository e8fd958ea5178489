"""COCO instances (per-frame images of videos) and COCO results — parsed and validated once.

Dataset::

    {"images": [{"id", "file_name", "height", "width", "video_id"?, "frame_index"?, "video"?}],
     "categories": [{"id", "name"}], "videos": [{"id", "name"}]?,
     "annotations": [{"id"?, "image_id", "category_id", "segmentation": RLE | polygons,
                      "bbox": [x, y, w, h]?, "score"?, "iscrowd"?}]}

Results: ``[{"image_id", "category_id", "segmentation", "score", "bbox"?}]``.

Images are grouped into videos by :meth:`CocoDataset.videos`: by ``video_id`` when
given, else by the folder of ``file_name`` (``<video>/<frame>.jpg``; a flat file
name belongs to the video ``images``); a frame is ``frame_index`` when every image
of the video has one, else the rank of ``file_name`` in natural order. Segmentations
are checked by :mod:`uvis.formats.rle` at the image's size. Every error is a
:class:`~uvis.formats.base.FormatError` naming the file and the JSON path.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Mapping

from uvis.formats.base import (MAX_SIDE, FormatError, at, int_value, is_int, is_number, number_value, require_list,
                               require_object, side_value)
from uvis.formats.json_io import read_json
from uvis.formats.rle import RLE, parse_segmentation


@dataclass(frozen=True)
class CocoImage:
    """One image entry; sizes, video and frame are None when the file does not give them."""

    id: int
    index: int
    file_name: str | None
    height: int | None
    width: int | None
    video_id: int | None = None
    frame_index: int | None = None
    video: str | None = None

    @property
    def size(self) -> tuple[int, int] | None:
        """(H, W) if both are given."""
        return None if self.height is None or self.width is None else (self.height, self.width)

    @property
    def folder(self) -> str:
        """The folder part of ``file_name`` ('' for a flat name)."""
        if self.file_name is None:
            return ""
        parent = PurePosixPath(self.file_name.replace("\\", "/")).parent.as_posix()
        return "" if parent == "." else parent


@dataclass(frozen=True)
class CocoVideo:
    """Images of one video: ``frames`` maps image id -> 0-based frame.

    ``name`` is the video's name (``video``, ``videos[].name``, the folder's name,
    the ``video_id``, or ``images``); ``aliases`` every name it answers to.
    """

    key: tuple[str, Any]
    name: str
    aliases: frozenset[str]
    frames: dict[int, int]
    size: tuple[int, int] | None
    file_names: tuple[str, ...] = ()  # in frame order (empty names for images without one)


@dataclass(frozen=True)
class CocoAnnotation:
    """One validated annotation or result; ``segmentation`` compressed RLE with ``str`` counts."""

    index: int
    image_id: int
    category_id: int
    segmentation: RLE
    score: float | None = None
    bbox: tuple[float, float, float, float] | None = None
    iscrowd: bool = False
    raw: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class CocoDataset:
    """Validated images, categories and video names of a COCO file (annotations separate)."""

    images: dict[int, CocoImage]
    categories: dict[int, str]
    video_names: dict[int, str]
    source: str = "COCO file"

    def videos(self) -> list[CocoVideo]:
        """The images grouped into videos (see the module docstring), in order of first image."""
        from uvis.video import natural_key

        groups: dict[tuple[str, Any], list[CocoImage]] = defaultdict(list)
        for im in self.images.values():
            if im.video_id is not None:
                key: tuple[str, Any] = ("id", im.video_id)
            elif im.folder:
                key = ("folder", im.folder)
            else:
                key = ("flat", "")
            groups[key].append(im)
        out: list[CocoVideo] = []
        names: dict[str, tuple[str, Any]] = {}
        for key, members in groups.items():
            first = members[0]
            folder = first.folder
            folder_name = PurePosixPath(folder).name if folder else ""
            if key[0] == "id":
                vid = key[1]
                name = first.video or self.video_names.get(vid) or folder_name or str(vid)
                aliases = {name, str(vid), *([self.video_names[vid]] if vid in self.video_names else [])}
            elif key[0] == "folder":
                name = folder_name
                aliases = {name}
            else:
                name = "images"
                aliases = {name}
            if folder:
                aliases.update({folder, folder_name})
            if name in names and names[name] != key:
                raise FormatError(f"{self.source}: images[{first.index}]", f"a second video named {name!r}",
                                  remedy="give the videos distinct folders or video_id/videos names")
            names[name] = key
            names_seen: dict[str, int] = {}
            for im in members:
                if im.file_name is not None:
                    if im.file_name in names_seen:
                        raise FormatError(f"{self.source}: images[{im.index}]", f"file name {im.file_name!r} is also "
                                                                                f"images[{names_seen[im.file_name]}]")
                    names_seen[im.file_name] = im.index
            if all(im.frame_index is not None for im in members):
                frames = {im.id: int(im.frame_index) for im in members}  # type: ignore[arg-type]
            else:
                for im in members:
                    if im.file_name is None:
                        raise FormatError(f"{self.source}: images[{im.index}]",
                                          "needs 'frame_index' or a 'file_name' to order the video's frames")
                ordered = sorted(members, key=lambda m: natural_key(m.file_name or ""))
                frames = {im.id: t for t, im in enumerate(ordered)}
            seen: dict[int, int] = {}
            for im in members:
                t = frames[im.id]
                if t in seen:
                    raise FormatError(f"{self.source}: images[{im.index}]",
                                      f"frame {t} of the video is also images[{seen[t]}]")
                seen[t] = im.index
            sizes = {im.size for im in members if im.size is not None}
            if len(sizes) > 1:
                raise FormatError(f"{self.source}: images[{first.index}]",
                                  f"images of video '{name}' have different sizes {sorted(sizes)}",
                                  remedy="a video's frames share one size")
            by_frame = sorted(members, key=lambda m: frames[m.id])
            out.append(CocoVideo(key, name, frozenset(a for a in aliases if a), frames,
                                 next(iter(sizes)) if sizes else None, tuple(m.file_name or "" for m in by_frame)))
        return out


def read_coco_dataset(path: str | Path, **kwargs: Any) -> tuple[CocoDataset, list[CocoAnnotation]]:
    """Read a COCO instances file: (images/categories, its validated annotations)."""
    data = read_json(path)
    ds = parse_coco_dataset(data, str(path), **kwargs)
    if not isinstance(data, dict) or "annotations" not in data:
        raise FormatError(f"{path}: (top level)", "missing top-level list 'annotations'")
    return ds, parse_coco_annotations(data["annotations"], ds, str(path),
                                      check_categories=kwargs.get("check_categories", True))


def read_coco_results(path: str | Path, dataset: CocoDataset, *, check_categories: bool = True) -> list[CocoAnnotation]:
    """Read COCO results against the dataset they refer to (``score`` required)."""
    return parse_coco_annotations(read_json(path), dataset, str(path), results=True,
                                  check_categories=check_categories)


def parse_coco_dataset(data: Any, source: str = "COCO file", *, check_categories: bool = True,
                       require_sizes: bool = True) -> CocoDataset:
    """Validate the ``images``, ``categories`` and ``videos`` of a parsed COCO file.

    Args:
        check_categories: require ``categories`` (False: class-agnostic readers).
        require_sizes: require every image's ``height`` and ``width``.
    """
    top = f"{source}: (top level)"
    if not isinstance(data, dict):
        raise FormatError(top, "a COCO file must be a JSON object", type(data).__name__)
    for key in ("images",) + (("categories",) if check_categories else ()):
        if not isinstance(data.get(key), list):
            raise FormatError(top, f"missing or invalid top-level list '{key}'", remedy="is it a COCO file?")
    categories: dict[int, str] = {}
    for i, c in enumerate(require_list(data.get("categories", []), f"{source}: categories")):
        where = f"{source}: categories[{i}]"
        require_object(c, where, ("id", "name"))
        cid = int_value(c["id"], at(where, "id"))
        if cid in categories:
            raise FormatError(where, f"duplicate category id {cid}")
        categories[cid] = str(c["name"])
    video_names: dict[int, str] = {}
    vids = data.get("videos")
    for i, v in enumerate(vids if isinstance(vids, list) else []):
        if isinstance(v, dict) and is_int(v.get("id")) and isinstance(v.get("name"), str):
            video_names[v["id"]] = v["name"]
    images: dict[int, CocoImage] = {}
    for i, im in enumerate(data["images"]):
        where = f"{source}: images[{i}]"
        require_object(im, where, ("id",) + (("height", "width") if require_sizes else ()))
        iid = int_value(im["id"], at(where, "id"))
        if iid in images:
            raise FormatError(where, f"duplicate image id {iid}")
        fname = im.get("file_name")
        if fname is not None:
            if not isinstance(fname, str) or not fname:
                raise FormatError(at(where, "file_name"), "must be a non-empty string", fname)
            p = PurePosixPath(fname.replace("\\", "/"))
            if p.is_absolute() or ".." in p.parts or "\0" in fname:
                raise FormatError(at(where, "file_name"), "must be a relative path inside the image root "
                                                          "(no '..', not absolute)", fname)
        h = side_value(im["height"], at(where, "height")) if im.get("height") is not None else None
        w = side_value(im["width"], at(where, "width")) if im.get("width") is not None else None
        vid = int_value(im["video_id"], at(where, "video_id")) if im.get("video_id") is not None else None
        fi = int_value(im["frame_index"], at(where, "frame_index"), lo=0) if im.get("frame_index") is not None \
            else None
        if vid is None and fname is None:
            raise FormatError(where, "needs 'video_id' or a 'file_name' (<video>/<frame>.jpg) to know its video")
        video = im.get("video") if isinstance(im.get("video"), str) and im.get("video") else None
        images[iid] = CocoImage(iid, i, fname, h, w, vid, fi, video)
    return CocoDataset(images, categories, video_names, source)


def parse_coco_annotations(entries: Any, dataset: CocoDataset, source: str, *, results: bool = False,
                           check_categories: bool = True, allow_polygons: bool = True) -> list[CocoAnnotation]:
    """Validate annotations (``results=False``, path ``annotations[i]``) or results
    (``results=True``: ``score`` required, path ``[i]``) against ``dataset``."""
    prefix = f"{source}: [" if results else f"{source}: annotations["
    if not isinstance(entries, list):
        raise FormatError(f"{source}: (top level)" if results else f"{source}: annotations",
                          f"{'results' if results else 'annotations'} must be a JSON list", type(entries).__name__)
    out: list[CocoAnnotation] = []
    for i, a in enumerate(entries):
        where = f"{prefix}{i}]"
        require_object(a, where, ("image_id", "segmentation") + (("score",) if results else ())
                       + (("category_id",) if check_categories else ()))
        iid = int_value(a["image_id"], at(where, "image_id"))
        if iid not in dataset.images:
            raise FormatError(where, f"image_id {iid} is not in the images list")
        img = dataset.images[iid]
        if check_categories:
            cid = int_value(a["category_id"], at(where, "category_id"))
            if cid not in dataset.categories:
                known = ", ".join(str(c) for c in sorted(dataset.categories)[:10])
                raise FormatError(where, f"unknown category_id {cid} (known ids: {known})")
        else:
            cid = int_value(a["category_id"], at(where, "category_id")) if "category_id" in a else -1
        seg = parse_segmentation(a["segmentation"], at(where, "segmentation"), size=img.size,
                                 size_of="the image", allow_polygons=allow_polygons)
        score = number_value(a["score"], at(where, "score")) if "score" in a else None
        bbox = None
        if a.get("bbox") is not None:
            bb = a["bbox"]
            if not (isinstance(bb, list) and len(bb) == 4 and all(is_number(v) for v in bb)):
                raise FormatError(at(where, "bbox"), "'bbox' must be [x, y, w, h] finite numbers", bb)
            if bb[2] < 0 or bb[3] < 0:
                raise FormatError(at(where, "bbox"), "'bbox' has a negative width or height", bb)
            if max(abs(float(v)) for v in bb) > 3 * MAX_SIDE:
                raise FormatError(at(where, "bbox"), f"'bbox' values must lie within ±{3 * MAX_SIDE} pixels", bb)
            bbox = (float(bb[0]), float(bb[1]), float(bb[2]), float(bb[3]))
        crowd = a.get("iscrowd", 0)
        if not (crowd in (0, 1) and (is_int(crowd) or isinstance(crowd, bool))):
            raise FormatError(at(where, "iscrowd"), "'iscrowd' must be 0 or 1", crowd)
        out.append(CocoAnnotation(i, iid, cid, seg, score, bbox, bool(crowd), a))
    return out


def write_coco_dataset(path: str | Path, data: Mapping[str, Any]) -> Path:
    """Write a COCO instances dict atomically as strict, compact JSON; returns the path."""
    from uvis.fsutil import atomic_write_json

    return atomic_write_json(path, data)


__all__ = ["CocoAnnotation", "CocoDataset", "CocoImage", "CocoVideo", "parse_coco_annotations", "parse_coco_dataset",
           "read_coco_dataset", "read_coco_results", "write_coco_dataset"]
