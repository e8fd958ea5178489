"""Video input: video files (OpenCV/FFmpeg) and YouTube-VIS frame folders.

:func:`open_video` validates the input up front and returns a :class:`VideoReader`
whose :attr:`VideoReader.info` describes the *processed* video (after frame stride,
``max_frames`` and downscaling) and whose :meth:`VideoReader.frames` yields RGB uint8
(H, W, 3) frames with 0-based processed indices.

Inputs:
    * files ``.mp4 .avi .webm .mkv .mov`` (any case), decoded by OpenCV's FFmpeg backend
      only (``cv2.CAP_FFMPEG``; no fall-back to other backends, so a path is never
      taken for a camera index or an image-sequence pattern);
    * folders of ``.jpg .jpeg .png`` frames (YouTube-VIS ``JPEGImages/<video>/``),
      sorted naturally (``2.jpg`` before ``10.jpg``); other files in the folder are
      ignored, sub-folders too. Folder fps is ``fps`` (default 30).

Frame count (files): ``CAP_PROP_FRAME_COUNT`` is read from the container and is an
estimate for some formats (mkv/webm: duration x fps) and wrong for damaged files, so
:func:`open_video` counts the frames by *grabbing* them once (demux + decode, no colour
conversion: ~0.4 ms per 384x288 frame, ~2-4 ms per 1280x720 H.264 frame). Counting
stops as soon as the frames needed for ``stride``/``max_frames`` are found, so a
``max_frames`` cap on a long video costs only what it reads. Counting a full
10-minute 720p video costs a decode pass (tens of seconds); this is accepted for
correctness (caches and resume depend on the exact count).

Damaged files (the policy):
    * no decodable frame at all (empty, cut header, not a video): :class:`BadInputError`
      at open;
    * fewer frames decode than the container declares (more than ``max(2, 2 %)``
      frames short: a truncated download or corrupt data): :class:`BadInputError`
      at open, naming both counts; ``allow_truncated=True`` instead keeps the
      decodable frames (``num_frames`` = the decodable count, recorded in
      :attr:`VideoReader.warnings`);
    * decoding stops while iterating before ``num_frames`` (the file changed on disk
      after it was opened, or the decoder became inconsistent): iteration raises
      :class:`BadInputError` naming the frame; ``info`` is never silently changed
      after open, because caches were sized from it.

Size limits: a source frame side above :data:`MAX_SIDE_NATIVE` (8192) needs
``max_side`` (frames are downscaled on read); a side above :data:`MAX_SIDE_ABSOLUTE`
(16384, e.g. 20000x20000) is refused outright. Frame-folder images must all have the
size of the first one; sizes are read from the image headers at open.
"""
from __future__ import annotations

import hashlib
import logging
import re
import struct
from pathlib import Path
from types import TracebackType
from typing import Iterable, Iterator, Sequence

import cv2
import numpy as np

from uvis.errors import BadInputError
from uvis.types import VideoInfo

log = logging.getLogger(__name__)

VIDEO_EXTENSIONS: tuple[str, ...] = (".mp4", ".avi", ".webm", ".mkv", ".mov")
IMAGE_EXTENSIONS: tuple[str, ...] = (".jpg", ".jpeg", ".png")
MAX_SIDE_NATIVE = 8192
MAX_SIDE_ABSOLUTE = 16384
DEFAULT_FOLDER_FPS = 30.0
# Sequential grabbing is used instead of a seek for forward jumps up to this many frames.
_SEEK_GRAB_LIMIT = 32


def natural_key(name: str) -> tuple:
    """Sort key that orders embedded numbers numerically: ``f2.jpg`` < ``f10.jpg``."""
    return tuple((0, int(p), "") if p.isdigit() else (1, 0, p.lower()) for p in re.split(r"(\d+)", name) if p)


def is_video_file(path: str | Path) -> bool:
    """True if ``path`` has a supported video extension (the file is not opened)."""
    return Path(path).suffix.lower() in VIDEO_EXTENSIONS


def list_frame_files(folder: str | Path) -> list[Path]:
    """The JPEG/PNG files directly inside ``folder``, naturally sorted (no validation)."""
    folder = Path(folder)
    files = [p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
             and not p.name.startswith(".")]
    return sorted(files, key=lambda p: natural_key(p.name))


