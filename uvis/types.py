"""Core data types: instances as validated parallel arrays.

:class:`Instances` holds N instances as parallel arrays, in the spirit of
supervision's ``Detections`` and detectron2's ``Instances``. The same type holds one
frame's instances (all ``frame`` equal) or a whole video's, flattened (the form the
decision stages work on, so that a threshold change is a few vectorised numpy ops).

Conventions:
    * boxes: (N, 4) float32, xyxy, pixels of the (possibly downscaled) frame.
    * masks: list of N COCO RLE dicts (see :mod:`uvis.masks`), never dense stacks.
    * frame: (N,) int32, 0-based index of the processed frame within the video.
    * objectness: (N,) float32 in [0, 1] (proposer confidence).
    * embeddings: (N, D) float32, L2-normalised, or ``None`` before embedding.
    * derived fields (``None`` until the stage that makes them ran):
        label (N,) int32 index into the vocabulary (-1: none),
        clip_score (N,) float32, best_prompt (N,) int32 index into the prompt list,
        decision (N,) int8 :class:`Reason` codes (``Reason.KEPT`` = kept),
        similarity (N,) float32 the value that decided (objectness, CLIP score or PMF
        similarity; NaN when not applicable), pmf_similarity (N,) float32,
        track_id (N,) int32 (-1: not tracked).
"""
from __future__ import annotations

import enum
from dataclasses import dataclass, field, fields, replace
from typing import Any, Iterable, Sequence

import numpy as np

from uvis.masks import RLE


class Reason(enum.IntEnum):
    """Why an instance was kept or dropped (DESIGN §1.5)."""

    KEPT = 0
    OBJECTNESS = 1
    CLIP_SCORE = 2
    PMF = 3
    USER_REJECT = 4

    @property
    def key(self) -> str:
        """The reason's name as written in exports: kept, objectness, clip_score, pmf, user_reject."""
        return self.name.lower()

    @classmethod
    def from_key(cls, key: str) -> "Reason":
        return cls[key.upper()]

    def words(self, has_text: bool = True) -> str:
        """The reason in the UI's words. Without a text encoder the label score is the
        similarity to the closest example, so ``CLIP_SCORE`` is called that."""
        name, offline, _ = REASON_STYLE[self]
        return name if has_text else offline

    @property
    def rgb(self) -> tuple[int, int, int]:
        """The reason's colour (panels, legend, plots, CSS)."""
        return REASON_STYLE[self][2]

    @property
    def hex(self) -> str:
        return "#%02x%02x%02x" % self.rgb


REASON_STYLE: dict[Reason, tuple[str, str, tuple[int, int, int]]] = {
    # reason: (name with a text encoder, name without one, colour RGB)
    Reason.KEPT: ("kept", "kept", (46, 204, 113)),
    Reason.OBJECTNESS: ("objectness", "objectness", (149, 165, 166)),
    Reason.CLIP_SCORE: ("CLIP score", "similarity to the closest example", (243, 156, 18)),
    Reason.PMF: ("PMF", "PMF", (155, 89, 182)),
    Reason.USER_REJECT: ("user reject", "user reject", (231, 76, 60)),
}
"""The one table of reason names and colours; :func:`reason_css` derives the CSS."""


def reason_css() -> str:
    """CSS classes ``.uv-<key>`` with each reason's background colour."""
    return " ".join(f".uv-{r.key} {{background:{r.hex}}}" for r in Reason)


_ARRAY_FIELDS: dict[str, tuple[Any, int]] = {
    # name: (dtype, ndim)
    "boxes": (np.float32, 2),
    "frame": (np.int32, 1),
    "objectness": (np.float32, 1),
    "embeddings": (np.float32, 2),
    "label": (np.int32, 1),
    "clip_score": (np.float32, 1),
    "best_prompt": (np.int32, 1),
    "decision": (np.int8, 1),
    "similarity": (np.float32, 1),
    "pmf_similarity": (np.float32, 1),
    "track_id": (np.int32, 1),
}


