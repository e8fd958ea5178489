"""Training samples for the VIS model: one frame and its instances per sample (MinVIS trains
image-level, ``SAMPLING_FRAME_NUM = 1``).

Sources:

* a workspace (:func:`from_workspace`): the decided pseudo-labels under the config the user
  sees (:meth:`uvis.workspace.Workspace.current_config`), kept instances only, each with its
  track's voted class (:func:`uvis.export._common.export_labels`, the one function the
  exports use). Every processed frame is a sample, frames without kept instances too (they
  teach "no object", as in the reference, which keeps annotated videos' empty frames).
  A class-agnostic workspace (no labelled instance kept, or ``class_agnostic=True``) trains one
  class, ``object``. The frames are written once as JPEG files under the run folder.
* a YouTube-VIS annotation JSON plus its frames folder (:func:`from_ytvis`), through the
  project's parser (:mod:`uvis.eval.ytvis_io`); crowd annotations are skipped.

:class:`TrainSet` is JSON-serialisable (``data.json`` in the run folder), so a resumed run
trains on exactly the data it started with. Augmentation (:class:`FrameDataset`): detectron2
``ResizeShortestEdge`` with the short side drawn from ``min_sizes`` (capped so the long side
is at most ``max_size``; size ``int(x + 0.5)``), then a horizontal flip with probability 0.5;
instances whose mask becomes empty are dropped. The draw depends only on the sample's seed,
so batches are the same with any number of workers and after a resume.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import cv2
import numpy as np
import torch

from uvis.errors import BadInputError
from uvis.masks import RLE, decode

CLASS_AGNOSTIC_NAME = "object"


@dataclass(frozen=True)
class FrameSample:
    """One training frame: ``image`` (a JPEG/PNG path), ``masks`` (COCO RLEs with ``str``
    counts at the image's size) and ``labels`` (0-based class ids, parallel to ``masks``)."""

    image: str
    masks: tuple[RLE, ...]
    labels: tuple[int, ...]
    video: str = ""
    frame: int = 0


@dataclass
class TrainSet:
    """Classes (index = class id) and samples, with where they came from."""

    classes: list[str]
    samples: list[FrameSample]
    source: str = ""
    class_agnostic: bool = False
    notes: list[str] = field(default_factory=list)

    @property
    def num_instances(self) -> int:
        return sum(len(s.labels) for s in self.samples)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["samples"] = [asdict(s) for s in self.samples]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrainSet":
        samples = [FrameSample(image=s["image"], masks=tuple(s["masks"]), labels=tuple(int(x) for x in s["labels"]),
                               video=s.get("video", ""), frame=int(s.get("frame", 0))) for s in d["samples"]]
        return cls(list(d["classes"]), samples, d.get("source", ""), bool(d.get("class_agnostic", False)),
                   list(d.get("notes", [])))

    def save(self, path: str | Path) -> None:
        from uvis.fsutil import atomic_write_json

        atomic_write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | Path) -> "TrainSet":
        try:
            return cls.from_dict(json.loads(Path(path).read_text()))
        except (OSError, ValueError, KeyError) as exc:
            raise BadInputError(f"cannot read the training set {path}: {exc}; delete the run folder to start "
                                "afresh") from exc

    def select_frames(self, max_frames: int | None) -> "TrainSet":
        """The first ``max_frames`` samples with instances (all samples when None)."""
        if max_frames is None:
            return self
        chosen = [s for s in self.samples if s.labels][:max_frames]
        return TrainSet(self.classes, chosen, self.source, self.class_agnostic, self.notes)


def _str_rle(rle: RLE) -> RLE:
    counts = rle["counts"]
    return {"size": [int(rle["size"][0]), int(rle["size"][1])],
            "counts": counts.decode("ascii") if isinstance(counts, bytes) else counts}


