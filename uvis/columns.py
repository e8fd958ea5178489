"""Consolidated, memory-mapped columns of a video cache (DESIGN §2: "consolidated into
memory-mappable columns when complete").

While a video is being labelled its cache is one ``frames/<t>.npz`` per frame (see
:mod:`uvis.cache`). When labelling completes, :func:`consolidate` writes the whole video
as one column set beside them::

    <cache>/columns-<T:06d>/      T = number of frames the columns hold (0..T-1)
        manifest.json             {"format": "uvis-columns", "version": 1, "num_frames": T,
                                   "num_instances": N, "embedding_dim": D, "mask_bytes": B}
        frame_offsets.npy         (T+1,) int64: frame t's rows are [off[t], off[t+1])
        boxes.npy                 (N, 4) float32 xyxy pixels
        objectness.npy            (N,) float32
        embeddings.npy            (N, D) float32 (kept float32: decisions are bit-identical
                                  to the per-frame cache's, and no tolerance needs arguing)
        mask_offsets.npy          (N+1,) int64: row i's COCO RLE counts are
        mask_bytes.npy            (B,) uint8 ASCII, bytes [moff[i], moff[i+1])

Format choice: plain numpy ``.npy`` files opened with ``np.load(mmap_mode="r")``. numpy is
already the cache's only dependency, a memory-mapped ``.npy`` is zero-copy and opens by
reading a header, and nothing heavier (Arrow, Lance) has to be imported by ``import uvis``
or installed; the layout is a handful of flat arrays, which is what Arrow IPC would
store too, without its schema machinery.

Safety: the folder is filled under a temporary name and renamed into place by
:func:`uvis.fsutil.atomic_dir` only after it has been re-opened and compared with the data
it was made from; only then are the per-frame files it covers removed. A new column set
gets a new name (its frame count), so an existing one is never replaced in place: at every
instant the cache has either the old columns or the new ones, plus per-frame files for the
frames no complete column set covers. A killed consolidation leaves a hidden temporary
folder (cleaned by the next :class:`uvis.cache.CacheWriter`) and a usable cache.
"""
from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from uvis.fsutil import atomic_dir, fsync_path, temp_sibling

FORMAT = "uvis-columns"
VERSION = 1
_DIR_RE = re.compile(r"^columns-(\d{6,})$")
_FILES = ("frame_offsets", "boxes", "objectness", "embeddings", "mask_offsets", "mask_bytes")


def columns_dir_name(num_frames: int) -> str:
    """Folder name of a column set holding frames 0..num_frames-1."""
    return f"columns-{num_frames:06d}"


@dataclass
class ColumnSet:
    """One opened column set (arrays are read-only memory maps; shapes in the module docstring)."""

    path: Path
    num_frames: int
    frame_offsets: np.ndarray
    boxes: np.ndarray
    objectness: np.ndarray
    embeddings: np.ndarray
    mask_offsets: np.ndarray
    mask_bytes: np.ndarray

    @property
    def num_instances(self) -> int:
        return int(self.frame_offsets[-1])

    def rows(self, num_frames: int) -> int:
        """Number of rows of frames 0..num_frames-1 (``num_frames`` <= :attr:`num_frames`)."""
        return int(self.frame_offsets[num_frames])

    def mask_counts(self, stop_row: int) -> list[str]:
        """COCO RLE counts strings of rows 0..stop_row-1."""
        off = self.mask_offsets[: stop_row + 1]
        text = self.mask_bytes[: int(off[-1])].tobytes().decode("ascii")
        bounds = off.tolist()
        return [text[a:b] for a, b in zip(bounds[:-1], bounds[1:])]


class ColumnsError(ValueError):
    """A column folder is damaged or not one this version reads."""


def open_columns(path: str | Path, embedding_dim: int) -> ColumnSet:
    """Memory-map one column folder and check its shapes, dtypes and offsets.

    Raises:
        ColumnsError: missing file, wrong shape/dtype, offsets not monotonic or not ending
            at the row/byte counts, or a manifest of another format/version.
    """
    path = Path(path)
    try:
        manifest = json.loads((path / "manifest.json").read_text())
        if manifest.get("format") != FORMAT or manifest.get("version") != VERSION:
            raise ColumnsError(f"{path}: not a {FORMAT} v{VERSION} folder")
        t, n = int(manifest["num_frames"]), int(manifest["num_instances"])
        d, b = int(manifest["embedding_dim"]), int(manifest["mask_bytes"])
        arrays = {k: np.load(path / f"{k}.npy", mmap_mode="r", allow_pickle=False) for k in _FILES}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ColumnsError(f"{path}: unreadable column set ({exc})") from exc
    expected = {"frame_offsets": ((t + 1,), np.int64), "boxes": ((n, 4), np.float32),
                "objectness": ((n,), np.float32), "embeddings": ((n, d), np.float32),
                "mask_offsets": ((n + 1,), np.int64), "mask_bytes": ((b,), np.uint8)}
    for k, (shape, dtype) in expected.items():
        a = arrays[k]
        if a.shape != shape or a.dtype != dtype:
            raise ColumnsError(f"{path}/{k}.npy: shape {a.shape} {a.dtype}, expected {shape} {np.dtype(dtype)}")
    if d != embedding_dim:
        raise ColumnsError(f"{path}: embedding_dim {d}, the cache says {embedding_dim}")
    for k, last in (("frame_offsets", n), ("mask_offsets", b)):
        off = np.asarray(arrays[k])
        if off[0] != 0 or off[-1] != last or (len(off) > 1 and np.any(np.diff(off) < 0)):
            raise ColumnsError(f"{path}/{k}.npy: offsets must rise from 0 to {last}")
    return ColumnSet(path, t, **arrays)


