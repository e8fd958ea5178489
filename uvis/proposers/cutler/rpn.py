"""Region proposal network (detectron2 ``StandardRPNHead`` + ``find_top_rpn_proposals``).

Per FPN level: a shared 3x3 conv + ReLU, a 1x1 objectness conv (A logits per position) and
a 1x1 delta conv (4A). Inference keeps the top ``pre_nms_topk`` logits per level, decodes
only those anchors, clips to the image, drops empty boxes, runs NMS per level (batched
NMS with the level as the category) and keeps the ``post_nms_topk`` best.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import batched_nms

from uvis.proposers.cutler.backbone import FPN_STRIDES
from uvis.proposers.cutler.config import CutlerConfig
from uvis.proposers.cutler.layers import cell_anchors, clip_boxes, decode_boxes, grid_anchors, nonempty

RPN_BBOX_REG_WEIGHTS: tuple[float, float, float, float] = (1.0, 1.0, 1.0, 1.0)


@dataclass
class Proposals:
    """One image's RPN output.

    Attributes:
        boxes: (R, 4) float32 xyxy in input pixels, R <= post_nms_topk, best first.
        logits: (R,) float32 objectness logits.
    """

    boxes: torch.Tensor
    logits: torch.Tensor


class RPN(nn.Module):
    """RPN head and proposal selection for the five FPN levels p2..p6."""

    def __init__(self, config: CutlerConfig, channels: int = 256):
        super().__init__()
        self.config = config
        num_anchors = len(config.anchor_ratios)
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)
        self.objectness = nn.Conv2d(channels, num_anchors, 1)
        self.deltas = nn.Conv2d(channels, num_anchors * 4, 1)
        for i, size in enumerate(config.anchor_sizes):
            self.register_buffer(f"cell_anchors_{i}", cell_anchors(size, config.anchor_ratios), persistent=False)
        self._anchor_cache: dict[tuple[int, int, int, str], torch.Tensor] = {}

    def anchors(self, level: int, grid_hw: tuple[int, int]) -> torch.Tensor:
        """(H * W * A, 4) anchors of ``level`` (0 = p2) for a grid of ``grid_hw``; memoised per instance."""
        cell: torch.Tensor = getattr(self, f"cell_anchors_{level}")
        key = (level, grid_hw[0], grid_hw[1], str(cell.device))
        cached = self._anchor_cache.get(key)
        if cached is None:
            if len(self._anchor_cache) > 64:
                self._anchor_cache.clear()
            cached = grid_anchors(cell, FPN_STRIDES[level], grid_hw, self.config.anchor_offset)
            self._anchor_cache[key] = cached
        return cached

    def head(self, features: list[torch.Tensor]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Raw predictions per level: logits (N, H*W*A) and deltas (N, H*W*A, 4), ordered (y, x, a)."""
        logits, deltas = [], []
        num_anchors = len(self.config.anchor_ratios)
        for x in features:
            t = F.relu_(self.conv(x))
            n, _, h, w = t.shape
            logits.append(self.objectness(t).permute(0, 2, 3, 1).reshape(n, -1))
            d = self.deltas(t).view(n, num_anchors, 4, h, w).permute(0, 3, 4, 1, 2)
            deltas.append(d.reshape(n, -1, 4))
        return logits, deltas

    def forward(self, features: list[torch.Tensor], image_sizes: list[tuple[int, int]]) -> list[Proposals]:
        """Proposals per image.

        Args:
            features: [p2..p6], each (N, C, Hl, Wl).
            image_sizes: N (h, w) unpadded input sizes (boxes are clipped to them).
        """
        logits, deltas = self.head(features)
        grids = [(f.shape[-2], f.shape[-1]) for f in features]
        return [
            self._select(
                [lg[i] for lg in logits], [dl[i] for dl in deltas], grids, image_sizes[i]
            )
            for i in range(len(image_sizes))
        ]

    def _select(
        self, logits: list[torch.Tensor], deltas: list[torch.Tensor], grids: list[tuple[int, int]],
        image_hw: tuple[int, int],
    ) -> Proposals:
        cfg = self.config
        boxes_l, scores_l, levels_l = [], [], []
        for level, (lg, dl, grid) in enumerate(zip(logits, deltas, grids)):
            k = min(cfg.rpn_pre_nms_topk, lg.shape[0])
            scores, idx = lg.topk(k, sorted=True)
            anchors = self.anchors(level, grid)
            boxes_l.append(decode_boxes(dl[idx], anchors[idx], RPN_BBOX_REG_WEIGHTS, cfg.scale_clamp))
            scores_l.append(scores)
            levels_l.append(torch.full((k,), level, dtype=torch.int64, device=lg.device))
        boxes = torch.cat(boxes_l)
        scores = torch.cat(scores_l)
        levels = torch.cat(levels_l)
        valid = torch.isfinite(boxes).all(dim=1) & torch.isfinite(scores)
        if not bool(valid.all()):
            boxes, scores, levels = boxes[valid], scores[valid], levels[valid]
        boxes = clip_boxes(boxes, image_hw)
        keep = nonempty(boxes, cfg.rpn_min_box_size)
        if not bool(keep.all()):
            boxes, scores, levels = boxes[keep], scores[keep], levels[keep]
        keep = batched_nms(boxes, scores, levels, cfg.rpn_nms_thresh)[: cfg.rpn_post_nms_topk]
        return Proposals(boxes=boxes[keep], logits=scores[keep])
