"""Architecture and inference constants of CutLER's class-agnostic (Cascade) Mask R-CNN.

Every number here is detectron2's / CutLER's inference setting for
``CutLER-ImageNet/cascade_mask_rcnn_R_50_FPN.yaml`` (and ``mask_rcnn_R_50_FPN.yaml`` for
the one-stage variant). One frozen dataclass holds them so that the network modules take
their settings from one place and nothing is global or mutable.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

CASCADE_BBOX_REG_WEIGHTS: tuple[tuple[float, float, float, float], ...] = (
    (10.0, 10.0, 5.0, 5.0),
    (20.0, 20.0, 10.0, 10.0),
    (30.0, 30.0, 15.0, 15.0),
)
"""Box2BoxTransform weights (wx, wy, ww, wh) of the three cascade stages."""

MRCNN_BBOX_REG_WEIGHTS: tuple[tuple[float, float, float, float], ...] = ((10.0, 10.0, 5.0, 5.0),)
"""Box2BoxTransform weights of the single box head of plain Mask R-CNN."""


@dataclass(frozen=True)
class CutlerConfig:
    """Settings of the network (inference only).

    Attributes:
        num_stages: box-head stages; 3 = Cascade Mask R-CNN (``cutler_cascade_final``),
            1 = Mask R-CNN (``cutler_mrcnn_final``).
        bbox_reg_weights: one (wx, wy, ww, wh) per stage.
        pixel_mean, pixel_std: RGB normalisation of 0..255 inputs.
        size_divisibility: the padded input is a multiple of this (bottom/right zeros).
        anchor_sizes: one anchor size (pixels) per FPN level p2..p6.
        anchor_ratios: anchor aspect ratios h/w, the same at every level.
        anchor_offset: grid offset of anchor centres in units of the stride (0.0).
        rpn_pre_nms_topk: proposals kept per level before NMS (test).
        rpn_post_nms_topk: proposals kept per image after NMS (test).
        rpn_nms_thresh: IoU of the RPN's per-level NMS.
        rpn_min_box_size: proposals with width or height <= this are dropped.
        box_pooler_resolution, mask_pooler_resolution: ROIAlign output sizes.
        canonical_box_size, canonical_level: ROI-to-FPN-level assignment (224, 4).
        test_nms_thresh: IoU of the final NMS.
        detections_per_image: the final top-k.
        mask_threshold: pasted mask probabilities >= this are foreground.
        scale_clamp: upper bound of predicted log width/height deltas, log(1000/16).
    """

    num_stages: int = 3
    bbox_reg_weights: tuple[tuple[float, float, float, float], ...] = CASCADE_BBOX_REG_WEIGHTS
    pixel_mean: tuple[float, float, float] = (123.675, 116.28, 103.53)
    pixel_std: tuple[float, float, float] = (58.395, 57.12, 57.375)
    size_divisibility: int = 32
    anchor_sizes: tuple[float, ...] = (32.0, 64.0, 128.0, 256.0, 512.0)
    anchor_ratios: tuple[float, ...] = (0.5, 1.0, 2.0)
    anchor_offset: float = 0.0
    rpn_pre_nms_topk: int = 1000
    rpn_post_nms_topk: int = 1000
    rpn_nms_thresh: float = 0.65
    rpn_min_box_size: float = 0.0
    box_pooler_resolution: int = 7
    mask_pooler_resolution: int = 14
    canonical_box_size: int = 224
    canonical_level: int = 4
    test_nms_thresh: float = 0.5
    detections_per_image: int = 100
    mask_threshold: float = 0.5
    scale_clamp: float = field(default=math.log(1000.0 / 16))

    def __post_init__(self) -> None:
        if self.num_stages < 1:
            raise ValueError(f"num_stages must be >= 1, got {self.num_stages}")
        if len(self.bbox_reg_weights) != self.num_stages:
            raise ValueError(
                f"bbox_reg_weights has {len(self.bbox_reg_weights)} entries for {self.num_stages} stages"
            )
        if len(self.anchor_sizes) != 5:
            raise ValueError("anchor_sizes needs one size per FPN level p2..p6 (5 values)")

    @classmethod
    def cascade(cls) -> "CutlerConfig":
        """Cascade Mask R-CNN, the setting of ``cutler_cascade_final.pth``."""
        return cls()

    @classmethod
    def mask_rcnn(cls) -> "CutlerConfig":
        """One-stage Mask R-CNN, the setting of ``cutler_mrcnn_final.pth``."""
        return cls(num_stages=1, bbox_reg_weights=MRCNN_BBOX_REG_WEIGHTS)

    def with_stages(self, num_stages: int) -> "CutlerConfig":
        """This config for a checkpoint with ``num_stages`` box heads (1 or 3)."""
        if num_stages == 3:
            return replace(self, num_stages=3, bbox_reg_weights=CASCADE_BBOX_REG_WEIGHTS)
        if num_stages == 1:
            return replace(self, num_stages=1, bbox_reg_weights=MRCNN_BBOX_REG_WEIGHTS)
        raise ValueError(f"CutLER checkpoints have 1 or 3 box-head stages, not {num_stages}")
