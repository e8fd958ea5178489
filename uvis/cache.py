"""Per-video cache of model outputs (proposals + crop embeddings).

Layout of one cache folder (``<workspace>/videos/<video>/<cache_key>/``)::

    meta.json           video info, proposer and embedder names, embedding dim, and the
                        settings the cache key was computed from (``settings``)
    frames/000123.npz   processed frame 123: boxes (N,4) float32 xyxy, objectness (N,),
                        embeddings (N,D) float32, mask_counts (N,) str (COCO RLE counts
                        at the frame size)

The key (:func:`cache_key`) hashes :func:`cache_settings`: every setting that changes the
model outputs (the proposer's and embedder's names, which carry their weights' digests,
the proposer and embedder settings that backend uses, minus device and batch size, and
the frame stride and ``max_side``). ``max_frames`` is not part of it: a longer run
extends the same cache. A :class:`CacheWriter` refuses a folder whose stored settings
differ, so ``meta.json`` never claims settings the frames were not made with.

Every file is written atomically (temporary file, then ``os.replace``), so a killed job
leaves only complete frames; the next run resumes at the first missing frame. The cache
never imports torch: decisions read it with numpy alone. A complete cache is consolidated
into memory-mapped columns (:mod:`uvis.columns`, ``columns-<T>/``) that replace the
per-frame files they cover; :meth:`VideoCache.load` reads either.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from uvis.columns import latest_columns
from uvis.errors import BadInputError
from uvis.fsutil import atomic_path, atomic_write_text, clean_stale_temps
from uvis.tracker import MaskIoUMemo
from uvis.types import Instances, VideoInfo


def cache_settings(proposer_name: str, proposer_settings: Mapping[str, Any], embedder_name: str,
                   embedder_settings: Mapping[str, Any], stride: int, max_side: int | None) -> dict[str, Any]:
    """Everything that changes a cache's contents, as a JSON-able dict (hashed by :func:`cache_key`).

    ``proposer_settings``/``embedder_settings`` come from
    :func:`uvis.proposers.factory.proposer_settings` and
    :func:`uvis.embedders.factory.embedder_settings`.
    """
    return {"proposer": str(proposer_name), "proposer_settings": dict(proposer_settings),
            "embedder": str(embedder_name), "embedder_settings": dict(embedder_settings),
            "stride": int(stride), "max_side": None if max_side is None else int(max_side)}


def cache_key(settings: Mapping[str, Any]) -> str:
    """Folder name of a cache: a hash of :func:`cache_settings`."""
    raw = json.dumps(settings, sort_keys=True, separators=(",", ":"))
    return hashlib.sha1(raw.encode()).hexdigest()[:12]


@dataclass
class CacheMeta:
    """What a cache holds and how it was made."""

    info: VideoInfo
    proposer: str
    embedder: str
    embedder_config: dict[str, Any]
    embedding_dim: int
    has_text: bool
    logit_scale: float
    settings: dict[str, Any] = field(default_factory=dict)
    """:func:`cache_settings` of the cache (empty in caches made before it was recorded)."""

    def to_dict(self) -> dict[str, Any]:
        return {"info": self.info.to_dict(), "proposer": self.proposer, "embedder": self.embedder,
                "embedder_config": self.embedder_config, "embedding_dim": self.embedding_dim,
                "has_text": self.has_text, "logit_scale": self.logit_scale, "settings": self.settings}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "CacheMeta":
        return cls(VideoInfo.from_dict(d["info"]), d["proposer"], d["embedder"], d.get("embedder_config", {}),
                   int(d["embedding_dim"]), bool(d["has_text"]), float(d["logit_scale"]),
                   dict(d.get("settings") or {}))


def _resume_problems(stored: CacheMeta, new: CacheMeta) -> list[str]:
    """Why frames made for ``new`` must not be added to a cache made as ``stored`` (empty: compatible)."""
    problems = []
    if stored.settings:
        for k in sorted(set(stored.settings) | set(new.settings)):
            if stored.settings.get(k) != new.settings.get(k):
                problems.append(f"{k}: cached {stored.settings.get(k)!r}, now {new.settings.get(k)!r}")
    else:  # made before settings were recorded: at least the models must agree
        for k in ("proposer", "embedder"):
            if getattr(stored, k) != getattr(new, k):
                problems.append(f"{k}: cached {getattr(stored, k)!r}, now {getattr(new, k)!r}")
    if stored.embedding_dim != new.embedding_dim:
        problems.append(f"embedding_dim: cached {stored.embedding_dim}, now {new.embedding_dim}")
    a, b = stored.info, new.info
    if (a.width, a.height, a.source_width, a.source_height) != (b.width, b.height, b.source_width, b.source_height):
        problems.append(f"frame size: cached {a.width}x{a.height} (source {a.source_width}x{a.source_height}), "
                        f"now {b.width}x{b.height} (source {b.source_width}x{b.source_height})")
    n = min(len(a.source_indices), len(b.source_indices))
    if a.source_indices[:n] != b.source_indices[:n] or a.frame_names[:n] != b.frame_names[:n]:
        problems.append("the processed frames are other source frames than the cached ones")
    return problems


class CacheWriter:
    """Writes one video's cache frame by frame; resumable.

    ``prepare=True`` (the owner of the cache: the process that starts a run) checks the
    folder, removes temporaries left by killed writers and writes ``meta.json``;
    ``prepare=False`` attaches to a cache prepared so, to write frames only (the Ray
    engine's workers, which may run beside other writers of the same video).

    Raises:
        BadInputError: ``directory`` holds a cache made with other settings, frame size or
            source frames (see :func:`_resume_problems`); nothing is written then.
    """

    def __init__(self, directory: Path, meta: CacheMeta, *, prepare: bool = True) -> None:
        self.directory = Path(directory)
        self.frames_dir = self.directory / "frames"
        self.meta = meta
        if not prepare:
            return
        meta_path = self.directory / "meta.json"
        if meta_path.is_file():
            try:
                stored = CacheMeta.from_dict(json.loads(meta_path.read_text()))
            except (ValueError, KeyError, TypeError) as exc:
                raise BadInputError(f"cache {self.directory}: meta.json is unreadable ({exc}); move the folder "
                                    "away to label this video again") from exc
            problems = _resume_problems(stored, meta)
            if problems:
                raise BadInputError(f"cache {self.directory} was made with other settings than this run "
                                    f"({'; '.join(problems)}); refusing to add frames to it. Move the folder "
                                    "away to label the video again")
        self.frames_dir.mkdir(parents=True, exist_ok=True)
        for stale in self.frames_dir.glob(".*.tmp.npz"):  # left by a killed run of an older version
            stale.unlink(missing_ok=True)
        clean_stale_temps(self.frames_dir)  # left by a killed run
        clean_stale_temps(self.directory)
        atomic_write_text(self.directory / "meta.json", json.dumps(meta.to_dict(), indent=1))

    def remove_temporaries(self) -> None:
        """Delete every half-written frame file (of any writer): call only when none runs."""
        clean_stale_temps(self.frames_dir, max_age_s=0.0)

    def frame_path(self, t: int) -> Path:
        return self.frames_dir / f"{t:06d}.npz"

    def first_missing(self) -> int:
        """Index of the first processed frame with no cache file (== num_frames when complete)."""
        for t in range(self.consolidated_frames(), self.meta.info.num_frames):
            if not self.frame_path(t).is_file():
                return t
        return self.meta.info.num_frames

    def consolidated_frames(self) -> int:
        """Frames 0..T-1 held by the cache's column set (0: none)."""
        cols = latest_columns(self.directory, self.meta.embedding_dim)  # frames consolidated already
        return 0 if cols is None else min(cols.num_frames, self.meta.info.num_frames)

    def missing_frames(self) -> list[int]:
        """Every processed frame the cache does not hold yet, ascending."""
        return [t for t in range(self.consolidated_frames(), self.meta.info.num_frames)
                if not self.frame_path(t).is_file()]

    def is_cached(self, t: int, consolidated: int | None = None) -> bool:
        """Whether frame ``t`` is cached (``consolidated``: :meth:`consolidated_frames`, if known)."""
        n = self.consolidated_frames() if consolidated is None else consolidated
        return t < n or self.frame_path(t).is_file()

    def write_frame(self, t: int, inst: Instances) -> None:
        """Store frame ``t``'s instances (embeddings required) atomically."""
        if inst.embeddings is None:
            raise ValueError("instances must carry embeddings before caching")
        h, w = self.meta.info.height, self.meta.info.width
        for m in inst.masks:
            if tuple(m["size"]) != (h, w):
                raise ValueError(f"mask size {m['size']} differs from frame size {(h, w)} at frame {t}")
        emb = inst.embeddings.reshape(len(inst), -1) if len(inst) else np.zeros((0, self.meta.embedding_dim))
        path = self.frame_path(t)
        with atomic_path(path) as tmp:
            np.savez(tmp, boxes=inst.boxes.astype(np.float32), objectness=inst.objectness.astype(np.float32),
                     embeddings=emb.astype(np.float32),
                     mask_counts=np.array([m["counts"] for m in inst.masks], dtype=np.str_))


@dataclass
class VideoCache:
    """A loaded, complete-or-partial cache: ``instances`` flattened over frames 0..num_cached-1.

    ``frame_slices[t]`` selects frame t's rows; the row of instance i of frame t is
    ``frame_slices[t].start + i`` (its stable identity: curation refers to (frame, i)).
    """

    directory: Path
    meta: CacheMeta
    instances: Instances
    num_cached: int
    frame_slices: list[slice] = field(default_factory=list)
    iou_memo: MaskIoUMemo | None = None
    warnings: list[str] = field(default_factory=list)
    """Messages of the labelling run that returned this cache (reader warnings, the name
    chosen for a clashing video); empty when loaded."""

    @property
    def info(self) -> VideoInfo:
        return self.meta.info

    @property
    def key(self) -> str:
        """The cache key (:func:`cache_key`): names the model outputs this cache holds.

        Curation provenance records it; it is the cache folder's name."""
        return self.directory.name

    @property
    def complete(self) -> bool:
        return self.num_cached >= self.meta.info.num_frames

    def row(self, frame: int, index: int) -> int:
        """Row in ``instances`` of instance ``index`` of ``frame``; BadInputError if absent."""
        if not 0 <= frame < len(self.frame_slices):
            raise BadInputError(f"frame {frame} is not in the cache of {self.info.name} "
                                f"({len(self.frame_slices)} cached frames)")
        sl = self.frame_slices[frame]
        if not 0 <= index < sl.stop - sl.start:
            raise BadInputError(f"frame {frame} of {self.info.name} has no instance {index}")
        return sl.start + index

    @classmethod
    def load(cls, directory: str | Path) -> "VideoCache":
        """Read every cached frame (stopping at the first missing one).

        Frames covered by a consolidated column set (:mod:`uvis.columns`) come from its
        memory maps, the rest from per-frame files; the result is the same either way."""
        directory = Path(directory)
        meta_path = directory / "meta.json"
        if not meta_path.is_file():
            raise BadInputError(f"no video cache at {directory} (meta.json missing)")
        meta = CacheMeta.from_dict(json.loads(meta_path.read_text()))
        h, w = meta.info.height, meta.info.width
        boxes, obj, emb, counts, frames = [], [], [], [], []
        cols = latest_columns(directory, meta.embedding_dim)
        t = 0
        if cols is not None:
            t = min(cols.num_frames, meta.info.num_frames)
            n = cols.rows(t)
            boxes.append(cols.boxes[:n])
            obj.append(cols.objectness[:n])
            emb.append(cols.embeddings[:n])
            counts.extend(cols.mask_counts(n))
            frames.append(np.repeat(np.arange(t, dtype=np.int32), np.diff(cols.frame_offsets[: t + 1])))
        while t < meta.info.num_frames:
            path = directory / "frames" / f"{t:06d}.npz"
            if not path.is_file():
                break
            with np.load(path, allow_pickle=False) as d:
                n = len(d["objectness"])
                boxes.append(d["boxes"])
                obj.append(d["objectness"])
                emb.append(d["embeddings"].reshape(n, meta.embedding_dim))
                counts.extend(d["mask_counts"].tolist())
                frames.append(np.full(n, t, dtype=np.int32))
            t += 1
        size = [h, w]
        masks = [{"size": size, "counts": c} for c in counts]

        def joined(parts: list[np.ndarray], empty: np.ndarray) -> np.ndarray:
            return parts[0] if len(parts) == 1 else np.concatenate(parts) if parts else empty

        inst = Instances(
            boxes=joined(boxes, np.zeros((0, 4), np.float32)),
            masks=masks,
            objectness=joined(obj, np.zeros(0, np.float32)),
            image_size=(h, w),
            frame=joined(frames, np.zeros(0, np.int32)),
            embeddings=joined(emb, np.zeros((0, meta.embedding_dim), np.float32)),
        )
        slices = inst.frame_slices(t)
        return cls(directory, meta, inst, t, slices, MaskIoUMemo(masks, slices))
