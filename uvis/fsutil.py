"""Atomic file writes: the one place that writes a file or folder so that a crash never
leaves a half-written file under a real name.

A file is written to a hidden temporary sibling, flushed and ``fsync``-ed, then moved
into place with ``os.replace`` (atomic on one file system); the parent folder is
``fsync``-ed afterwards so the rename itself survives a power cut. A folder is filled
under a temporary sibling and swapped in whole (see :func:`atomic_dir`).

Temporary names are recognisable, so a later run can clean what a killed one left::

    .<name>.uvis-tmp-<pid>-<random8><suffix>

``<suffix>`` is the target's own suffix (``.json``, ``.npz``, ``.mp4``), because
tools such as ``numpy.savez`` and ffmpeg choose the format from it. A temporary is
*stale* (see :func:`is_stale_temp`) when the process that made it is gone, or when it
is older than a maximum age (PIDs are reused, so a live PID alone proves nothing).
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import time
import uuid
from pathlib import Path
from typing import IO, Any, Iterator

#: Marker inside every temporary name made here.
TMP_MARK = ".uvis-tmp-"

#: A temporary older than this is stale even when its PID is alive (PID reuse).
DEFAULT_MAX_TEMP_AGE_S = 24 * 3600.0

_TMP_RE = re.compile(r"^\.(?P<name>.+)" + re.escape(TMP_MARK) + r"(?P<pid>\d+)-(?P<rand>[0-9a-f]{8})(?P<tag>\.old)?")


def temp_sibling(path: str | Path, *, keep_suffix: bool = True, tag: str = "") -> Path:
    """A fresh, unused temporary name beside ``path`` (nothing is created).

    ``.<stem-or-name>.uvis-tmp-<pid>-<rand8>[<tag>][<suffix>]``; with ``keep_suffix``
    the name ends with ``path``'s suffix, else the whole name is kept before the mark.
    """
    path = Path(path)
    rand = uuid.uuid4().hex[:8]
    if keep_suffix and path.suffix:
        return path.with_name(f".{path.stem}{TMP_MARK}{os.getpid()}-{rand}{tag}{path.suffix}")
    return path.with_name(f".{path.name}{TMP_MARK}{os.getpid()}-{rand}{tag}")


def temp_pid(path: str | Path) -> int | None:
    """The PID recorded in a temporary name made by :func:`temp_sibling`, else ``None``."""
    m = _TMP_RE.match(Path(path).name)
    return int(m.group("pid")) if m else None


def pid_alive(pid: int) -> bool:
    """Whether a process with this PID exists (on this machine)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    except OSError:
        return False
    return True


def is_stale_temp(path: str | Path, *, max_age_s: float = DEFAULT_MAX_TEMP_AGE_S,
                  now: float | None = None) -> bool:
    """Whether ``path`` is a temporary of ours that no running writer can still own.

    True when the name carries our mark and either its modification time is older than
    ``max_age_s`` or its writer is gone (:func:`owner_gone`: the PID is not alive, or is
    alive but was reused by a process started after the file was last written).
    Temporaries of the calling process are never stale (its own writers may be running
    in other threads) unless too old.
    """
    path = Path(path)
    pid = temp_pid(path)
    if pid is None:
        return False
    try:
        mtime = path.lstat().st_mtime
    except FileNotFoundError:
        return False
    if (time.time() if now is None else now) - mtime > max_age_s:
        return True
    return pid != os.getpid() and owner_gone(pid, mtime)


def process_start_time(pid: int) -> float | None:
    """When process ``pid`` started (seconds since the epoch), read from ``/proc``; None
    where unknown (no such process, not Linux)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks = int(fields[19])  # field 22 of proc(5), counted after "pid (comm)"
        btime = next(int(ln.split()[1]) for ln in Path("/proc/stat").read_text().splitlines()
                     if ln.startswith("btime"))
        return btime + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):
        return None


def owner_gone(pid: int, since: float) -> bool:
    """Whether the process that made something at time ``since`` (epoch seconds) is gone:
    no process has that PID, or the one that has it started later (the PID was reused)."""
    if not pid_alive(pid):
        return True
    started = process_start_time(pid)
    return started is not None and started > since + 2.0  # /proc's boot time is whole seconds


def restore_stale_aside(folder: str | Path, *, max_age_s: float = DEFAULT_MAX_TEMP_AGE_S) -> list[Path]:
    """Move folders that a killed :func:`atomic_dir` left aside (``….uvis-tmp-<pid>-<rand>.old``)
    back to their name when nothing took it since; returns the restored paths.

    Call it before :func:`clean_stale_temps`, which deletes what is left."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    restored = []
    for p in sorted(folder.glob(f".*{TMP_MARK}*.old")):
        m = _TMP_RE.match(p.name)
        if m is None or not m.group("tag") or not is_stale_temp(p, max_age_s=max_age_s):
            continue
        target = folder / m.group("name")
        if not target.exists():
            os.replace(p, target)
            restored.append(target)
    return restored