def find_videos(paths: Iterable[str | Path]) -> list[Path]:
    """Expand command-line inputs into videos: files and frame folders.

    A video file is taken as is. A folder holding JPEG/PNG frames is one video (a
    YouTube-VIS frame folder). Any other folder is searched one level deep: its video
    files and its sub-folders that hold frames (e.g. YouTube-VIS ``JPEGImages/``).

    Raises:
        BadInputError: a path does not exist, or a folder holds no video.
    """
    out: list[Path] = []
    for raw in paths:
        p = Path(raw).expanduser()
        _check_input_path(p)
        if p.is_file():
            out.append(p)
            continue
        if list_frame_files(p):
            out.append(p)
            continue
        found = []
        for child in sorted(p.iterdir(), key=lambda c: natural_key(c.name)):
            if child.is_file() and is_video_file(child):
                found.append(child)
            elif child.is_dir() and list_frame_files(child):
                found.append(child)
        if not found:
            raise BadInputError(
                f"{p}: folder holds no video: no {'/'.join(IMAGE_EXTENSIONS)} frames and no "
                f"{'/'.join(VIDEO_EXTENSIONS)} files or frame sub-folders"
            )
        out.extend(found)
    return out


def _check_input_path(p: Path) -> None:
    """Refuse a missing path, a name too long for the file system, and anything that is
    neither a regular file nor a folder (``/dev/null``, a FIFO, a socket)."""
    shown = str(p) if len(str(p)) <= 200 else f"{str(p)[:100]}...{str(p)[-60:]} ({len(str(p))} characters)"
    try:
        exists = p.exists()
        kind_ok = p.is_file() or p.is_dir()
    except OSError as exc:  # ENAMETOOLONG, ELOOP, EACCES on a parent
        raise BadInputError(f"{shown}: cannot be read ({exc.strerror or exc})") from exc
    if not exists:
        raise BadInputError(f"{shown}: no such file or folder")
    if not kind_ok:
        raise BadInputError(f"{shown}: not a video file or a folder of frames (a device, FIFO or socket)")


_FINGERPRINT_CHUNK = 1 << 18  # bytes read at the start, the middle and the end of a file