def latest_columns(cache_dir: str | Path, embedding_dim: int) -> ColumnSet | None:
    """The valid column set holding the most frames in ``cache_dir`` (None: none).

    Damaged or foreign column folders are skipped (an older valid one, or the per-frame
    files, are used instead)."""
    cache_dir = Path(cache_dir)
    try:
        found = [(int(m.group(1)), p) for p in cache_dir.iterdir() if (m := _DIR_RE.match(p.name)) and p.is_dir()]
    except FileNotFoundError:
        return None
    for _, p in sorted(found, reverse=True):
        try:
            return open_columns(p, embedding_dim)
        except ColumnsError:
            continue
    return None


def _write(folder: Path, name: str, array: np.ndarray) -> None:
    path = folder / f"{name}.npy"
    np.save(path, np.ascontiguousarray(array), allow_pickle=False)
    fsync_path(path)


def write_columns(folder: Path, frame_offsets: np.ndarray, boxes: np.ndarray, objectness: np.ndarray,
                  embeddings: np.ndarray, mask_counts: list[str]) -> None:
    """Write a column set's files into an (empty, temporary) ``folder``.

    Raises:
        ColumnsError: a mask's counts string is not ASCII (not a COCO compressed RLE).
    """
    try:
        encoded = [c.encode("ascii") for c in mask_counts]
    except UnicodeEncodeError as exc:
        raise ColumnsError(f"a mask's RLE counts are not ASCII ({exc}); the cache stays per-frame") from exc
    moff = np.zeros(len(encoded) + 1, np.int64)
    np.cumsum([len(e) for e in encoded], out=moff[1:])
    data = np.frombuffer(b"".join(encoded), dtype=np.uint8)
    _write(folder, "frame_offsets", frame_offsets.astype(np.int64))
    _write(folder, "boxes", boxes.astype(np.float32).reshape(-1, 4))
    _write(folder, "objectness", objectness.astype(np.float32))
    _write(folder, "embeddings", embeddings.astype(np.float32))
    _write(folder, "mask_offsets", moff)
    _write(folder, "mask_bytes", data)
    manifest = {"format": FORMAT, "version": VERSION, "num_frames": len(frame_offsets) - 1,
                "num_instances": int(frame_offsets[-1]), "embedding_dim": int(embeddings.shape[1]),
                "mask_bytes": int(moff[-1])}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    fsync_path(folder / "manifest.json")
    fsync_path(folder)


def _same(cols: ColumnSet, frame_offsets: np.ndarray, boxes: np.ndarray, objectness: np.ndarray,
          embeddings: np.ndarray, mask_counts: list[str]) -> bool:
    return (np.array_equal(cols.frame_offsets, frame_offsets) and np.array_equal(cols.boxes, boxes)
            and np.array_equal(cols.objectness, objectness) and np.array_equal(cols.embeddings, embeddings)
            and cols.mask_counts(len(mask_counts)) == list(mask_counts))


def _remove_dir(path: Path) -> None:
    """Rename ``path`` to a hidden temporary name, then delete it (never partial under its name)."""
    doomed = temp_sibling(path, keep_suffix=False, tag=".old")
    os.replace(path, doomed)
    shutil.rmtree(doomed, ignore_errors=True)


def consolidate(cache_dir: str | Path, *, keep_frames: bool = False) -> Path | None:
    """Consolidate a complete video cache into a column set; returns its folder.

    Reads the cache through :meth:`uvis.cache.VideoCache.load` (columns + per-frame
    files), writes the columns under a temporary name, re-opens and compares them with
    what was read, renames them into place, then removes older column sets and (unless
    ``keep_frames``) the per-frame files now covered. Returns None, changing nothing, when
    the cache is incomplete (the per-frame files keep serving it). A cache already
    consolidated returns its column folder, also when that holds more frames than the
    cache's current ``meta.json`` (a shorter run of the same settings), which is kept.

    Raises:
        ColumnsError: the written columns do not read back equal (nothing is removed).
    """
    from uvis.cache import VideoCache  # the per-frame reader; uvis.cache imports this module

    cache_dir = Path(cache_dir)
    cache = VideoCache.load(cache_dir)
    if not cache.complete:
        return None
    t = cache.num_cached
    inst = cache.instances
    dim = cache.meta.embedding_dim
    target = cache_dir / columns_dir_name(t)
    current = latest_columns(cache_dir, dim)
    if current is not None and current.num_frames > t:  # a shorter run (fewer max_frames): keep the longer set
        return current.path
    if current is None or current.path != target:
        offsets = np.zeros(t + 1, np.int64)
        offsets[1:] = [sl.stop for sl in cache.frame_slices]
        emb = inst.embeddings if inst.embeddings is not None else np.zeros((0, dim), np.float32)
        emb = emb.reshape(len(inst), dim)
        counts = [m["counts"] for m in inst.masks]
        counts = [c.decode("ascii") if isinstance(c, bytes) else str(c) for c in counts]
        with atomic_dir(target) as tmp:
            write_columns(tmp, offsets, inst.boxes, inst.objectness, emb, counts)
            if not _same(open_columns(tmp, dim), offsets, inst.boxes, inst.objectness, emb, counts):
                raise ColumnsError(f"{target}: the written columns differ from the cache; per-frame files kept")
    del cache, inst
    for p in cache_dir.iterdir():  # older column sets: superseded by the verified new one
        m = _DIR_RE.match(p.name)
        if m and p.is_dir() and p != target:
            _remove_dir(p)
    if not keep_frames:
        for k in range(t):
            (cache_dir / "frames" / f"{k:06d}.npz").unlink(missing_ok=True)
    return target