def from_workspace(workspace: str | Path, frames_dir: str | Path, *, config_path: str | Path | None = None,
                   class_agnostic: bool | None = None, videos: Sequence[str] | None = None) -> TrainSet:
    """Training samples from a workspace's decided, curated pseudo-labels.

    Args:
        workspace: the workspace folder.
        frames_dir: where the frames are written (``frames_dir/<video>/<t:05d>.jpg``; a
            complete folder is reused).
        config_path: decide with this config instead of the workspace's current one.
        class_agnostic: True: one class ``object``; None: True when no kept instance has a
            label (a class-agnostic workspace).
        videos: only these videos (default all).
    """
    from uvis.export._common import export_labels
    from uvis.export.frames import write_video_frames
    from uvis.pipeline import open_project
    from uvis.workspace import Workspace

    root = Path(workspace)
    if not root.is_dir():
        raise BadInputError(f"workspace not found: {workspace} (label videos first: python -m uvis label VIDEO "
                            f"--workspace {workspace})")
    ws = Workspace(root)
    try:
        config = ws.current_config(config_path)
        results = open_project(ws, videos).decide(config)
    finally:
        ws.close()
    vocab = list(config.labeler.vocabulary)
    per_video = []
    for name, r in results.items():
        kept = np.flatnonzero(r.kept)
        labels = export_labels(r)[kept] if len(kept) else np.zeros(0, np.int32)
        per_video.append((name, r, kept, labels))
    any_labelled = any((lab >= 0).any() for _, _, _, lab in per_video)
    agnostic = (not any_labelled) if class_agnostic is None else class_agnostic
    total_kept = sum(len(k) for _, _, k, _ in per_video)
    if total_kept == 0:
        raise BadInputError(f"workspace {workspace}: no instance is kept under its current config, nothing to "
                            "train on (lower the thresholds, or accept/relabel instances in the app)")
    samples: list[FrameSample] = []
    frames_dir = Path(frames_dir)
    for name, r, kept, labels in per_video:
        folder = frames_dir / name
        if not (folder.is_dir() and len(list(folder.glob("*.jpg"))) == r.info.num_frames):
            write_video_frames(r.info, frames_dir)
        by_frame: dict[int, list[tuple[RLE, int]]] = {}
        for row, lab in zip(kept, labels):
            if lab < 0 and not agnostic:
                continue  # kept without a class (cannot happen with a class vocabulary; be safe)
            by_frame.setdefault(int(r.instances.frame[row]), []).append(
                (_str_rle(r.instances.masks[row]), 0 if agnostic else int(lab)))
        for t in range(r.info.num_frames):
            items = by_frame.get(t, [])
            samples.append(FrameSample(image=str(folder / f"{t:05d}.jpg"), masks=tuple(m for m, _ in items),
                                       labels=tuple(lab for _, lab in items), video=name, frame=t))
    classes = [CLASS_AGNOSTIC_NAME] if agnostic else vocab
    return TrainSet(classes, samples, source=f"workspace {root.resolve()}", class_agnostic=agnostic)


def from_ytvis(annotations: str | Path, frames_root: str | Path) -> TrainSet:
    """Training samples from a YouTube-VIS annotation file; ``file_names`` are relative to
    ``frames_root``. Classes are the file's categories in id order."""
    from uvis.eval.ytvis_io import load_ground_truth

    gt = load_ground_truth(annotations)
    cat_ids = list(gt.categories)
    index = {cid: i for i, cid in enumerate(cat_ids)}
    root = Path(frames_root)
    per_frame: dict[tuple[int, int], list[tuple[RLE, int]]] = {}
    for a in gt.annotations:
        if a.iscrowd:
            continue
        for t, seg in enumerate(a.segmentations):
            if seg is not None:
                per_frame.setdefault((a.video_id, t), []).append((_str_rle(seg), index[a.category_id]))
    samples = []
    for vid, v in gt.videos.items():
        if not v.file_names:
            raise BadInputError(f"{annotations}: video {vid} has no file_names; training needs the frame files")
        first = root / v.file_names[0]
        if not first.is_file():
            raise BadInputError(f"{annotations}: frame {first} not found; pass the folder the file_names are "
                                "relative to as the frames folder")
        for t, fname in enumerate(v.file_names):
            items = per_frame.get((vid, t), [])
            samples.append(FrameSample(image=str(root / fname), masks=tuple(m for m, _ in items),
                                       labels=tuple(lab for _, lab in items), video=str(vid), frame=t))
    return TrainSet([gt.categories[c] for c in cat_ids], samples, source=f"youtube-vis {annotations}")


# --------------------------------------------------------------------------- augmentation
def shortest_edge_size(h: int, w: int, short: int, max_size: int) -> tuple[int, int]:
    """detectron2 ``ResizeShortestEdge.get_output_shape``: (new_h, new_w)."""
    scale = short / min(h, w)
    nh, nw = (short, scale * w) if h < w else (scale * h, short)
    if max(nh, nw) > max_size:
        s = max_size / max(nh, nw)
        nh, nw = nh * s, nw * s
    return int(nh + 0.5), int(nw + 0.5)