def _sample_file(digest: "hashlib._Hash", path: Path, size: int) -> None:
    with open(path, "rb") as fh:
        for offset in sorted({0, max(0, size // 2 - _FINGERPRINT_CHUNK // 2), max(0, size - _FINGERPRINT_CHUNK)}):
            fh.seek(offset)
            digest.update(fh.read(_FINGERPRINT_CHUNK))


def source_fingerprint(path: str | Path) -> tuple[int, str]:
    """``(size, fingerprint)`` identifying a video's content, cheaply (nothing is decoded).

    A file: its size in bytes and a SHA-1 of 256 KiB at its start, middle and end. A
    frame folder: the total size of its frames and a SHA-1 of their names and sizes and
    of the first, middle and last frame files' samples. Two sources with the same
    fingerprint are taken to be the same video (a copy or a move); a re-encoded or
    edited file is another video.

    Raises:
        BadInputError: the path is missing or unreadable.
    """
    p = Path(path).expanduser()
    _check_input_path(p)
    digest = hashlib.sha1()
    try:
        if p.is_dir():
            files = list_frame_files(p)
            sizes = [f.stat().st_size for f in files]
            digest.update(repr([(f.name, n) for f, n in zip(files, sizes)]).encode())
            for i in sorted({0, len(files) // 2, len(files) - 1} if files else set()):
                _sample_file(digest, files[i], sizes[i])
            return sum(sizes), digest.hexdigest()
        size = p.stat().st_size
        _sample_file(digest, p, size)
        return size, digest.hexdigest()
    except OSError as exc:
        raise BadInputError(f"{p}: cannot be read ({exc.strerror or exc})") from exc


def _target_size(width: int, height: int, max_side: int | None) -> tuple[int, int]:
    """Processed (width, height): longer side <= max_side, aspect kept, at least 1 pixel."""
    if max_side is None or max(width, height) <= max_side:
        return width, height
    scale = max_side / max(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def _check_size(path: Path, width: int, height: int, max_side: int | None, what: str) -> None:
    if width <= 0 or height <= 0:
        raise BadInputError(f"{path}: {what} has an invalid size {width}x{height}")
    if max(width, height) > MAX_SIDE_ABSOLUTE:
        raise BadInputError(
            f"{path}: {what} is {width}x{height} pixels, absurdly large (the limit is "
            f"{MAX_SIDE_ABSOLUTE} pixels per side); downscale it first, e.g. with ffmpeg -vf scale=1280:-2"
        )
    if max(width, height) > MAX_SIDE_NATIVE and (max_side is None or max_side > MAX_SIDE_NATIVE):
        raise BadInputError(
            f"{path}: {what} is {width}x{height} pixels, larger than {MAX_SIDE_NATIVE} on a side; "
            f"set a max_side (video.max_side, e.g. 1280) to downscale frames on read"
        )


def _check_args(stride: int, max_frames: int | None, max_side: int | None, fps: float | None) -> None:
    if not isinstance(stride, (int, np.integer)) or stride < 1:
        raise BadInputError(f"stride must be an integer >= 1, got {stride!r}")
    if max_frames is not None and (not isinstance(max_frames, (int, np.integer)) or max_frames < 1):
        raise BadInputError(f"max_frames must be an integer >= 1 or None, got {max_frames!r}")
    if max_side is not None and (not isinstance(max_side, (int, np.integer)) or max_side < 1):
        raise BadInputError(f"max_side must be an integer >= 1 or None, got {max_side!r}")
    if fps is not None and not (np.isfinite(fps) and fps > 0):
        raise BadInputError(f"fps must be a positive number, got {fps!r}")


def _needed_source_frames(stride: int, max_frames: int | None) -> int | None:
    """How many source frames must exist to serve max_frames at this stride (None: all)."""
    return None if max_frames is None else (max_frames - 1) * stride + 1


class VideoReader:
    """Reads the processed frames of one video; create it with :func:`open_video`.

    Attributes:
        info: :class:`~uvis.types.VideoInfo` of the processed video (``fps`` is the
            processed frame rate, source fps / stride).
        source_fps: frame rate of the source (folders: the ``fps`` given, default 30).
        warnings: problems tolerated at open (e.g. truncation with ``allow_truncated``).

    Use as a context manager or call :meth:`close`.
    """

    def __init__(self, info: VideoInfo, *, source_fps: float, files: Sequence[Path] | None,
                 warnings: Sequence[str] = ()) -> None:
        self.info = info
        self.source_fps = source_fps
        self.warnings = list(warnings)
        self._files = None if files is None else list(files)
        self._cap: cv2.VideoCapture | None = None
        self._cap_pos = 0  # source index of the frame the capture returns next

    # ---- public API -------------------------------------------------------------------
    def frames(self, start: int = 0) -> Iterator[tuple[int, np.ndarray]]:
        """Yield ``(t, frame)`` for processed frames ``start .. num_frames-1``.

        ``frame`` is RGB uint8 (H, W, 3) at ``info.height`` x ``info.width``.

        Raises:
            BadInputError: a frame cannot be decoded (see the module's damage policy).
        """
        n = self.info.num_frames
        if not 0 <= start <= n:
            raise IndexError(f"start frame {start} outside 0..{n} of {self.info.path}")
        for t in range(start, n):
            yield t, self.read(t)

    def read(self, t: int) -> np.ndarray:
        """Processed frame ``t`` (0-based) as RGB uint8 (H, W, 3). Random access works
        (files seek, or grab forward for short jumps); sequential access is fastest."""
        n = self.info.num_frames
        if not 0 <= t < n:
            raise IndexError(f"frame {t} outside 0..{n - 1} of {self.info.path}")
        src = self.info.source_indices[t]
        bgr = self._read_file_frame(src) if self._files is None else self._read_image(self._files[src])
        return self._postprocess(bgr, t)

    def __len__(self) -> int:
        return self.info.num_frames

    def close(self) -> None:
        """Release the decoder (idempotent)."""
        if self._cap is not None:
            self._cap.release()
            self._cap = None

    def __enter__(self) -> "VideoReader":
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def __del__(self) -> None:  # pragma: no cover - best effort
        try:
            self.close()
        except Exception:
            pass

    # ---- internals --------------------------------------------------------------------
    def _postprocess(self, bgr: np.ndarray, t: int) -> np.ndarray:
        info = self.info
        h, w = bgr.shape[:2]
        if (w, h) != (info.source_width, info.source_height):
            raise BadInputError(
                f"{info.path}: frame {t} (source frame {info.source_indices[t]}) is {w}x{h}, "
                f"but the video is {info.source_width}x{info.source_height}"
            )
        if (w, h) != (info.width, info.height):
            bgr = cv2.resize(bgr, (info.width, info.height), interpolation=cv2.INTER_AREA)
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)

    def _read_image(self, path: Path) -> np.ndarray:
        img = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if img is None:
            raise BadInputError(f"{path}: cannot decode the image (corrupt, truncated or not a JPEG/PNG)")
        return img

    def _read_file_frame(self, src: int) -> np.ndarray:
        path = self.info.path
        if self._cap is None:
            self._cap = _open_capture(Path(path))
            self._cap_pos = 0
        if src < self._cap_pos or src - self._cap_pos > _SEEK_GRAB_LIMIT:
            self._cap.set(cv2.CAP_PROP_POS_FRAMES, src)
            self._cap_pos = src
        while self._cap_pos < src:
            if not self._cap.grab():
                break
            self._cap_pos += 1
        ok, frame = (False, None) if self._cap_pos != src else self._cap.read()
        if not ok or frame is None:
            self.close()
            raise BadInputError(
                f"{path}: decoding stopped at source frame {src}, but {self._source_count_hint()} frames "
                "were counted when the video was opened (the file changed on disk or is damaged)"
            )
        self._cap_pos = src + 1
        return frame

    def _source_count_hint(self) -> int:
        return self.info.source_indices[-1] + 1 if self.info.source_indices else 0


def _open_capture(path: Path) -> cv2.VideoCapture:
    cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    if not cap.isOpened():
        cap.release()
        raise BadInputError(
            f"{path}: cannot be opened as a video (not a video file, a damaged header, or a codec "
            "OpenCV's FFmpeg cannot decode)"
        )
    return cap


def open_video(path: str | Path, *, stride: int = 1, max_frames: int | None = None,
               max_side: int | None = None, name: str | None = None, fps: float | None = None,
               allow_truncated: bool = False) -> VideoReader:
    """Open and validate a video file or a frame folder.

    Args:
        path: a ``.mp4/.avi/.webm/.mkv/.mov`` file or a folder of JPEG/PNG frames.
        stride: keep every ``stride``-th source frame (>= 1).
        max_frames: cap on the processed frame count (None: all).
        max_side: downscale so the longer side is <= ``max_side`` pixels (aspect kept,
            INTER_AREA; None: source size). Required for sources above 8192 on a side.
        name: video name for ``info.name`` (default: file stem / folder name).
        fps: frame rate of a frame folder (default 30); for a file it overrides the
            container's rate (use when the container's rate is wrong).
        allow_truncated: keep the decodable frames of a truncated file instead of
            raising (see the module docstring).

    Returns:
        A :class:`VideoReader`; ``reader.info.num_frames >= 1``.

    Raises:
        BadInputError: missing path, unsupported extension, not a video, empty,
            truncated or corrupt, absurd size, empty folder, mixed frame sizes.
    """
    _check_args(stride, max_frames, max_side, fps)
    p = Path(path).expanduser()
    _check_input_path(p)
    if p.is_dir():
        return _open_folder(p, stride, max_frames, max_side, name, fps)
    if p.suffix.lower() not in VIDEO_EXTENSIONS:
        raise BadInputError(
            f"{p}: unsupported file type '{p.suffix or '(none)'}'; expected a video "
            f"({', '.join(VIDEO_EXTENSIONS)}) or a folder of {'/'.join(IMAGE_EXTENSIONS)} frames"
        )
    return _open_file(p, stride, max_frames, max_side, name, fps, allow_truncated)


def _open_file(p: Path, stride: int, max_frames: int | None, max_side: int | None, name: str | None,
               fps: float | None, allow_truncated: bool) -> VideoReader:
    if p.stat().st_size == 0:
        raise BadInputError(f"{p}: the file is empty (0 bytes)")
    cap = _open_capture(p)
    try:
        declared = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        header_w = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH) or 0)
        header_h = int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT) or 0)
        if header_w > 0 and header_h > 0:  # refuse absurd sizes before decoding a frame
            _check_size(p, header_w, header_h, max_side, "the video")
        ok, first = cap.read()
        if not ok or first is None:
            raise BadInputError(
                f"{p}: no frame can be decoded (the file is empty, truncated or corrupt; the container "
                f"declares {declared} frames)"
            )
        src_h, src_w = first.shape[:2]  # decoded size wins (rotation metadata, odd headers)
        _check_size(p, src_w, src_h, max_side, "the video")
        needed = _needed_source_frames(stride, max_frames)
        count = 1
        while (needed is None or count < needed) and cap.grab():
            count += 1
        reached_end = needed is None or count < needed
        source_fps = float(fps) if fps is not None else float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
    finally:
        cap.release()
    warnings: list[str] = []
    if reached_end and declared > 0 and count < declared - max(2, int(0.02 * declared)):
        msg = (f"{p}: the file is truncated or corrupt: the container declares {declared} frames but only "
               f"{count} can be decoded (decoding stops after source frame {count - 1})")
        if not allow_truncated:
            raise BadInputError(msg + "; re-encode or re-download it, or allow truncated input to use "
                                      f"the {count} decodable frames")
        warnings.append(msg)
        log.warning(msg)
    if not (np.isfinite(source_fps) and source_fps > 0):
        warnings.append(f"{p}: the container has no valid frame rate; assuming {DEFAULT_FOLDER_FPS:g} fps")
        source_fps = DEFAULT_FOLDER_FPS
    indices = tuple(range(0, count, stride))[: max_frames]
    width, height = _target_size(src_w, src_h, max_side)
    info = VideoInfo(
        name=name or p.stem, path=str(p), width=width, height=height, num_frames=len(indices),
        fps=source_fps / stride, source_width=src_w, source_height=src_h, source_indices=indices,
    )
    return VideoReader(info, source_fps=source_fps, files=None, warnings=warnings)


def _open_folder(p: Path, stride: int, max_frames: int | None, max_side: int | None, name: str | None,
                 fps: float | None) -> VideoReader:
    files = list_frame_files(p)
    if not files:
        others = [c.name for c in p.iterdir() if not c.name.startswith(".")]
        if not others:
            raise BadInputError(f"{p}: the frame folder is empty")
        shown = ", ".join(sorted(others)[:5]) + (", ..." if len(others) > 5 else "")
        raise BadInputError(
            f"{p}: the folder holds no {'/'.join(IMAGE_EXTENSIONS)} frames (found: {shown})"
        )
    for f in files:
        if f.stat().st_size == 0:
            raise BadInputError(f"{f}: the image file is empty (0 bytes)")
    src_w, src_h = image_header_size(files[0])
    _check_size(files[0], src_w, src_h, max_side, "the frame")
    for f in files[1:]:
        w, h = image_header_size(f)
        if (w, h) != (src_w, src_h):
            raise BadInputError(
                f"{f}: frame is {w}x{h} but {files[0].name} (the first frame) is {src_w}x{src_h}; "
                "all frames of a folder must have the same size"
            )
    first = cv2.imread(str(files[0]), cv2.IMREAD_COLOR)
    if first is None:
        raise BadInputError(f"{files[0]}: cannot decode the image (corrupt, truncated or not a JPEG/PNG)")
    if first.shape[:2] != (src_h, src_w):  # pragma: no cover - header and decoder disagree
        raise BadInputError(f"{files[0]}: header says {src_w}x{src_h} but it decodes to "
                            f"{first.shape[1]}x{first.shape[0]}")
    indices = tuple(range(0, len(files), stride))[: max_frames]
    source_fps = float(fps) if fps is not None else DEFAULT_FOLDER_FPS
    width, height = _target_size(src_w, src_h, max_side)
    info = VideoInfo(
        name=name or p.name, path=str(p), width=width, height=height, num_frames=len(indices),
        fps=source_fps / stride, source_width=src_w, source_height=src_h, source_indices=indices,
        frame_names=tuple(files[i].name for i in indices),
    )
    return VideoReader(info, source_fps=source_fps, files=files)


def image_header_size(path: str | Path) -> tuple[int, int]:
    """(width, height) of a PNG or JPEG read from its header, without decoding pixels.

    Raises:
        BadInputError: not a PNG/JPEG, or the header is damaged.
    """
    path = Path(path)
    with open(path, "rb") as fh:
        head = fh.read(32)
        if head.startswith(b"\x89PNG\r\n\x1a\n"):
            if len(head) < 24 or head[12:16] != b"IHDR":
                raise BadInputError(f"{path}: damaged PNG header")
            w, h = struct.unpack(">II", head[16:24])
            return int(w), int(h)
        if head.startswith(b"\xff\xd8"):
            fh.seek(2)
            return _jpeg_size(fh, path)
    raise BadInputError(f"{path}: not a PNG or JPEG image (unrecognised file signature)")


# JPEG start-of-frame markers (baseline, progressive, lossless, ...): not DHT/JPG/DAC.
_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def _jpeg_size(fh, path: Path) -> tuple[int, int]:
    while True:
        byte = fh.read(1)
        while byte and byte != b"\xff":  # skip to the next marker
            byte = fh.read(1)
        while byte == b"\xff":  # fill bytes
            byte = fh.read(1)
        if not byte:
            raise BadInputError(f"{path}: damaged JPEG (no frame header found)")
        marker = byte[0]
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:  # SOI, TEM, RSTn: no payload
            continue
        if marker == 0xD9:
            raise BadInputError(f"{path}: damaged JPEG (ends before a frame header)")
        raw = fh.read(2)
        if len(raw) < 2:
            raise BadInputError(f"{path}: damaged JPEG (truncated segment)")
        length = struct.unpack(">H", raw)[0]
        if marker in _SOF_MARKERS:
            data = fh.read(5)
            if len(data) < 5:
                raise BadInputError(f"{path}: damaged JPEG (truncated frame header)")
            h, w = struct.unpack(">HH", data[1:5])
            return int(w), int(h)
        fh.seek(length - 2, 1)
