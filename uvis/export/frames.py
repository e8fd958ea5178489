"""Re-reading a labelled video's processed frames for export.

Exports show the frames exactly as the pipeline saw them (stride, ``max_frames`` and
``max_side`` applied), so the reading parameters are recovered from the cached
:class:`~uvis.types.VideoInfo` rather than from the current config (which may have
changed since the video was labelled), and the re-opened video must reproduce the
same processed frame indices and size.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterator

import cv2
import numpy as np

from uvis.errors import BadInputError
from uvis.fsutil import atomic_dir
from uvis.types import VideoInfo

JPEG_QUALITY = 95


def frame_file_name(video: str, t: int) -> str:
    """Relative file name of processed frame ``t`` (0-based): ``<video>/<t:05d>.jpg``."""
    return f"{video}/{t:05d}.jpg"


def reading_parameters(info: VideoInfo) -> tuple[int, int | None]:
    """(stride, max_side) that reproduce ``info``'s processed frames from its source."""
    idx = info.source_indices
    stride = int(idx[1] - idx[0]) if len(idx) >= 2 else 1
    if idx and idx[0] != 0:
        raise BadInputError(f"video {info.name}: processed frames do not start at source frame 0 "
                            f"(source_indices starts at {idx[0]}); cannot re-read its frames")
    downscaled = (info.width, info.height) != (info.source_width, info.source_height)
    return max(stride, 1), (max(info.width, info.height) if downscaled else None)


def iter_processed_frames(info: VideoInfo) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(t, rgb)`` for processed frames ``0 .. info.num_frames-1``.

    ``rgb`` is (H, W, 3) uint8 at ``info.height`` x ``info.width``.

    Raises:
        BadInputError: the source is missing, or no longer gives the same frames
            (different frame count, size or indices than when it was labelled).
    """
    from uvis.video import open_video

    src = Path(info.path)
    if not src.exists():
        raise BadInputError(f"video {info.name}: its source {src} no longer exists; frames cannot be exported "
                            "(restore the file or re-label the video from its new location)")
    stride, max_side = reading_parameters(info)
    with open_video(src, stride=stride, max_frames=info.num_frames, max_side=max_side, name=info.name) as reader:
        got = reader.info
        problems = []
        if got.num_frames != info.num_frames:
            problems.append(f"{got.num_frames} frames instead of {info.num_frames}")
        if (got.width, got.height) != (info.width, info.height):
            problems.append(f"size {got.width}x{got.height} instead of {info.width}x{info.height}")
        if info.source_indices and tuple(got.source_indices) != tuple(info.source_indices):
            problems.append("different source frame indices")
        if problems:
            raise BadInputError(f"video {info.name}: {src} changed since it was labelled "
                                f"({'; '.join(problems)}); re-label it before exporting")
        yield from reader.frames()


def write_jpeg(path: Path, rgb: np.ndarray) -> None:
    """Write an RGB uint8 frame as JPEG (quality 95)."""
    ok = cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        raise OSError(f"cannot write {path}")


def write_video_frames(info: VideoInfo, frames_dir: str | Path,
                       on_frame: Callable[[int, int], None] | None = None) -> Path:
    """Write every processed frame of a video as ``frames_dir/<video>/<t:05d>.jpg``.

    The video's folder is replaced as a whole and atomically (see
    :func:`uvis.fsutil.atomic_dir`). ``on_frame(done, total)`` reports progress.
    Returns the video's folder.
    """
    target = Path(frames_dir) / info.name
    src, dst = Path(info.path).resolve(), target.resolve()
    if src == dst or dst in src.parents or src in dst.parents:
        raise BadInputError(f"video {info.name}: exporting frames to {target} would overwrite its source "
                            f"{info.path}; choose another frames folder")
    with atomic_dir(target) as tmp:
        for t, rgb in iter_processed_frames(info):
            write_jpeg(tmp / f"{t:05d}.jpg", rgb)
            if on_frame is not None:
                on_frame(t + 1, info.num_frames)
    return target
