"""Frame and video inference of :class:`~uvis.vis.model.MinVIS` (test-time resize, windows, tracking).

Frames are uint8 RGB (H, W, 3) arrays. Test-time resize is detectron2's
``ResizeShortestEdge(short, max_size)``: scale = short / min(H, W), capped so the longer side
is at most ``max_size``; new size ``int(x * scale + 0.5)``; PIL bilinear on uint8. Then
normalisation ((x - mean) / std, RGB on 0..255) and zero padding bottom/right to a multiple of
32. Video frames go through the network ``cfg.window`` at a time and every frame's outputs are
folded into a :class:`~uvis.vis.tracking.VideoTracker` right away, so memory does not grow with
the video (except for the per-frame RLEs of the Q tracks).
"""
from __future__ import annotations

from contextlib import nullcontext
from typing import TYPE_CHECKING, Any, Callable, Iterable, Sequence

import numpy as np
import torch
from PIL import Image

from uvis.errors import BadInputError
from uvis.vis.tracking import VideoTracker

if TYPE_CHECKING:
    from uvis.vis.model import MinVIS


def resized_hw(h: int, w: int, short: int, max_size: int) -> tuple[int, int]:
    """detectron2 ``ResizeShortestEdge.get_output_shape``: (new_h, new_w)."""
    scale = short * 1.0 / min(h, w)
    newh, neww = (short, scale * w) if h < w else (scale * h, short)
    if max(newh, neww) > max_size:
        factor = max_size * 1.0 / max(newh, neww)
        newh, neww = newh * factor, neww * factor
    return int(newh + 0.5), int(neww + 0.5)


def resize_frame(frame: np.ndarray, short: int, max_size: int) -> np.ndarray:
    """uint8 RGB (H, W, 3) -> resized uint8 RGB (PIL bilinear, as detectron2 for uint8 images)."""
    h, w = frame.shape[:2]
    nh, nw = resized_hw(h, w, short, max_size)
    if (nh, nw) == (h, w):
        return frame
    return np.asarray(Image.fromarray(frame).resize((nw, nh), Image.BILINEAR))


def check_frame(frame: Any, where: str = "frame") -> np.ndarray:
    """Validate one uint8 RGB (H, W, 3) frame."""
    if not isinstance(frame, np.ndarray) or frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
        desc = f"{type(frame).__name__} {getattr(frame, 'shape', '')} {getattr(frame, 'dtype', '')}".strip()
        raise BadInputError(f"{where} must be a uint8 RGB array of shape (H, W, 3), got {desc}")
    if frame.shape[0] < 32 or frame.shape[1] < 32:
        raise BadInputError(f"{where} is {frame.shape[1]}x{frame.shape[0]}: at least 32x32 pixels are needed")
    return frame