def clean_stale_temps(folder: str | Path, *, max_age_s: float = DEFAULT_MAX_TEMP_AGE_S,
                      recursive: bool = False) -> list[Path]:
    """Remove stale temporaries (files or folders) in ``folder``; returns what was removed.

    A missing folder is not an error (nothing to clean).
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    removed: list[Path] = []
    candidates = folder.rglob(f".*{TMP_MARK}*") if recursive else folder.glob(f".*{TMP_MARK}*")
    for p in sorted(candidates):
        if not is_stale_temp(p, max_age_s=max_age_s):
            continue
        _remove(p)
        removed.append(p)
    return removed


def _remove(p: Path) -> None:
    """Delete a temporary file or folder (a symlink is unlinked, never followed)."""
    if p.is_dir() and not p.is_symlink():
        shutil.rmtree(p, ignore_errors=True)
    else:
        p.unlink(missing_ok=True)


def clean_stale_siblings(path: str | Path) -> list[Path]:
    """Remove the stale temporaries of one target ``path`` (what killed writers of it left);
    a folder a killed :func:`atomic_dir` moved aside is first restored if ``path`` is missing.
    :func:`atomic_open` (the JSON and text writers) and :func:`atomic_dir` call this, so a
    re-run never accumulates its predecessors' leftovers."""
    path = Path(path)
    folder = path.parent
    if not folder.is_dir():
        return []
    removed: list[Path] = []
    for p in sorted(folder.glob(f".{glob_escape(path.stem)}{TMP_MARK}*")) + sorted(
            folder.glob(f".{glob_escape(path.name)}{TMP_MARK}*")):
        m = _TMP_RE.match(p.name)
        if m is None or m.group("name") not in (path.stem, path.name) or not p.exists() or not is_stale_temp(p):
            continue
        if m.group("tag") and m.group("name") == path.name and not path.exists():
            os.replace(p, path)  # the complete old folder, left aside by a killed swap
            continue
        _remove(p)
        removed.append(p)
    return removed


def glob_escape(text: str) -> str:
    """``text`` with glob metacharacters escaped (``[``, ``*``, ``?``)."""
    import glob

    return glob.escape(text)


def fsync_path(path: str | Path) -> None:
    """``fsync`` a file, or a folder so a rename inside it is durable (no-op where unsupported)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str | Path, *, durable: bool = True) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` for any writer; on success it replaces ``path``.

    Use it for writers that take a file name (``numpy.savez``, ffmpeg, ``cv2.imwrite``)::

        with atomic_path(out) as tmp:
            np.savez(tmp, ...)

    The temporary keeps ``path``'s suffix. With ``durable`` the file and the parent
    folder are ``fsync``-ed. On an exception (or if the writer made no file) the
    temporary is removed and ``path`` is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_sibling(path)
    try:
        yield tmp
        if not tmp.exists():
            raise FileNotFoundError(f"the writer made no file at {tmp} for {path}")
        if durable:
            fsync_path(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if durable:
        fsync_path(path.parent)


@contextlib.contextmanager
def atomic_open(path: str | Path, mode: str = "w", *, encoding: str | None = "utf-8",
                durable: bool = True) -> Iterator[IO[Any]]:
    """Open a temporary file beside ``path`` for writing; on success it replaces ``path``.

    ``mode`` is ``"w"`` (text, ``encoding``) or ``"wb"`` (bytes).
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_open mode must be 'w' or 'wb', not {mode!r}")
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    clean_stale_siblings(path)  # not in atomic_path: that one writes cache frames, thousands per folder
    with atomic_path(path, durable=durable) as tmp:
        with open(tmp, mode, encoding=None if "b" in mode else encoding) as fh:
            yield fh
            fh.flush()


def atomic_write_bytes(path: str | Path, data: bytes, *, durable: bool = True) -> Path:
    """Write ``data`` to ``path`` atomically; returns the path."""
    with atomic_open(path, "wb", durable=durable) as fh:
        fh.write(data)
    return Path(path)


def atomic_write_text(path: str | Path, text: str, *, encoding: str = "utf-8", durable: bool = True) -> Path:
    """Write ``text`` to ``path`` atomically; returns the path."""
    with atomic_open(path, "w", encoding=encoding, durable=durable) as fh:
        fh.write(text)
    return Path(path)


def atomic_write_json(path: str | Path, data: Any, *, indent: int | None = None, sort_keys: bool = False,
                      allow_nan: bool = False, durable: bool = True) -> Path:
    """Write ``data`` as JSON to ``path`` atomically; returns the path.

    Compact separators without ``indent``; ``NaN``/``inf`` refused by default (strict
    JSON readers such as browsers and pycocotools reject them: write ``null``).
    """
    separators = (",", ": ") if indent is not None else (",", ":")
    with atomic_open(path, "w", durable=durable) as fh:
        json.dump(data, fh, indent=indent, sort_keys=sort_keys, allow_nan=allow_nan, separators=separators)
    return Path(path)


@contextlib.contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Yield an empty temporary folder beside ``path``; on success it becomes ``path``.

    An existing ``path`` is moved aside (``….uvis-tmp-<pid>-<rand>.old``), the new
    folder renamed into place, then the old one removed: a reader sees either the
    complete old folder or the complete new one; a crash between the two renames
    leaves the old folder under a stale temporary name, never a partial one under
    ``path``. On an exception the temporary folder is removed and ``path`` is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    clean_stale_siblings(path)
    tmp = temp_sibling(path, keep_suffix=False)
    tmp.mkdir()
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = None
    if path.exists():
        old = temp_sibling(path, keep_suffix=False, tag=".old")
        os.replace(path, old)
    try:
        os.replace(tmp, path)
    except BaseException:
        if old is not None:
            os.replace(old, path)
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    fsync_path(path.parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
