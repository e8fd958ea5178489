"""The CutLER network: backbone + RPN + (cascade) ROI heads + mask head, inference only.

Typical use goes through :func:`uvis.proposers.cutler.load_cutler`, which builds a
:class:`CutlerNet` from a detectron2-format state dict. :meth:`CutlerNet.detect` takes
one RGB uint8 (H, W, 3) frame and returns :class:`uvis.types.Instances`;
:meth:`CutlerNet.detect_batch` does the same for several frames in one forward pass.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from torch import nn

from uvis.errors import BadInputError
from uvis.proposers.cutler.backbone import Backbone
from uvis.proposers.cutler.config import CutlerConfig
from uvis.proposers.cutler.layers import ConvBN
from uvis.proposers.cutler.postprocess import detections_to_instances, resize_shortest_edge
from uvis.proposers.cutler.roi_heads import ROIHeads, roi_align_threads
from uvis.proposers.cutler.rpn import RPN
from uvis.types import Instances


@dataclass
class RawDetections:
    """One image's network outputs in input (resized, unpadded) pixels.

    Attributes:
        image_size: (h, w) of the network input.
        proposal_boxes: (R, 4) float32 xyxy RPN proposals, best first.
        proposal_logits: (R,) float32 their objectness logits.
        boxes: (N, 4) float32 xyxy final detections, best first.
        scores: (N,) float32 mean foreground probability over the stages.
        mask_probs: (N, 1, 28, 28) float32 mask probabilities.
    """

    image_size: tuple[int, int]
    proposal_boxes: torch.Tensor
    proposal_logits: torch.Tensor
    boxes: torch.Tensor
    scores: torch.Tensor
    mask_probs: torch.Tensor


def check_frame(image: np.ndarray) -> np.ndarray:
    """Validate an RGB uint8 (H, W, 3) frame; raise :class:`BadInputError` otherwise."""
    if not isinstance(image, np.ndarray):
        raise BadInputError(f"CutLER expects a numpy RGB uint8 (H, W, 3) array, got {type(image).__name__}")
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise BadInputError(f"CutLER expects an RGB uint8 (H, W, 3) array, got {image.dtype} {image.shape}")
    if image.shape[0] < 1 or image.shape[1] < 1:
        raise BadInputError(f"CutLER got an empty frame of shape {image.shape}")
    return image


class CutlerNet(nn.Module):
    """Class-agnostic (Cascade) Mask R-CNN R50-FPN.

    Args:
        config: architecture and inference settings (:class:`CutlerConfig`).
        min_size: ResizeShortestEdge short side used when ``resize=True`` (800).
        max_size: cap of the long side after resizing (1333).

    Module names differ from detectron2's; :mod:`uvis.proposers.cutler.checkpoint` maps
    detectron2 keys onto them.
    """

    def __init__(self, config: CutlerConfig | None = None, *, min_size: int = 800, max_size: int = 1333):
        super().__init__()
        self.config = config or CutlerConfig()
        self.min_size = int(min_size)
        self.max_size = int(max_size)
        self.backbone = Backbone()
        self.rpn = RPN(self.config)
        self.roi_heads = ROIHeads(self.config)
        self.register_buffer("pixel_mean", torch.tensor(self.config.pixel_mean).view(3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(self.config.pixel_std).view(3, 1, 1), persistent=False)
        self.channels_last = False

    @property
    def device(self) -> torch.device:
        return self.pixel_mean.device

    # ------------------------------------------------------------------ set-up

    def fuse_bn(self) -> "CutlerNet":
        """Fold every batch norm into its convolution (call after loading weights)."""
        for module in self.modules():
            if isinstance(module, ConvBN):
                module.fuse()
        return self

    def use_channels_last(self, enabled: bool = True) -> "CutlerNet":
        """Run the convolutions (backbone, RPN, mask head) in channels-last memory format
        (faster with oneDNN on CPU)."""
        fmt = torch.channels_last if enabled else torch.contiguous_format
        self.backbone.to(memory_format=fmt)
        self.rpn.to(memory_format=fmt)
        self.roi_heads.mask_head.to(memory_format=fmt)
        self.roi_heads.mask_head.channels_last = enabled
        self.channels_last = enabled
        return self

    # ------------------------------------------------------------------ stages

    def preprocess(self, images: Sequence[torch.Tensor]) -> tuple[torch.Tensor, list[tuple[int, int]]]:
        """Normalise and batch (3, h, w) RGB images (uint8, or float in 0..255).

        Returns:
            (N, 3, Hp, Wp) float32, zero-padded bottom/right after normalisation to a
            multiple of 32, and the N unpadded (h, w).
        """
        sizes = [(int(im.shape[-2]), int(im.shape[-1])) for im in images]
        div = self.config.size_divisibility
        max_h = -(-max(h for h, _ in sizes) // div) * div
        max_w = -(-max(w for _, w in sizes) // div) * div
        batch = torch.zeros((len(images), 3, max_h, max_w), dtype=torch.float32, device=self.device)
        for i, im in enumerate(images):
            h, w = sizes[i]
            batch[i, :, :h, :w] = (im.to(self.device, torch.float32) - self.pixel_mean) / self.pixel_std
        return batch, sizes

    def features(self, batch: torch.Tensor) -> list[torch.Tensor]:
        """FPN maps [p2, p3, p4, p5, p6] of a preprocessed batch, each (N, 256, H/s, W/s)
        (channels-last memory format when :meth:`use_channels_last` is on)."""
        if self.channels_last:
            batch = batch.contiguous(memory_format=torch.channels_last)
        return self.backbone(batch)

    def forward_raw(self, images: Sequence[torch.Tensor], score_threshold: float = 0.0) -> list[RawDetections]:
        """Run the whole network on (3, h, w) RGB images (uint8 or float 0..255, any sizes).

        ``score_threshold``: detections with score <= this are dropped before NMS (0.0
        keeps all, as CutLER's demo configuration).
        """
        batch, sizes = self.preprocess(images)
        feats = self.features(batch)
        proposals = self.rpn(feats, sizes)
        pooled = [f.contiguous() for f in feats[:4]]  # ROIAlign reads NCHW
        with roi_align_threads(self.device) as executor:
            dets = self.roi_heads.detect(pooled, [p.boxes for p in proposals], sizes, score_threshold, executor)
            masks = self.roi_heads.predict_masks(pooled, [d.boxes for d in dets], executor)
        return [
            RawDetections(
                image_size=hw, proposal_boxes=p.boxes, proposal_logits=p.logits,
                boxes=d.boxes, scores=d.scores, mask_probs=m,
            )
            for hw, p, d, m in zip(sizes, proposals, dets, masks)
        ]

    def forward(self, images: Sequence[torch.Tensor], score_threshold: float = 0.0) -> list[RawDetections]:
        return self.forward_raw(images, score_threshold)

    # ------------------------------------------------------------------ public entry points

    def detect(
        self, image: np.ndarray, *, output_hw: tuple[int, int] | None = None, resize: bool = True,
        score_threshold: float = 0.7,
    ) -> Instances:
        """Instances of one frame.

        Args:
            image: RGB uint8 (H, W, 3).
            output_hw: (H', W') of the returned boxes and masks; default the image's (H, W).
            resize: apply ResizeShortestEdge(``min_size``, ``max_size``) first; with False
                the image is fed as given.
            score_threshold: keep detections with objectness > this.
        Returns:
            :class:`Instances`: boxes (N, 4) float32 xyxy in ``output_hw`` pixels, N RLE
            masks at ``output_hw``, objectness (N,) best first, N <= 100.
        """
        return self.detect_batch([image], output_hws=None if output_hw is None else [output_hw],
                                 resize=resize, score_threshold=score_threshold)[0]

    def detect_batch(
        self, images: Sequence[np.ndarray], *, output_hws: Sequence[tuple[int, int]] | None = None,
        resize: bool = True, score_threshold: float = 0.7,
    ) -> list[Instances]:
        """:meth:`detect` for several frames in one forward pass (padded to a common size)."""
        if output_hws is not None and len(output_hws) != len(images):
            raise BadInputError(f"{len(output_hws)} output sizes for {len(images)} images")
        if not images:
            return []
        tensors, out_sizes = [], []
        for i, image in enumerate(images):
            check_frame(image)
            out_sizes.append(tuple(output_hws[i]) if output_hws is not None else image.shape[:2])
            net_in = resize_shortest_edge(image, self.min_size, self.max_size) if resize else image
            arr = np.ascontiguousarray(net_in)
            tensors.append(torch.from_numpy(arr if arr.flags.writeable else arr.copy()).permute(2, 0, 1))
        with torch.inference_mode():
            raw = self.forward_raw(tensors, score_threshold)
            return [
                detections_to_instances(r.boxes, r.scores, r.mask_probs, r.image_size, hw, self.config.mask_threshold)
                for r, hw in zip(raw, out_sizes)
            ]


def random_init_(model: CutlerNet, seed: int = 0) -> CutlerNet:
    """Random weights with sane activations (for benchmarks and smoke tests only).

    Weights ~ N(0, 1/fan_in) (predictors scaled like trained ones), biases small, batch
    norms near identity with the last BN of each bottleneck at 0.2 so residual sums stay
    bounded through the 16 blocks; scores come out spread around 0.5.
    """
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() > 1:
                scale = 0.05 if ("bbox_pred" in name or "rpn.deltas" in name) else 4.0 if "cls_score" in name else 1.0
                p.copy_(torch.randn(p.shape, generator=gen) * scale * (1.0 / p[0].numel()) ** 0.5)
            elif name.endswith("bn.weight"):
                p.fill_(0.2 if "conv3.bn" in name else 1.0)
            else:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.05)
    return model
