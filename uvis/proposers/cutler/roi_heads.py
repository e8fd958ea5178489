"""ROI heads: multi-level ROIAlign pooler, (cascade) box heads and the mask head.

Inference semantics follow detectron2's ``CascadeROIHeads`` / CutLER's
``CustomCascadeROIHeads`` (and ``StandardROIHeads`` for one stage):

* stage k > 0 pools the previous stage's regressed boxes, clipped to the image (no box is
  dropped, so the stages' scores stay aligned);
* a box head is flatten -> fc1 (12544 -> 1024) -> ReLU -> fc2 -> ReLU; its predictor gives
  2 logits (foreground, background) and 4 class-agnostic deltas;
* the score is the mean over stages of the softmax foreground probability; the boxes are
  the last stage's regression of its own input boxes;
* ``fast_rcnn_inference``: clip, keep score > threshold, NMS, top-k;
* the mask head pools 14x14 at the final boxes: 4 x (3x3 conv + ReLU), 2x2/2 deconv +
  ReLU, 1x1 conv to one channel, sigmoid -> (N, 1, 28, 28).
"""
from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import Executor, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import nms, roi_align

from uvis.proposers.cutler.config import CutlerConfig
from uvis.proposers.cutler.layers import clip_boxes, decode_boxes

POOLER_STRIDES: tuple[int, ...] = (4, 8, 16, 32)
"""Strides of the pooled levels p2..p5."""


@contextmanager
def roi_align_threads(device: torch.device) -> Iterator[Executor | None]:
    """A thread pool (one thread per torch thread) for :func:`pool` on CPU, else None.

    torchvision's CPU ROIAlign runs on one core and releases the GIL, so pooling the
    ROIs of a level in chunks on several threads uses all cores.
    """
    threads = torch.get_num_threads()
    if threads < 2 or device.type != "cpu":
        yield None
        return
    with ThreadPoolExecutor(threads, thread_name_prefix="uvis-roialign") as executor:
        yield executor


def boxes_to_rois(boxes: list[torch.Tensor]) -> torch.Tensor:
    """Per-image (Ri, 4) boxes -> (sum Ri, 5) rows ``[image_index, x1, y1, x2, y2]``."""
    rois = []
    for i, b in enumerate(boxes):
        rois.append(torch.cat((torch.full((b.shape[0], 1), float(i), dtype=b.dtype, device=b.device), b), dim=1))
    return torch.cat(rois) if rois else torch.zeros((0, 5))


def assign_levels(rois: torch.Tensor, canonical_box_size: int, canonical_level: int) -> torch.Tensor:
    """(M,) int64 index into p2..p5 of each ROI: floor(4 + log2(sqrt(area) / 224)), clamped."""
    b = rois[:, 1:]
    sizes = torch.sqrt((b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]))
    levels = torch.floor(canonical_level + torch.log2(sizes / canonical_box_size + 1e-8))
    min_level, max_level = 2, 1 + len(POOLER_STRIDES)
    return torch.clamp(levels, min=min_level, max=max_level).to(torch.int64) - min_level


def pool(
    features: list[torch.Tensor], rois: torch.Tensor, resolution: int, config: CutlerConfig,
    executor: Executor | None = None,
) -> torch.Tensor:
    """ROIAlign (aligned=True, adaptive sampling) of each ROI on its FPN level.

    Args:
        features: [p2, p3, p4, p5], each (N, C, Hl, Wl), contiguous.
        rois: (M, 5) from :func:`boxes_to_rois`, input pixels.
        resolution: output side (7 for boxes, 14 for masks).
        executor: when given, each level's ROIs are split into chunks pooled in its
            threads (torchvision's CPU ROIAlign is single-threaded and releases the GIL).
    Returns:
        (M, C, resolution, resolution) float32.
    """
    channels = features[0].shape[1]
    if rois.shape[0] == 0:
        return features[0].new_zeros((0, channels, resolution, resolution))
    levels = assign_levels(rois, config.canonical_box_size, config.canonical_level)
    jobs: list[tuple[torch.Tensor, torch.Tensor, float, torch.Tensor]] = []
    workers = 1 if executor is None else max(1, torch.get_num_threads())
    for level, (feat, stride) in enumerate(zip(features, POOLER_STRIDES)):
        inds = torch.nonzero(levels == level).squeeze(1)
        if inds.numel() == 0:
            continue
        for chunk in inds.chunk(workers if inds.numel() >= 8 * workers else 1):
            jobs.append((feat, rois[chunk], 1.0 / stride, chunk))

    def run(job: tuple[torch.Tensor, torch.Tensor, float, torch.Tensor]) -> torch.Tensor:
        feat, level_rois, scale, _ = job
        with torch.inference_mode():  # grad mode is per thread
            return roi_align(feat, level_rois, resolution, spatial_scale=scale, sampling_ratio=0, aligned=True)

    results = list(executor.map(run, jobs)) if executor is not None and len(jobs) > 1 else [run(j) for j in jobs]
    # every ROI has exactly one level, so the output is fully written
    out = features[0].new_empty((rois.shape[0], channels, resolution, resolution))
    for (_, _, _, chunk), res in zip(jobs, results):
        out[chunk] = res
    return out