def preprocess_frames(frames: Sequence[np.ndarray], mean: torch.Tensor, std: torch.Tensor,
                      divisibility: int = 32) -> tuple[torch.Tensor, list[tuple[int, int]]]:
    """Normalise uint8 RGB frames then zero-pad to a common size divisible by ``divisibility``.

    Returns:
        (B, 3, Hp, Wp) float32 on ``mean``'s device, and each frame's (H, W).
    """
    if not frames:
        raise BadInputError("no frames to preprocess")
    sizes = [(int(f.shape[0]), int(f.shape[1])) for f in frames]
    hp = -(-max(h for h, _ in sizes) // divisibility) * divisibility
    wp = -(-max(w for _, w in sizes) // divisibility) * divisibility
    batch = torch.zeros((len(frames), 3, hp, wp), dtype=torch.float32, device=mean.device)
    for i, f in enumerate(frames):
        x = torch.from_numpy(np.require(f, requirements=["C", "W"])).to(mean.device).permute(2, 0, 1).float()
        batch[i, :, : sizes[i][0], : sizes[i][1]] = (x - mean) / std
    return batch, sizes


def _autocast(model: "MinVIS", amp: bool | None):
    use = model.device.type == "cuda" if amp is None else amp
    return torch.autocast(device_type=model.device.type, dtype=torch.float16) if use else nullcontext()


def frame_outputs(model: "MinVIS", image: np.ndarray, *, resize: bool = True) -> dict[str, Any]:
    """See :meth:`MinVIS.frame_outputs`."""
    frame = check_frame(image)
    if resize:
        frame = resize_frame(frame, model.cfg.test_short_side, model.cfg.max_size)
    batch, sizes = model.preprocess([frame])
    out = model(batch)
    return {"pred_logits": out["pred_logits"][0], "pred_masks": out["pred_masks"][0],
            "pred_embds": out["pred_embds"][0], "image_size": sizes[0],
            "padded_size": (int(batch.shape[2]), int(batch.shape[3]))}


def _windows(frames: Iterable[np.ndarray], size: int) -> Iterable[list[np.ndarray]]:
    window: list[np.ndarray] = []
    for f in frames:
        window.append(f)
        if len(window) == size:
            yield window
            window = []
    if window:
        yield window


def predict_video(model: "MinVIS", frames: Iterable[np.ndarray], *, output_hw: tuple[int, int] | None = None,
                  resize: bool = True, top_k: int = 10, tracking: str = "minvis",
                  memory_lambda: float | None = None, amp: bool | None = None,
                  progress: Callable[[int], None] | None = None) -> list[dict[str, Any]]:
    """Top-k video-level predictions of one video.

    Args:
        frames: uint8 RGB (H, W, 3) frames of one video, all the same size (any iterable,
            consumed ``cfg.window`` frames at a time).
        output_hw: (H, W) of the returned masks; default the frames' own size.
        resize: apply the test-time resize (``cfg.test_short_side``); False feeds frames as given.
        top_k: (query, class) pairs returned.
        tracking: ``"minvis"`` (chain matching, the reference) or ``"memory"`` (tracking memory).
        memory_lambda: lambda of ``"memory"``; default the pseudo-label tracker's config (0.7).
        amp: float16 autocast (default: on for CUDA); the pixel decoder stays float32.
        progress: called with the number of frames done after each window.
    Returns:
        predictions, best first: {``score``, ``label`` (0-based class), ``query``, ``masks``
        (one COCO RLE per frame, or None where empty, at ``output_hw``)}.
    Raises:
        BadInputError: no frames, a frame that is not uint8 RGB, or frames of different sizes.
    """
    if memory_lambda is None:
        from uvis.config import TrackerConfig

        memory_lambda = TrackerConfig().memory_lambda
    tracker: VideoTracker | None = None
    first_hw: tuple[int, int] | None = None
    done = 0
    model.eval()
    for window in _windows(frames, model.cfg.window):
        batch_frames = []
        for k, f in enumerate(window):
            check_frame(f, f"frame {done + k}")
            hw = (int(f.shape[0]), int(f.shape[1]))
            if first_hw is None:
                first_hw = hw
                tracker = VideoTracker(output_hw=tuple(output_hw) if output_hw else hw, top_k=top_k,
                                       tracking=tracking, memory_lambda=float(memory_lambda))
            elif hw != first_hw:
                raise BadInputError(f"frame {done + k} is {hw[1]}x{hw[0]} but frame 0 is {first_hw[1]}x{first_hw[0]}")
            batch_frames.append(resize_frame(f, model.cfg.test_short_side, model.cfg.max_size) if resize else f)
        batch, sizes = model.preprocess(batch_frames)
        with torch.no_grad(), _autocast(model, amp):
            out = model(batch)
        assert tracker is not None
        padded = (int(batch.shape[2]), int(batch.shape[3]))
        for i in range(len(window)):
            tracker.add(out["pred_logits"][i], out["pred_masks"][i], out["pred_embds"][i], padded, sizes[i])
        done += len(window)
        if progress is not None:
            progress(done)
    if tracker is None:
        raise BadInputError("the video has no frames")
    return tracker.finish()
