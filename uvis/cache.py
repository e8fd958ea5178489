"""Per-video cache of model outputs (proposals + crop embeddings).

Layout of one cache folder (``<workspace>/videos/<video>/<cache_key>/``)::

    meta.json           video info, proposer and embedder names, embedding dim
    frames/000123.npz   processed frame 123: boxes (N,4) float32 xyxy, objectness (N,),
                        embeddings (N,D) float32, mask_counts (N,) str (COCO RLE counts
                        at the frame size)

Every file is written atomically (temporary file, then ``os.replace``), so a killed job
leaves only complete frames; the next run resumes at the first missing frame. The cache
never imports torch: decisions read it with numpy alone.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from uvis.errors import BadInputError
from uvis.fsutil import atomic_path, atomic_write_text, clean_stale_temps
from uvis.tracker import MaskIoUMemo
from uvis.types import Instances, VideoInfo


def cache_key(proposer_name: str, embedder_name: str, stride: int, max_side: int | None) -> str:
    """Folder name of a cache: changes whenever model outputs would differ."""
    raw = json.dumps([proposer_name, embedder_name, int(stride), max_side])
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

    def to_dict(self) -> dict[str, Any]:
        return {"info": self.info.to_dict(), "proposer": self.proposer, "embedder": self.embedder,
                "embedder_config": self.embedder_config, "embedding_dim": self.embedding_dim,
                "has_text": self.has_text, "logit_scale": self.logit_scale}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "CacheMeta":
        return cls(VideoInfo.from_dict(d["info"]), d["proposer"], d["embedder"], d.get("embedder_config", {}),
                   int(d["embedding_dim"]), bool(d["has_text"]), float(d["logit_scale"]))


class CacheWriter:
    """Writes one video's cache frame by frame; resumable."""

    def __init__(self, directory: Path, meta: CacheMeta) -> None:
        self.directory = Path(directory)
        self.frames_dir = self.directory / "frames"
        self.frames_dir.mkdir(parents=True, exist_ok=True)
        self.meta = meta
        for stale in self.frames_dir.glob(".*.tmp.npz"):  # left by a killed run of an older version
            stale.unlink(missing_ok=True)
        clean_stale_temps(self.frames_dir)  # left by a killed run
        atomic_write_text(self.directory / "meta.json", json.dumps(meta.to_dict(), indent=1))

    def frame_path(self, t: int) -> Path:
        return self.frames_dir / f"{t:06d}.npz"

    def first_missing(self) -> int:
        """Index of the first processed frame with no cache file (== num_frames when complete)."""
        for t in range(self.meta.info.num_frames):
            if not self.frame_path(t).is_file():
                return t
        return self.meta.info.num_frames

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

    @property
    def info(self) -> VideoInfo:
        return self.meta.info

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
        """Read every cached frame (stopping at the first missing one)."""
        directory = Path(directory)
        meta_path = directory / "meta.json"
        if not meta_path.is_file():
            raise BadInputError(f"no video cache at {directory} (meta.json missing)")
        meta = CacheMeta.from_dict(json.loads(meta_path.read_text()))
        h, w = meta.info.height, meta.info.width
        boxes, obj, emb, counts, frames = [], [], [], [], []
        t = 0
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
        inst = Instances(
            boxes=np.concatenate(boxes) if boxes else np.zeros((0, 4), np.float32),
            masks=masks,
            objectness=np.concatenate(obj) if obj else np.zeros(0, np.float32),
            image_size=(h, w),
            frame=np.concatenate(frames) if frames else np.zeros(0, np.int32),
            embeddings=np.concatenate(emb) if emb else np.zeros((0, meta.embedding_dim), np.float32),
        )
        slices = inst.frame_slices(t)
        return cls(directory, meta, inst, t, slices, MaskIoUMemo(masks, slices))