@dataclass
class Instances:
    """N instances as parallel arrays; see the module docstring for fields and shapes.

    Boolean or integer indexing (``inst[mask]``) returns a new :class:`Instances`.
    ``image_size`` is (H, W) of the frame the boxes and masks refer to.
    """

    boxes: np.ndarray
    masks: list[RLE]
    objectness: np.ndarray
    image_size: tuple[int, int]
    frame: np.ndarray | None = None
    embeddings: np.ndarray | None = None
    label: np.ndarray | None = None
    clip_score: np.ndarray | None = None
    best_prompt: np.ndarray | None = None
    decision: np.ndarray | None = None
    similarity: np.ndarray | None = None
    pmf_similarity: np.ndarray | None = None
    track_id: np.ndarray | None = None

    def __post_init__(self) -> None:
        n = len(self.masks)
        self.image_size = (int(self.image_size[0]), int(self.image_size[1]))
        if self.frame is None:
            self.frame = np.zeros(n, dtype=np.int32)
        for name, (dtype, ndim) in _ARRAY_FIELDS.items():
            value = getattr(self, name)
            if value is None:
                continue
            arr = np.asarray(value, dtype=dtype)
            if name == "boxes":
                arr = arr.reshape(-1, 4)
            if name == "embeddings" and arr.ndim == 1 and arr.size == 0:
                arr = arr.reshape(0, 0)
            if arr.ndim != ndim:
                raise ValueError(f"Instances.{name} must be {ndim}-D, got shape {arr.shape}")
            if arr.shape[0] != n:
                raise ValueError(
                    f"Instances.{name} has {arr.shape[0]} rows but there are {n} masks; "
                    "all fields must be parallel arrays"
                )
            setattr(self, name, arr)
        self.masks = list(self.masks)

    def __len__(self) -> int:
        return len(self.masks)

    def __getitem__(self, index: Any) -> "Instances":
        idx = np.asarray(index)
        if idx.dtype == bool:
            if idx.shape != (len(self),):
                raise IndexError(f"boolean index of shape {idx.shape} for {len(self)} instances")
            idx = np.flatnonzero(idx)
        idx = np.atleast_1d(idx).astype(np.int64)
        kwargs: dict[str, Any] = {"masks": [self.masks[i] for i in idx], "image_size": self.image_size}
        for name in _ARRAY_FIELDS:
            value = getattr(self, name)
            kwargs[name] = None if value is None else value[idx]
        return Instances(**kwargs)

    @classmethod
    def empty(cls, image_size: tuple[int, int], embedding_dim: int | None = None) -> "Instances":
        """No instances; ``embeddings`` is (0, D) when ``embedding_dim`` is given."""
        emb = None if embedding_dim is None else np.zeros((0, embedding_dim), dtype=np.float32)
        return cls(
            boxes=np.zeros((0, 4), np.float32), masks=[], objectness=np.zeros(0, np.float32),
            image_size=image_size, embeddings=emb,
        )

    @classmethod
    def concatenate(cls, parts: Sequence["Instances"], image_size: tuple[int, int] | None = None) -> "Instances":
        """Concatenate instances (same image size). A field present in only some parts is dropped."""
        if not parts:
            if image_size is None:
                raise ValueError("concatenate() of no parts needs image_size")
            return cls.empty(image_size)
        size = parts[0].image_size if image_size is None else image_size
        kwargs: dict[str, Any] = {"masks": [m for p in parts for m in p.masks], "image_size": size}
        for name in _ARRAY_FIELDS:
            values = [getattr(p, name) for p in parts]
            if any(v is None for v in values):
                kwargs[name] = None
                continue
            if name == "embeddings":
                dims = {v.shape[1] for v in values if len(v)}
                if len(dims) > 1:
                    raise ValueError(f"cannot concatenate embeddings of dimensions {sorted(dims)}")
                dim = dims.pop() if dims else values[0].shape[1]
                values = [v.reshape(-1, dim) for v in values]
            kwargs[name] = np.concatenate(values, axis=0)
        return cls(**kwargs)

    def with_fields(self, **changes: Any) -> "Instances":
        """A copy with some fields replaced (validated again)."""
        return replace(self, **changes)

    def frame_slices(self, num_frames: int) -> list[slice]:
        """For instances sorted by ``frame``: ``slices[t]`` selects frame t's instances."""
        assert self.frame is not None
        if len(self) and np.any(np.diff(self.frame) < 0):
            raise ValueError("instances are not sorted by frame")
        starts = np.searchsorted(self.frame, np.arange(num_frames + 1), side="left")
        return [slice(int(starts[t]), int(starts[t + 1])) for t in range(num_frames)]

    def field_names(self) -> list[str]:
        """Names of the array fields that are set."""
        return [f.name for f in fields(self) if f.name in _ARRAY_FIELDS and getattr(self, f.name) is not None]


def stack_frames(frames: Iterable[Instances], image_size: tuple[int, int]) -> Instances:
    """Flatten per-frame instances into one video-level :class:`Instances`, frame-sorted."""
    return Instances.concatenate(list(frames), image_size=image_size)


@dataclass(frozen=True)
class VideoInfo:
    """Metadata of one processed video.

    ``height``/``width`` are of the processed (possibly downscaled) frames;
    ``source_indices[t]`` is the index in the source of processed frame t.
    """

    name: str
    path: str
    width: int
    height: int
    num_frames: int
    fps: float
    source_width: int
    source_height: int
    source_indices: tuple[int, ...] = field(default_factory=tuple)
    frame_names: tuple[str, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "path": self.path, "width": self.width, "height": self.height,
            "num_frames": self.num_frames, "fps": self.fps, "source_width": self.source_width,
            "source_height": self.source_height, "source_indices": list(self.source_indices),
            "frame_names": list(self.frame_names),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "VideoInfo":
        return cls(
            name=d["name"], path=d["path"], width=int(d["width"]), height=int(d["height"]),
            num_frames=int(d["num_frames"]), fps=float(d["fps"]),
            source_width=int(d.get("source_width", d["width"])),
            source_height=int(d.get("source_height", d["height"])),
            source_indices=tuple(int(i) for i in d.get("source_indices", [])),
            frame_names=tuple(d.get("frame_names", [])),
        )
