"""Atomic writes for exporters: a failure leaves no half file and no half folder.

Files are written to a hidden temporary sibling and moved into place with
``os.replace`` (atomic on one file system). Folders are filled under a temporary
sibling and swapped in: the previous folder (if any) is moved aside, the new one
renamed into place, then the old one removed, so a reader sees either the complete
old folder or the complete new one (a crash between the two renames leaves the old
folder under ``.<name>.old-*`` and never a partial one under ``<name>``).
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import uuid
from pathlib import Path
from typing import Any, Iterator


def _tmp_sibling(path: Path, tag: str) -> Path:
    return path.with_name(f".{path.name}.{tag}-{os.getpid()}-{uuid.uuid4().hex[:8]}")


def write_json_atomic(path: str | Path, data: Any, *, indent: int | None = None) -> Path:
    """Write ``data`` as JSON to ``path`` atomically; returns the path.

    ``NaN``/``inf`` are refused (``allow_nan=False``): exporters write ``null`` for
    missing values so that strict JSON parsers (browsers, pycocotools) read the file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_sibling(path, "tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=indent, allow_nan=False,
                      separators=(",", ": ") if indent else (",", ":"))
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


@contextlib.contextmanager
def atomic_file(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path``.

    The temporary name keeps ``path``'s suffix (tools such as ffmpeg pick the format
    from it). On an exception the temporary file is removed and ``path`` is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}{path.suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Yield an empty temporary folder beside ``path``; on success it becomes ``path``.

    An existing ``path`` is replaced as a whole (see the module docstring). On an
    exception the temporary folder is removed and ``path`` is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_sibling(path, "tmp")
    tmp.mkdir()
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = None
    if path.exists():
        old = _tmp_sibling(path, "old")
        os.replace(path, old)
    try:
        os.replace(tmp, path)
    except BaseException:
        if old is not None:
            os.replace(old, path)
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def finite_or_none(x: float) -> float | None:
    """``float(x)``, or ``None`` for NaN/inf (JSON has no NaN)."""
    v = float(x)
    return v if math.isfinite(v) else None


def none_to_nan(x: Any) -> float:
    """Inverse of :func:`finite_or_none` for reading: ``None`` -> NaN."""
    return math.nan if x is None else float(x)
