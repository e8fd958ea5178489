"""Instance crops of one frame, resized and normalised for an image encoder.

Geometry (the same for every embedder):

1. **Padding.** Each xyxy box grows by ``padding`` × its width on the left and on the
   right, and by ``padding`` × its height at the top and at the bottom (0.1 = 10 %
   context), then is clipped to the frame.
2. **Pixel window.** The padded box becomes the integer window
   ``[floor(x1), ceil(x2)) × [floor(y1), ceil(y2))``, at least 1 pixel wide and high
   and inside the frame, so degenerate or out-of-frame boxes still give a (tiny) crop.
3. **Grey background (optional).** Pixels of the window outside the instance mask are
   set to grey (128, 128, 128) at full resolution, before any resizing.
4. **Letterbox resize.** The window is resized, keeping its aspect ratio, so that it
   fits ``out_size`` exactly in its longer direction (``cv2.INTER_AREA`` when
   shrinking, ``cv2.INTER_CUBIC`` when enlarging) and is centred on a grey (128) canvas
   of ``out_size``. Unlike CLIP's own Resize + CenterCrop, nothing of the instance is
   cut away: a tall pedestrian keeps head and feet.
5. **Normalisation.** RGB values are scaled to [0, 1], then ``(x - mean) / std`` per
   channel with the model's own mean/std (from its preprocessing config).

Each crop is computed independently, so embedding crops in one batch or one at a time
gives the same input tensors.
"""
from __future__ import annotations

from typing import Callable, Sequence

import cv2
import numpy as np
import torch

from uvis import masks as mask_utils
from uvis.errors import BadInputError
from uvis.masks import RLE

GREY = 128


def _check_frame(frame: np.ndarray) -> None:
    if not isinstance(frame, np.ndarray) or frame.ndim != 3 or frame.shape[2] != 3:
        shape = getattr(frame, "shape", None)
        raise BadInputError(f"frame must be an RGB array of shape (H, W, 3), got shape {shape}")
    if frame.dtype != np.uint8:
        raise BadInputError(f"frame must be uint8 RGB, got dtype {frame.dtype}")
    if frame.shape[0] < 1 or frame.shape[1] < 1:
        raise BadInputError(f"frame is empty, shape {frame.shape}")


def as_boxes(boxes: np.ndarray) -> np.ndarray:
    """Validate boxes: (N, 4) finite xyxy, returned as float64 (an empty input gives (0, 4))."""
    boxes = np.asarray(boxes, dtype=np.float64)
    if boxes.size == 0:
        return boxes.reshape(0, 4)
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise BadInputError(f"boxes must have shape (N, 4) xyxy, got {boxes.shape}")
    if not np.isfinite(boxes).all():
        raise BadInputError("boxes contain NaN or infinite coordinates")
    return boxes


def _out_hw(out_size: int | tuple[int, int]) -> tuple[int, int]:
    if isinstance(out_size, (int, np.integer)):
        out_h = out_w = int(out_size)
    else:
        out_h, out_w = (int(v) for v in out_size)
    if out_h < 1 or out_w < 1:
        raise BadInputError(f"out_size must be positive, got {out_size!r}")
    return out_h, out_w


def crop_windows(boxes: np.ndarray, frame_hw: tuple[int, int], padding: float = 0.1) -> np.ndarray:
    """Integer pixel windows of padded, clipped boxes (steps 1–2 of the module doc).

    Args:
        boxes: (N, 4) xyxy pixels (float).
        frame_hw: (H, W) of the frame.
        padding: context per side as a fraction of the box width/height, >= 0.
    Returns:
        (N, 4) int64 ``x1, y1, x2, y2`` with exclusive x2/y2, ``0 <= x1 < x2 <= W`` and
        ``0 <= y1 < y2 <= H``.
    """
    if padding < 0:
        raise BadInputError(f"crop padding must be >= 0, got {padding}")
    boxes = as_boxes(boxes)
    height, width = int(frame_hw[0]), int(frame_hw[1])
    w = np.maximum(boxes[:, 2] - boxes[:, 0], 0.0)
    h = np.maximum(boxes[:, 3] - boxes[:, 1], 0.0)
    x1 = np.floor(np.clip(boxes[:, 0] - padding * w, 0, width))
    y1 = np.floor(np.clip(boxes[:, 1] - padding * h, 0, height))
    x2 = np.ceil(np.clip(boxes[:, 2] + padding * w, 0, width))
    y2 = np.ceil(np.clip(boxes[:, 3] + padding * h, 0, height))
    x1 = np.minimum(x1, width - 1)
    y1 = np.minimum(y1, height - 1)
    x2 = np.clip(x2, x1 + 1, width)
    y2 = np.clip(y2, y1 + 1, height)
    return np.stack([x1, y1, x2, y2], axis=1).astype(np.int64)


