"""The pipeline's ``cutler`` proposer: CutLER run by this package's PyTorch port."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from uvis import weights as weights_mod
from uvis.errors import BadInputError
from uvis.proposers.cutler.checkpoint import load_checkpoint_file, load_cutler
from uvis.proposers.cutler.config import CutlerConfig
from uvis.proposers.cutler.model import check_frame
from uvis.types import Instances


class CutlerProposer:
    """Class-agnostic instance proposals from CutLER's (Cascade) Mask R-CNN.

    Args:
        weights: a registry name (``"cutler_cascade_final"``, ``"cutler_mrcnn_final"``)
            or a local ``.pth`` path (detectron2 keys, optionally wrapped in ``"model"``).
            Registry weights are downloaded into the cache on first use
            (see :mod:`uvis.weights`).
        min_size: ResizeShortestEdge short side, 32..4096 (800 as CutLER; 480 is ~2.5x
            faster on CPU).
        max_size: cap of the long side after resizing (1333).
        score_threshold: the proposer's internal minimum objectness in [0, 1): detections
            with score <= it are dropped before NMS (0.0 keeps all 100; the pipeline
            applies its own objectness threshold later).
        device: torch device (``"cpu"``, ``"cuda"``, ``"cuda:1"``...).
        batch_size: frames per forward pass in :meth:`propose_batch` (>= 1).
        nms_threshold: IoU of the final NMS (0.5 as CutLER).
        max_per_frame: detections kept per frame (100 as CutLER).

    ``name`` identifies the weights file (name and SHA-256 prefix) and every setting that
    changes the output, so it serves as a cache key. Boxes are xyxy pixels of the frame
    given to :meth:`propose`, masks RLE at its (H, W), objectness in [0, 1].
    """

    context_frames: int = 0

    def __init__(
        self, weights: str | Path, *, min_size: int = 800, max_size: int = 1333, score_threshold: float = 0.0,
        device: str = "cpu", batch_size: int = 1, nms_threshold: float = 0.5, max_per_frame: int = 100,
    ):
        if not 32 <= int(min_size) <= 4096 or int(max_size) < int(min_size):
            raise BadInputError(
                f"CutLER min_size must be in 32..4096 and max_size >= min_size, got {min_size}/{max_size}"
            )
        if not 0.0 <= float(score_threshold) < 1.0:
            raise BadInputError(f"CutLER score_threshold must be in [0, 1), got {score_threshold}")
        if int(batch_size) < 1:
            raise BadInputError(f"batch_size must be >= 1, got {batch_size}")
        path, digest = weights_mod.resolve_with_digest(weights)
        config = replace(CutlerConfig(), test_nms_thresh=float(nms_threshold), detections_per_image=int(max_per_frame))
        self.model = load_cutler(
            load_checkpoint_file(path), min_size=int(min_size), max_size=int(max_size), device=device, config=config,
        )
        self.weights_path = path
        self.weights_sha256 = digest
        self.min_size = int(min_size)
        self.max_size = int(max_size)
        self.score_threshold = float(score_threshold)
        self.batch_size = int(batch_size)
        extras = ""
        if nms_threshold != 0.5 or max_per_frame != 100:
            extras = f",nms{float(nms_threshold):g},top{int(max_per_frame)}"
        self.name = (
            f"cutler[{path.name}@{digest[:12]},{self.model.config.num_stages}stage,"
            f"min{self.min_size},max{self.max_size},thr{self.score_threshold:g}{extras}]"
        )

    def reset(self) -> None:
        """Nothing to reset: CutLER looks at one frame at a time."""

    def propose(self, frame: np.ndarray, t: int) -> Instances:
        """Instances of frame ``t`` (RGB uint8 (H, W, 3)); ``frame`` field set to ``t``."""
        return self.propose_batch([frame], t)[0]

    def propose_batch(self, frames: Sequence[np.ndarray], start_t: int) -> list[Instances]:
        """:meth:`propose` for consecutive frames ``start_t, start_t + 1, ...``,
        ``batch_size`` frames per forward pass."""
        out: list[Instances] = []
        for frame in frames:
            check_frame(frame)
        for start in range(0, len(frames), self.batch_size):
            chunk = list(frames[start:start + self.batch_size])
            with torch.inference_mode():
                results = self.model.detect_batch(chunk, score_threshold=self.score_threshold)
            for offset, inst in enumerate(results):
                t = start_t + start + offset
                inst.frame = np.full(len(inst), t, dtype=np.int32)
                out.append(inst)
        return out