class BoxHead(nn.Module):
    """One stage: two FCs and the class-agnostic predictor.

    ``forward``: (M, 256, 7, 7) -> (logits (M, 2), deltas (M, 4)).
    """

    def __init__(self, in_features: int = 256 * 7 * 7, hidden: int = 1024, num_classes: int = 1):
        super().__init__()
        self.fc1 = nn.Linear(in_features, hidden)
        self.fc2 = nn.Linear(hidden, hidden)
        self.cls_score = nn.Linear(hidden, num_classes + 1)
        self.bbox_pred = nn.Linear(hidden, 4)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = F.relu_(self.fc1(torch.flatten(x, 1)))
        x = F.relu_(self.fc2(x))
        return self.cls_score(x), self.bbox_pred(x)


class MaskHead(nn.Module):
    """``MaskRCNNConvUpsampleHead`` with one class: (M, 256, 14, 14) -> logits (M, 1, 28, 28)."""

    def __init__(self, channels: int = 256, num_convs: int = 4):
        super().__init__()
        self.convs = nn.ModuleList(nn.Conv2d(channels, channels, 3, padding=1) for _ in range(num_convs))
        self.deconv = nn.ConvTranspose2d(channels, channels, 2, stride=2)
        self.predictor = nn.Conv2d(channels, 1, 1)
        self.channels_last = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        for conv in self.convs:
            x = F.relu_(conv(x))
        x = F.relu_(self.deconv(x))
        return self.predictor(x)


@dataclass
class BoxDetections:
    """One image's detections before the mask head.

    Attributes:
        boxes: (N, 4) float32 xyxy input pixels, clipped, best first, N <= top-k.
        scores: (N,) float32, mean foreground probability over the stages.
    """

    boxes: torch.Tensor
    scores: torch.Tensor


class ROIHeads(nn.Module):
    """Cascade (or single-stage) box heads plus the mask head."""

    def __init__(self, config: CutlerConfig):
        super().__init__()
        self.config = config
        self.box_heads = nn.ModuleList(BoxHead() for _ in range(config.num_stages))
        self.mask_head = MaskHead()

    def detect(
        self, features: list[torch.Tensor], proposals: list[torch.Tensor], image_sizes: list[tuple[int, int]],
        score_threshold: float, executor: Executor | None = None,
    ) -> list[BoxDetections]:
        """Box detections per image from the proposal boxes.

        Args:
            features: [p2..p5].
            proposals: per image (Ri, 4) proposal boxes.
            image_sizes: per image unpadded (h, w).
            score_threshold: keep detections with score > this (before NMS).
            executor: threads for ROIAlign (see :func:`roi_align_threads`).
        """
        cfg = self.config
        counts = [p.shape[0] for p in proposals]
        boxes = proposals
        probs_sum: torch.Tensor | None = None
        for stage, head in enumerate(self.box_heads):
            if stage > 0:
                boxes = [clip_boxes(b, hw) for b, hw in zip(boxes, image_sizes)]
            rois = boxes_to_rois(boxes)
            logits, deltas = head(pool(features, rois, cfg.box_pooler_resolution, cfg, executor))
            probs = F.softmax(logits, dim=-1)
            probs_sum = probs if probs_sum is None else probs_sum + probs
            decoded = decode_boxes(deltas, rois[:, 1:], cfg.bbox_reg_weights[stage], cfg.scale_clamp)
            boxes = list(decoded.split(counts))
        assert probs_sum is not None
        scores = (probs_sum * (1.0 / cfg.num_stages)).split(counts)
        return [
            self._inference_single(b, s, hw, score_threshold) for b, s, hw in zip(boxes, scores, image_sizes)
        ]

    def _inference_single(
        self, boxes: torch.Tensor, scores: torch.Tensor, image_hw: tuple[int, int], score_threshold: float
    ) -> BoxDetections:
        """detectron2 ``fast_rcnn_inference_single_image`` for one foreground class."""
        cfg = self.config
        valid = torch.isfinite(boxes).all(dim=1) & torch.isfinite(scores).all(dim=1)
        if not bool(valid.all()):
            boxes, scores = boxes[valid], scores[valid]
        fg = scores[:, 0]
        boxes = clip_boxes(boxes, image_hw)
        keep = fg > score_threshold
        boxes, fg = boxes[keep], fg[keep]
        keep = nms(boxes, fg, cfg.test_nms_thresh)[: cfg.detections_per_image]
        return BoxDetections(boxes=boxes[keep], scores=fg[keep])

    def predict_masks(
        self, features: list[torch.Tensor], boxes: list[torch.Tensor], executor: Executor | None = None
    ) -> list[torch.Tensor]:
        """Mask probabilities per image, each (Ni, 1, 28, 28) float32 in [0, 1]."""
        counts = [b.shape[0] for b in boxes]
        side = 2 * self.config.mask_pooler_resolution
        if sum(counts) == 0:
            return [b.new_zeros((0, 1, side, side)) for b in boxes]
        feats = pool(features, boxes_to_rois(boxes), self.config.mask_pooler_resolution, self.config, executor)
        return list(self.mask_head(feats).sigmoid().split(counts))