@dataclass(frozen=True)
class Augment:
    """Training augmentation: random short side from ``min_sizes`` (long side <= ``max_size``),
    horizontal flip with probability ``flip_prob``."""

    min_sizes: tuple[int, ...] = (360, 480)
    max_size: int = 1333
    flip_prob: float = 0.5

    def __call__(self, image: np.ndarray, masks: np.ndarray, rng: np.random.Generator
                 ) -> tuple[np.ndarray, np.ndarray]:
        """(H, W, 3) uint8 RGB and (N, H, W) uint8 -> resized (and maybe flipped) copies."""
        short = int(self.min_sizes[int(rng.integers(len(self.min_sizes)))])
        flip = bool(rng.random() < self.flip_prob)
        h, w = image.shape[:2]
        nh, nw = shortest_edge_size(h, w, short, self.max_size)
        image = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_LINEAR)
        if len(masks):
            masks = np.stack([cv2.resize(m, (nw, nh), interpolation=cv2.INTER_NEAREST) for m in masks])
        else:
            masks = np.zeros((0, nh, nw), np.uint8)
        if flip:
            image, masks = image[:, ::-1], masks[:, :, ::-1]
        return np.ascontiguousarray(image), np.ascontiguousarray(masks)


def read_rgb(path: str) -> np.ndarray:
    bgr = cv2.imread(path, cv2.IMREAD_COLOR)
    if bgr is None:
        raise BadInputError(f"cannot read training frame {path} (missing or not an image)")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


class FrameDataset(torch.utils.data.Dataset):
    """Map-style dataset indexed by ``(sample index, seed)`` pairs (see :class:`IterationSampler`).

    Returns a dict: ``image`` (h, w, 3) uint8 RGB array, ``masks`` (N, h, w) uint8,
    ``labels`` (N,) int64, ``index`` (the sample index).
    """

    def __init__(self, train_set: TrainSet, augment: Augment) -> None:
        self.samples = train_set.samples
        self.augment = augment

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, key: tuple[int, int]) -> dict[str, Any]:
        index, seed = key
        s = self.samples[index]
        image = read_rgb(s.image)
        h, w = image.shape[:2]
        masks = np.zeros((len(s.masks), h, w), np.uint8)
        for i, rle in enumerate(s.masks):
            m = decode(rle)
            if m.shape != (h, w):
                raise BadInputError(f"training frame {s.image}: mask {i} is {m.shape[1]}x{m.shape[0]} but the frame "
                                    f"is {w}x{h}")
            masks[i] = m
        image, masks = self.augment(image, masks, np.random.default_rng(seed))
        labels = np.asarray(s.labels, np.int64)
        keep = masks.reshape(len(masks), -1).any(1) if len(masks) else np.zeros(0, bool)
        return {"image": image,
                "masks": torch.from_numpy(masks[keep]), "labels": torch.from_numpy(labels[keep]), "index": index}


class IterationSampler(torch.utils.data.Sampler):
    """Batches of ``(sample index, augmentation seed)`` for iterations ``start .. end-1``.

    The global batch of iteration ``i`` is positions ``i*B .. (i+1)*B-1`` of an endless
    stream of per-epoch permutations (epoch ``e`` shuffled by ``default_rng([seed, e])``);
    rank ``r`` of ``world`` takes every ``world``-th position from ``r`` (``B`` must be a
    multiple of ``world``). The augmentation seed of a position is ``[seed, i, slot]``.
    Deterministic: a resumed run (``start`` = the checkpoint's iteration) sees the batches
    an uninterrupted run would have seen.
    """

    def __init__(self, num_samples: int, batch_size: int, seed: int, start: int, end: int, rank: int = 0,
                 world: int = 1) -> None:
        if num_samples < 1:
            raise BadInputError("the training set is empty")
        if batch_size % world:
            raise BadInputError(f"batch size {batch_size} is not a multiple of the {world} processes")
        self.n, self.batch, self.seed = num_samples, batch_size, seed
        self.start, self.end, self.rank, self.world = start, end, rank, world

    def __len__(self) -> int:
        return max(0, self.end - self.start)

    def _perm(self, epoch: int) -> np.ndarray:
        return np.random.default_rng([self.seed, epoch]).permutation(self.n)

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        cache: dict[int, np.ndarray] = {}
        for it in range(self.start, self.end):
            out = []
            for slot in range(self.rank, self.batch, self.world):
                pos = it * self.batch + slot
                epoch = pos // self.n
                if epoch not in cache:
                    cache = {epoch: self._perm(epoch)}
                seed = int(np.random.default_rng([self.seed, it, slot]).integers(2 ** 62))
                out.append((int(cache[epoch][pos % self.n]), seed))
            yield out


def collate(batch: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Keep the samples as a list (images differ in size; the trainer pads them)."""
    return batch
