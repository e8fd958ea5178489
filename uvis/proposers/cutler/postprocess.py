"""Input resizing and output post-processing (detectron2 semantics).

* :func:`resized_hw` / :func:`resize_shortest_edge`: ``ResizeShortestEdge`` at test time
  (PIL bilinear, sizes rounded as detectron2 rounds them).
* :func:`paste_masks`: ``paste_masks_in_image`` - 28x28 mask probabilities resampled into
  their boxes on the output canvas with ``grid_sample`` (align_corners=False) and
  thresholded (>= 0.5).
* :func:`detections_to_instances`: boxes scaled from input to output pixels, clipped,
  empty boxes dropped, masks pasted and RLE-encoded into :class:`uvis.types.Instances`.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from uvis.masks import RLE, encode_many
from uvis.types import Instances

PASTE_CHUNK = 16
"""Masks pasted and RLE-encoded at a time (bounds the dense (chunk, H, W) buffer)."""


def resized_hw(height: int, width: int, short_edge: int, max_size: int) -> tuple[int, int]:
    """Output (h, w) of detectron2 ``ResizeShortestEdge.get_output_shape``.

    The short side becomes ``short_edge`` unless the long side would then exceed
    ``max_size``, in which case the long side becomes ``max_size``; sizes are rounded
    half up (``int(x + 0.5)``).
    """
    size = float(short_edge)
    scale = size / min(height, width)
    if height < width:
        newh, neww = size, scale * width
    else:
        newh, neww = scale * height, size
    if max(newh, neww) > max_size:
        scale = max_size * 1.0 / max(newh, neww)
        newh, neww = newh * scale, neww * scale
    return int(newh + 0.5), int(neww + 0.5)


def resize_shortest_edge(image: np.ndarray, short_edge: int, max_size: int) -> np.ndarray:
    """Resize an RGB uint8 (H, W, 3) image as detectron2's test-time augmentation does.

    Returns the image itself when the size does not change.
    """
    from PIL import Image

    h, w = image.shape[:2]
    new_h, new_w = resized_hw(h, w, short_edge, max_size)
    if (new_h, new_w) == (h, w):
        return image
    pil = Image.fromarray(np.ascontiguousarray(image))
    return np.asarray(pil.resize((new_w, new_h), Image.Resampling.BILINEAR))


def _paste_one(probs: torch.Tensor, box: torch.Tensor, out_hw: tuple[int, int]) -> tuple[torch.Tensor, int, int]:
    """Paste one (M, M) probability map into the pixels its box touches.

    Returns (region probabilities (h, w), y0, x0): the region starts at (y0, x0) of the
    canvas and covers floor(box)-1 .. ceil(box)+1 clipped to the canvas (detectron2's
    ``skip_empty`` region; outside it every value is below 0.5).
    """
    img_h, img_w = out_hw
    x0_int = int(max(float(torch.floor(box[0])) - 1, 0))
    y0_int = int(max(float(torch.floor(box[1])) - 1, 0))
    x1_int = int(min(float(torch.ceil(box[2])) + 1, img_w))
    y1_int = int(min(float(torch.ceil(box[3])) + 1, img_h))
    x0, y0, x1, y1 = box[0], box[1], box[2], box[3]
    img_y = torch.arange(y0_int, y1_int, dtype=torch.float32, device=probs.device) + 0.5
    img_x = torch.arange(x0_int, x1_int, dtype=torch.float32, device=probs.device) + 0.5
    img_y = (img_y - y0) / (y1 - y0) * 2 - 1
    img_x = (img_x - x0) / (x1 - x0) * 2 - 1
    gx = img_x[None, :].expand(img_y.shape[0], img_x.shape[0])
    gy = img_y[:, None].expand(img_y.shape[0], img_x.shape[0])
    grid = torch.stack([gx, gy], dim=2)[None]
    region = F.grid_sample(probs[None, None].float(), grid, align_corners=False)[0, 0]
    return region, y0_int, x0_int


def paste_masks(
    mask_probs: torch.Tensor, boxes: torch.Tensor, out_hw: tuple[int, int], threshold: float = 0.5
) -> list[RLE]:
    """Binary masks on the output canvas as RLEs (detectron2 ``paste_masks_in_image``).

    Args:
        mask_probs: (N, 1, M, M) or (N, M, M) probabilities in [0, 1].
        boxes: (N, 4) float32 xyxy in output pixels.
        out_hw: (H, W) of the canvas.
        threshold: probability >= threshold is foreground.
    Returns:
        N COCO RLE dicts of size (H, W).
    """
    if mask_probs.dim() == 4:
        mask_probs = mask_probs[:, 0]
    n = mask_probs.shape[0]
    h, w = out_hw
    rles: list[RLE] = []
    for start in range(0, n, PASTE_CHUNK):
        stop = min(start + PASTE_CHUNK, n)
        # (H, W, n) in Fortran order: its (n, H, W) transpose encodes without a copy.
        buf = np.zeros((h, w, stop - start), dtype=np.uint8, order="F")
        for j, i in enumerate(range(start, stop)):
            region, y0, x0 = _paste_one(mask_probs[i], boxes[i], out_hw)
            if region.numel():
                rh, rw = region.shape
                buf[y0:y0 + rh, x0:x0 + rw, j] = (region >= threshold).cpu().numpy()
        rles.extend(encode_many(buf.transpose(2, 0, 1)))
    return rles


def detections_to_instances(
    boxes: torch.Tensor, scores: torch.Tensor, mask_probs: torch.Tensor, input_hw: tuple[int, int],
    output_hw: tuple[int, int], mask_threshold: float = 0.5,
) -> Instances:
    """detectron2 ``detector_postprocess`` into the project's core type.

    Args:
        boxes: (N, 4) float32 xyxy in input (resized image) pixels.
        scores: (N,) float32 objectness.
        mask_probs: (N, 1, 28, 28) mask probabilities.
        input_hw: (h, w) of the network input the boxes refer to (unpadded).
        output_hw: (H, W) of the returned boxes and masks.
    Returns:
        :class:`Instances` with boxes (N', 4) float32 xyxy output pixels, RLE masks at
        ``output_hw``, objectness = scores; N' <= N after dropping boxes that are empty
        once scaled and clipped.
    """
    out_h, out_w = int(output_hw[0]), int(output_hw[1])
    scale_x = out_w / input_hw[1]
    scale_y = out_h / input_hw[0]
    b = boxes.detach().float().cpu().clone()
    b[:, 0::2] *= scale_x
    b[:, 1::2] *= scale_y
    b[:, 0::2] = b[:, 0::2].clamp(min=0, max=out_w)
    b[:, 1::2] = b[:, 1::2].clamp(min=0, max=out_h)
    keep = ((b[:, 2] - b[:, 0]) > 0) & ((b[:, 3] - b[:, 1]) > 0)
    b = b[keep]
    s = scores.detach().float().cpu()[keep]
    probs = mask_probs.detach().float().cpu()[keep]
    if b.shape[0] == 0:
        return Instances.empty((out_h, out_w))
    masks = paste_masks(probs, b, (out_h, out_w), mask_threshold)
    return Instances(boxes=b.numpy(), masks=masks, objectness=s.numpy(), image_size=(out_h, out_w))