def _letterbox(patch: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    h, w = patch.shape[:2]
    scale = min(out_h / h, out_w / w)
    new_h = min(out_h, max(1, round(h * scale)))
    new_w = min(out_w, max(1, round(w * scale)))
    if (new_h, new_w) != (h, w):
        interp = cv2.INTER_AREA if scale < 1.0 else cv2.INTER_CUBIC
        patch = cv2.resize(patch, (new_w, new_h), interpolation=interp)
    canvas = np.full((out_h, out_w, 3), GREY, dtype=np.uint8)
    top, left = (out_h - new_h) // 2, (out_w - new_w) // 2
    canvas[top : top + new_h, left : left + new_w] = patch
    return canvas


def crop_images(
    frame: np.ndarray,
    boxes: np.ndarray,
    masks: Sequence[RLE] | None = None,
    *,
    padding: float = 0.1,
    grey_background: bool = False,
    out_size: int | tuple[int, int] = 224,
) -> np.ndarray:
    """Letterboxed uint8 crops (steps 1–4 of the module doc), e.g. for thumbnails.

    Args:
        frame: RGB uint8 (H, W, 3).
        boxes: (N, 4) xyxy pixels.
        masks: N RLEs at (H, W); required when ``grey_background`` (ignored otherwise).
        padding: context per side as a fraction of the box width/height (0.1 = 10 %).
        grey_background: set pixels outside the mask to grey 128 before resizing.
        out_size: S or (S_h, S_w) of every crop.
    Returns:
        (N, S_h, S_w, 3) uint8 RGB.
    """
    _check_frame(frame)
    out_h, out_w = _out_hw(out_size)
    windows = crop_windows(boxes, frame.shape[:2], padding)
    n = len(windows)
    if grey_background:
        if masks is None or len(masks) != n:
            got = "none" if masks is None else len(masks)
            raise BadInputError(f"grey_background needs one mask per box: {n} boxes, {got} masks")
        for i, rle in enumerate(masks):
            if tuple(rle["size"]) != frame.shape[:2]:
                raise BadInputError(
                    f"mask {i} has size {tuple(rle['size'])}, frame is {frame.shape[:2]} (H, W)"
                )
    out = np.empty((n, out_h, out_w, 3), dtype=np.uint8)
    for i, (x1, y1, x2, y2) in enumerate(windows):
        patch = frame[y1:y2, x1:x2]
        if grey_background:
            inside = mask_utils.decode(masks[i])[y1:y2, x1:x2]
            patch = np.where(inside[:, :, None], patch, np.uint8(GREY))
        out[i] = _letterbox(np.ascontiguousarray(patch), out_h, out_w)
    return out


def to_model_input(
    images: np.ndarray,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
) -> torch.Tensor:
    """(N, H, W, 3) uint8 RGB -> (N, 3, H, W) float32 tensor, ``(x / 255 - mean) / std``.

    Without mean/std the values are in [0, 1].
    """
    tensor = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float().div_(255.0)
    if mean is not None:
        tensor.sub_(torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1))
    if std is not None:
        tensor.div_(torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1))
    return tensor.contiguous()


def crop_boxes(
    frame: np.ndarray,
    boxes: np.ndarray,
    masks: Sequence[RLE] | None = None,
    *,
    padding: float = 0.1,
    grey_background: bool = False,
    out_size: int | tuple[int, int] = 224,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
) -> torch.Tensor:
    """Model-ready crops of the boxes of one frame (all steps of the module doc).

    Args:
        frame: RGB uint8 (H, W, 3).
        boxes: (N, 4) xyxy pixels (float); degenerate boxes give 1-pixel crops.
        masks: N RLEs at (H, W); required when ``grey_background``.
        padding: context per side as a fraction of the box width/height (0.1 = 10 %).
        grey_background: pixels outside the mask are grey 128 before resizing.
        out_size: the model's input size S or (S_h, S_w).
        mean, std: the model's per-channel normalisation (values for [0, 1] inputs);
            None leaves values in [0, 1].
    Returns:
        (N, 3, S_h, S_w) float32 tensor on the CPU.
    """
    images = crop_images(
        frame, boxes, masks, padding=padding, grey_background=grey_background, out_size=out_size
    )
    return to_model_input(images, mean, std)


def resolve_device(device: str | torch.device) -> torch.device:
    """A torch device, checked to be usable (``cpu``, ``cuda``, ``cuda:1``, ``mps``)."""
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise BadInputError(f"embedder device {device!r} is not a torch device ({exc})") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise BadInputError(f"embedder device {device!r} requested but CUDA is not available; use 'cpu'")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise BadInputError(f"embedder device {device!r} requested but MPS is not available; use 'cpu'")
    return dev


def embed_in_batches(
    encode: Callable[[torch.Tensor], torch.Tensor],
    frame: np.ndarray,
    boxes: np.ndarray,
    masks: Sequence[RLE] | None,
    *,
    dim: int,
    batch_size: int,
    device: torch.device,
    padding: float,
    grey_background: bool,
    out_size: int | tuple[int, int],
    mean: Sequence[float],
    std: Sequence[float],
) -> np.ndarray:
    """Crop and encode boxes, ``batch_size`` crops per forward pass, under inference mode.

    Args:
        encode: model-ready (B, 3, S_h, S_w) tensor on ``device`` -> (B, dim) features.
        frame, boxes, masks, padding, grey_background, out_size, mean, std: as
            :func:`crop_boxes`.
    Returns:
        (N, dim) float32, rows L2-normalised; (0, dim) when there are no boxes.
    """
    _check_frame(frame)
    boxes = as_boxes(boxes)
    n = len(boxes)
    if batch_size < 1:
        raise BadInputError(f"batch_size must be >= 1, got {batch_size}")
    if grey_background and (masks is None or len(masks) != n):
        got = "none" if masks is None else len(masks)
        raise BadInputError(f"grey_background needs one mask per box: {n} boxes, {got} masks")
    out = np.empty((n, dim), dtype=np.float32)
    with torch.inference_mode():
        for start in range(0, n, batch_size):
            stop = min(start + batch_size, n)
            batch = crop_boxes(
                frame,
                boxes[start:stop],
                list(masks[start:stop]) if grey_background and masks is not None else None,
                padding=padding,
                grey_background=grey_background,
                out_size=out_size,
                mean=mean,
                std=std,
            )
            feats = encode(batch.to(device)).float()
            out[start:stop] = torch.nn.functional.normalize(feats, dim=-1).cpu().numpy()
    return out
