"""RLE helpers shared by the evaluators (private).

Evaluation works on pycocotools' own RLE form ``{"size": [H, W], "counts": bytes}`` so
that masks are parsed once. Inputs may be compressed RLE with ``str`` counts (the UVIS
convention, :mod:`uvis.masks`), compressed with ``bytes`` counts, or uncompressed RLE
(``counts`` a list of run lengths, as in the YouTube-VIS annotation files).
"""
from __future__ import annotations

from typing import Any

from pycocotools import mask as mask_utils

from uvis.masks import RLE


def to_coco(rle: RLE) -> RLE:
    """One RLE in pycocotools' compressed form (``bytes`` counts). Raises ``ValueError``
    with the reason when the dict is not an RLE."""
    try:
        counts, size = rle["counts"], rle["size"]
        h, w = size
    except (TypeError, KeyError, ValueError):
        raise ValueError("an RLE must be a mapping with 'size' [H, W] and 'counts'") from None
    if type(h) is not int or type(w) is not int or h < 0 or w < 0:
        if not (_is_int(h) and _is_int(w) and h >= 0 and w >= 0):
            raise ValueError(f"RLE 'size' must be [H, W] non-negative integers, got {size!r}")
        h, w = int(h), int(w)
    if type(counts) is str:
        return {"size": [h, w], "counts": counts.encode("ascii")}
    if type(counts) is bytes:
        return {"size": [h, w], "counts": counts}
    if isinstance(counts, list):
        if not all(_is_int(c) and c >= 0 for c in counts):
            raise ValueError("uncompressed RLE 'counts' must be non-negative integers")
        if sum(counts) != h * w:
            raise ValueError(f"uncompressed RLE 'counts' sum to {sum(counts)} but size {h}x{w} has {h * w} pixels")
        return mask_utils.frPyObjects({"size": [h, w], "counts": counts}, h, w)
    if isinstance(counts, (str, bytes)):
        return {"size": [h, w], "counts": counts if isinstance(counts, bytes) else counts.encode("ascii")}
    raise ValueError(f"RLE 'counts' must be a string or a list of integers, got {type(counts).__name__}")


def polygons_to_coco(polygons: list[list[float]], height: int, width: int) -> RLE:
    """COCO polygons (list of flat [x1, y1, x2, y2, ...] lists) -> one compressed RLE."""
    if not polygons or not all(isinstance(p, list) and len(p) >= 6 and len(p) % 2 == 0 for p in polygons):
        raise ValueError("a polygon segmentation must be a list of [x1, y1, x2, y2, ...] lists of >= 3 points")
    return mask_utils.merge(mask_utils.frPyObjects(polygons, height, width))


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)
