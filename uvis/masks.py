"""Binary masks as COCO run-length encodings (RLE).

All masks in UVIS Studio are stored as compressed COCO RLE dicts
``{"size": [H, W], "counts": str}`` (pycocotools, column-major, ``counts`` as an ASCII
string so it serialises to JSON). Dense masks exist only transiently for one frame.
These functions trust their input (masks UVIS made); masks read from files are
validated by :mod:`uvis.formats.rle` first.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
from pycocotools import mask as mask_utils

RLE = dict[str, Any]
AREA_CHUNK = 255  # see area()


def encode(mask: np.ndarray) -> RLE:
    """Encode one binary mask.

    Args:
        mask: (H, W) bool or {0,1} array.
    Returns:
        Compressed RLE with ``counts`` as ``str``.
    """
    if mask.ndim != 2:
        raise ValueError(f"mask must be 2-D (H, W), got shape {mask.shape}")
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    rle["counts"] = rle["counts"].decode("ascii")
    return rle


def encode_many(masks: np.ndarray) -> list[RLE]:
    """Encode a (N, H, W) stack of binary masks into N RLEs."""
    if masks.ndim != 3:
        raise ValueError(f"masks must be (N, H, W), got shape {masks.shape}")
    if len(masks) == 0:
        return []
    rles = mask_utils.encode(np.asfortranarray(masks.transpose(1, 2, 0).astype(np.uint8)))
    for r in rles:
        r["counts"] = r["counts"].decode("ascii")
    return list(rles)


def to_coco(rle: RLE) -> RLE:
    """The RLE in pycocotools' native form (``counts`` as bytes); accepted by every function here
    and cheaper to pass repeatedly than the JSON form (``counts`` as str)."""
    return _to_coco(rle)


def _to_coco(rle: RLE) -> RLE:
    """Masks made by UVIS (compressed, str or bytes counts) pass unchecked; anything else
    (uncompressed counts) is validated by :func:`uvis.formats.rle.parse_rle` first."""
    counts = rle["counts"]
    if isinstance(counts, str):
        return {"size": list(rle["size"]), "counts": counts.encode("ascii")}
    if isinstance(counts, bytes):
        return rle
    from uvis.formats.rle import native, parse_rle

    return native(parse_rle(rle, "mask"))


def decode(rle: RLE) -> np.ndarray:
    """Decode one RLE (compressed or uncompressed) to a (H, W) bool array."""
    return mask_utils.decode(_to_coco(rle)).astype(bool)


def area(rles: Sequence[RLE]) -> np.ndarray:
    """Pixel areas, (N,) int64."""
    if len(rles) == 0:
        return np.zeros(0, dtype=np.int64)
    coco = [_to_coco(r) for r in rles]
    # pycocotools' area() fails for more than 255 RLEs at once under numpy 2 (it sizes its
    # output with a uint8 array): call it in chunks.
    return np.concatenate([np.asarray(mask_utils.area(coco[i:i + AREA_CHUNK]), dtype=np.int64)
                           for i in range(0, len(coco), AREA_CHUNK)])


def to_bbox(rles: Sequence[RLE]) -> np.ndarray:
    """Tight boxes (N, 4) float32 xyxy pixels (x2/y2 exclusive edges)."""
    if len(rles) == 0:
        return np.zeros((0, 4), dtype=np.float32)
    xywh = np.asarray(mask_utils.toBbox([_to_coco(r) for r in rles]), dtype=np.float32).reshape(-1, 4)
    xywh[:, 2:] += xywh[:, :2]
    return xywh


def iou_matrix(a: Sequence[RLE], b: Sequence[RLE]) -> np.ndarray:
    """Mask IoU between every pair, (len(a), len(b)) float64. Sizes must agree."""
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)), dtype=np.float64)
    out = mask_utils.iou([_to_coco(r) for r in a], [_to_coco(r) for r in b], [0] * len(b))
    return np.asarray(out, dtype=np.float64).reshape(len(a), len(b))


def merge(rles: Sequence[RLE]) -> RLE:
    """Union of masks of equal size."""
    out = mask_utils.merge([_to_coco(r) for r in rles], intersect=False)
    out["counts"] = out["counts"].decode("ascii")
    return out


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Box IoU between (N,4) and (M,4) xyxy arrays -> (N, M) float64."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    wh = np.clip(rb - lt, 0, None)
    inter = wh[..., 0] * wh[..., 1]
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)
