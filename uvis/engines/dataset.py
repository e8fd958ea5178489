"""Whole datasets as input: YouTube-VIS ``JPEGImages/`` roots, list files, ``--max-videos``.

An input is one of:

* a video file (``.mp4 .avi .webm .mkv``) or a frame folder (one video);
* a folder of videos or of frame folders, e.g. YouTube-VIS ``JPEGImages/`` (one
  sub-folder of JPEG frames per video), searched one level deep
  (:func:`uvis.video.find_videos`);
* a list file (``.txt`` or ``.lst``): one video file or frame folder per line, relative
  paths resolved against the list file's folder; blank lines and lines starting with
  ``#`` are ignored.

Videos keep the order given (list files: their line order; folders: natural order);
a video named twice is labelled once.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable

from uvis.errors import BadInputError
from uvis.video import find_videos

LIST_EXTENSIONS: tuple[str, ...] = (".txt", ".lst")


def is_list_file(path: str | Path) -> bool:
    """True for a ``.txt``/``.lst`` file (a list of videos, one per line)."""
    p = Path(path)
    return p.suffix.lower() in LIST_EXTENSIONS and p.is_file()


def read_list_file(path: str | Path) -> list[Path]:
    """The videos named by a list file, each checked to exist.

    Raises:
        BadInputError: unreadable file, a line naming a missing path (the message gives
            the list file, line number and path), or no video at all.
    """
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise BadInputError(f"{path}: cannot read the list of videos ({exc})") from exc
    out: list[Path] = []
    for number, line in enumerate(lines, 1):
        entry = line.strip()
        if not entry or entry.startswith("#"):
            continue
        p = Path(entry).expanduser()
        if not p.is_absolute():
            p = path.parent / p
        if not p.exists():
            raise BadInputError(f"{path}:{number}: {entry}: no such video file or frame folder "
                                f"(relative paths are taken from {path.parent})")
        out.append(p)
    if not out:
        raise BadInputError(f"{path}: the list names no video (one video file or frame folder per line)")
    return out


def enumerate_videos(inputs: Iterable[str | Path], *, max_videos: int | None = None) -> list[Path]:
    """Expand inputs (videos, frame folders, dataset roots, list files) into videos.

    Args:
        inputs: command-line inputs, see the module docstring.
        max_videos: keep only the first N videos (for trials); None keeps all.
    Raises:
        BadInputError: a missing path, a folder without videos, a bad list file or
            ``max_videos < 1``.
    """
    if max_videos is not None and max_videos < 1:
        raise BadInputError(f"--max-videos must be >= 1, got {max_videos}")
    expanded: list[Path] = []
    for raw in inputs:
        expanded.extend(read_list_file(raw) if is_list_file(raw) else [Path(raw)])
    videos: list[Path] = []
    seen: set[Path] = set()
    for video in find_videos(expanded):
        key = video.expanduser().resolve()
        if key not in seen:
            seen.add(key)
            videos.append(video)
        if max_videos is not None and len(videos) >= max_videos:
            break
    return videos
