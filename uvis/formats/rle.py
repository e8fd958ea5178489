"""COCO run-length encodings and polygons: validated before pycocotools sees them.

Forms accepted for one segmentation (``size`` is ``[H, W]``, pixels column-major):

* compressed RLE ``{"size": [H, W], "counts": "<ascii>"}`` (the UVIS form, kept
  byte-for-byte: round trips are bit-identical);
* uncompressed RLE ``{"size": [H, W], "counts": [run, run, ...]}`` (YouTube-VIS files);
* polygons ``[[x1, y1, x2, y2, ...], ...]`` (pixel coordinates; COCO ground truth),
  which need the image size.

Checks (each failure a :class:`~uvis.formats.base.FormatError` naming the JSON path):
``size`` two integers in ``[1, MAX_SIDE]`` (and equal to the image's, when known);
compressed counts decoded once, in numpy, with pycocotools' rules (characters
``'0'..'o'``, no run cut off, at most 6 characters per run, runs after the third
delta-coded) and every run non-negative with the runs summing to exactly H×W;
uncompressed counts non-negative integers summing to H×W; polygons of at least three
points, every coordinate a finite number within ``[-side, 2·side]`` of its axis (a
polygon with 1e300 made pycocotools crash the process). pycocotools is then used only
on checked data (uncompressed and polygon forms are converted to compressed RLE).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from uvis.formats.base import MAX_SIDE, FormatError, at, is_int, is_number

RLE = dict[str, Any]

#: Characters one run may take in compressed counts (see the module docstring).
MAX_RUN_CHARS = 6
_RLE_CHARS = bytes(range(48, 112))
#: Polygon coordinates may reach this many frame sides beyond each edge.
POLYGON_MARGIN = 1.0


def decode_counts(counts: bytes) -> np.ndarray:
    """Decode compressed COCO RLE counts to run lengths, (M,) int64.

    Raises:
        ValueError: with the reason, for characters outside ``'0'..'o'``, a run cut
            off at the end, a run longer than :data:`MAX_RUN_CHARS` characters.
    """
    if not counts:
        return np.zeros(0, np.int64)
    if counts.translate(None, _RLE_CHARS):  # a character outside '0'..'o' (C speed)
        pos = next(i for i, ch in enumerate(counts) if not 48 <= ch <= 111)
        raise ValueError(f"character {chr(counts[pos])!r} at position {pos} is not a compressed RLE character "
                         "('0'..'o')")
    c8 = np.frombuffer(counts, dtype=np.uint8)
    more = c8 >= 80  # bit 0x20 of (char - 48): the run continues
    c = c8.astype(np.int64) - 48
    if more[-1]:
        raise ValueError("the last run is cut off (truncated counts)")
    ends = np.flatnonzero(~more)
    starts = np.concatenate(([0], ends[:-1] + 1))
    lens = ends - starts + 1
    if lens.max() > MAX_RUN_CHARS:
        k = int(np.argmax(lens))
        raise ValueError(f"run {k} takes {int(lens[k])} characters (at most {MAX_RUN_CHARS} for masks up to "
                         f"{MAX_SIDE}x{MAX_SIDE})")
    k = np.arange(c.size, dtype=np.int64) - np.repeat(starts, lens)
    vals = np.add.reduceat((c & 0x1F) << (5 * k), starts)
    neg = (c[ends] & 0x10) != 0
    vals[neg] |= np.left_shift(np.int64(-1), 5 * lens[neg])
    if len(vals) > 3:  # runs 3, 4, ... are stored as differences to the run two before
        odd = vals[1::2].copy()
        vals[1::2] = np.cumsum(odd)
        even = vals[2::2].copy()
        vals[2::2] = np.cumsum(even)
    return vals


def _size(obj: Any, where: str, size: tuple[int, int] | None, size_of: str) -> tuple[int, int]:
    sz = obj.get("size")
    if not (isinstance(sz, list) and len(sz) == 2 and all(is_int(v) and 1 <= v <= MAX_SIDE for v in sz)):
        raise FormatError(at(where, "size"), f"RLE 'size' must be [height, width] integers in 1..{MAX_SIDE}", sz)
    h, w = int(sz[0]), int(sz[1])
    if size is not None and (h, w) != tuple(size):
        raise FormatError(where, f"RLE size [{h}, {w}] does not match {size_of} [height, width] = "
                                 f"[{size[0]}, {size[1]}]", remedy="masks must have the size of their frames")
    return h, w


def parse_rle(obj: Any, where: str, *, size: tuple[int, int] | None = None, size_of: str = "the video") -> RLE:
    """Validate one RLE dict; returns it compressed with ``str`` counts.

    Args:
        obj: the JSON value.
        where: "file: json.path" of the value, for messages.
        size: the (H, W) it must have, when known; ``size_of`` names whose size it is.
    """
    if not isinstance(obj, dict) or "counts" not in obj or "size" not in obj:
        raise FormatError(where, "an RLE must be an object with 'size' [height, width] and 'counts'", obj)
    h, w = _size(obj, where, size, size_of)
    counts = obj["counts"]
    if isinstance(counts, str):
        if not counts.isascii():
            raise FormatError(at(where, "counts"), "compressed RLE 'counts' must be ASCII", counts)
        try:
            runs = decode_counts(counts.encode("ascii"))
        except ValueError as exc:
            raise FormatError(at(where, "counts"), f"compressed RLE 'counts' is garbage: {exc}", counts,
                              remedy="write masks with pycocotools' mask.encode") from None
        _check_runs(runs, h, w, where, "compressed")
        return {"size": [h, w], "counts": counts}
    if isinstance(counts, list):
        if not all(is_int(v) and 0 <= v <= h * w for v in counts):
            bad = next(v for v in counts if not (is_int(v) and 0 <= v <= h * w))
            raise FormatError(at(where, "counts"), f"uncompressed RLE 'counts' must be non-negative integers "
                                                   f"summing to {h}*{w}", bad)
        runs = np.asarray(counts, dtype=np.int64)
        _check_runs(runs, h, w, where, "uncompressed")
        from pycocotools import mask as mask_utils

        native = mask_utils.frPyObjects({"size": [h, w], "counts": counts}, h, w)
        return {"size": [h, w], "counts": native["counts"].decode("ascii")}
    raise FormatError(at(where, "counts"), "RLE 'counts' must be a string (compressed) or a list of integers "
                                           "(uncompressed)", counts)


def _check_runs(runs: np.ndarray, h: int, w: int, where: str, kind: str) -> None:
    if len(runs) and int(runs.min()) < 0:
        raise FormatError(at(where, "counts"), f"{kind} RLE has a negative run ({int(runs.min())})",
                          remedy="the counts are corrupt")
    total = int(runs.sum()) if len(runs) else 0
    if total != h * w:
        raise FormatError(at(where, "counts"), f"{kind} RLE runs sum to {total} pixels but size {h}x{w} has "
                                               f"{h * w}", remedy="the counts or the size are wrong")


def parse_polygons(obj: Any, where: str, size: tuple[int, int] | None) -> RLE:
    """Validate COCO polygons and rasterise them at ``size`` = (H, W) into one compressed RLE."""
    if size is None:
        raise FormatError(where, "a polygon segmentation needs the frame size (height/width of the image or video "
                                 "in the JSON)")
    h, w = size
    if not obj or not all(isinstance(p, list) for p in obj):
        raise FormatError(where, "polygons must be a non-empty list of [x1, y1, x2, y2, ...] lists", obj)
    for k, poly in enumerate(obj):
        pw = at(where, k)
        if len(poly) < 6 or len(poly) % 2:
            raise FormatError(pw, "a polygon needs at least 3 (x, y) points: an even count >= 6 of numbers",
                              len(poly))
        if not all(is_number(v) for v in poly):
            bad = next(v for v in poly if not is_number(v))
            raise FormatError(pw, "polygon coordinates must be finite numbers", bad)
        xy = np.asarray(poly, dtype=np.float64).reshape(-1, 2)
        for axis, side, name in ((0, w, "x"), (1, h, "y")):
            lo, hi = -POLYGON_MARGIN * side, (1 + POLYGON_MARGIN) * side
            out = np.flatnonzero((xy[:, axis] < lo) | (xy[:, axis] > hi))
            if len(out):
                raise FormatError(pw, f"polygon {name} coordinates must lie within [{lo:g}, {hi:g}] for a "
                                      f"{w}x{h} frame", float(xy[out[0], axis]),
                                  remedy="coordinates are pixels of the frame")
    from pycocotools import mask as mask_utils

    native = mask_utils.merge(mask_utils.frPyObjects([[float(v) for v in p] for p in obj], h, w))
    return {"size": [h, w], "counts": native["counts"].decode("ascii")}


def parse_segmentation(obj: Any, where: str, *, size: tuple[int, int] | None = None, size_of: str = "the video",
                       allow_polygons: bool = True) -> RLE:
    """One segmentation (RLE object or, if allowed, polygons) -> compressed RLE, ``str`` counts."""
    if isinstance(obj, dict):
        return parse_rle(obj, where, size=size, size_of=size_of)
    if isinstance(obj, list):
        if not allow_polygons:
            raise FormatError(where, "results must use RLE segmentations, not polygons", obj)
        return parse_polygons(obj, where, size)
    raise FormatError(where, "a segmentation must be an RLE object or a polygon list", obj)


def native(rle: RLE) -> RLE:
    """A validated RLE in pycocotools' form (``bytes`` counts)."""
    counts = rle["counts"]
    return {"size": list(rle["size"]), "counts": counts.encode("ascii") if isinstance(counts, str) else counts}


def coerce_native(rle: Any, where: str = "mask") -> RLE:
    """An RLE given to a library function, in pycocotools' form (``bytes`` counts).

    ``bytes`` counts are pycocotools' own output (or this module's, via
    :func:`native`) and pass with a structure check; ``str`` and list counts are fully
    validated with :func:`parse_rle`.
    """
    if isinstance(rle, dict) and isinstance(rle.get("counts"), bytes):
        sz = rle.get("size")
        if not (isinstance(sz, (list, tuple)) and len(sz) == 2 and all(is_int(v) and 1 <= v <= MAX_SIDE
                                                                       for v in sz)):
            raise FormatError(where, f"RLE 'size' must be [height, width] integers in 1..{MAX_SIDE}", sz)
        return rle
    return native(parse_rle(rle, where))
