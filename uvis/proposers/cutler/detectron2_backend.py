"""Optional backend: the same CutLER checkpoint run by detectron2 itself.

detectron2 is not on any package registry (it must be compiled), so it is never
imported at module level; :class:`Detectron2CutlerProposer` imports it when built and
raises :class:`~uvis.errors.MissingDependencyError` with the install command otherwise.

The model is detectron2's built-in ``CascadeROIHeads`` (or ``StandardROIHeads`` for
``cutler_mrcnn_final``) configured as CutLER's demo config; at inference it is the same
computation as CutLER's ``CustomCascadeROIHeads`` (which differs only in training), and
the state-dict keys are identical. :func:`instances_from_detectron2` converts
detectron2's output ``Instances`` into :class:`uvis.types.Instances`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from uvis import weights as weights_mod
from uvis.errors import BadInputError, require
from uvis.masks import encode_many
from uvis.proposers.cutler.checkpoint import CheckpointError, load_checkpoint_file, num_stages_of
from uvis.proposers.cutler.config import CutlerConfig
from uvis.proposers.cutler.model import check_frame
from uvis.types import Instances

DETECTRON2_INSTALL = (
    "pip install 'git+https://github.com/facebookresearch/detectron2.git' (needs a C++ compiler and torch)"
)


def detectron2_config_overrides(
    config: CutlerConfig, *, min_size: int, max_size: int, score_threshold: float, device: str
) -> list[Any]:
    """``cfg.merge_from_list`` pairs that make detectron2's defaults into CutLER's model.

    Args:
        config: the architecture (``num_stages`` 3 = cascade, 1 = Mask R-CNN).
        min_size, max_size: test-time ResizeShortestEdge.
        score_threshold: ``ROI_HEADS.SCORE_THRESH_TEST``.
        device: ``MODEL.DEVICE``.
    Returns:
        a flat [key, value, key, value, ...] list.
    """
    cascade = config.num_stages > 1
    pairs: list[tuple[str, Any]] = [
        ("MODEL.META_ARCHITECTURE", "GeneralizedRCNN"),
        ("MODEL.MASK_ON", True),
        ("MODEL.DEVICE", device),
        ("MODEL.PIXEL_MEAN", list(config.pixel_mean)),
        ("MODEL.PIXEL_STD", list(config.pixel_std)),
        ("INPUT.FORMAT", "RGB"),
        ("INPUT.MIN_SIZE_TEST", int(min_size)),
        ("INPUT.MAX_SIZE_TEST", int(max_size)),
        ("MODEL.BACKBONE.NAME", "build_resnet_fpn_backbone"),
        ("MODEL.BACKBONE.FREEZE_AT", 0),
        ("MODEL.RESNETS.DEPTH", 50),
        ("MODEL.RESNETS.OUT_FEATURES", ["res2", "res3", "res4", "res5"]),
        ("MODEL.RESNETS.NORM", "BN"),
        ("MODEL.RESNETS.STRIDE_IN_1X1", False),
        ("MODEL.FPN.IN_FEATURES", ["res2", "res3", "res4", "res5"]),
        ("MODEL.FPN.NORM", "BN"),
        ("MODEL.ANCHOR_GENERATOR.SIZES", [[int(s)] for s in config.anchor_sizes]),
        ("MODEL.ANCHOR_GENERATOR.ASPECT_RATIOS", [list(config.anchor_ratios)]),
        ("MODEL.ANCHOR_GENERATOR.OFFSET", float(config.anchor_offset)),
        ("MODEL.RPN.IN_FEATURES", ["p2", "p3", "p4", "p5", "p6"]),
        ("MODEL.RPN.PRE_NMS_TOPK_TEST", config.rpn_pre_nms_topk),
        ("MODEL.RPN.POST_NMS_TOPK_TEST", config.rpn_post_nms_topk),
        ("MODEL.RPN.NMS_THRESH", config.rpn_nms_thresh),
        ("MODEL.ROI_HEADS.NAME", "CascadeROIHeads" if cascade else "StandardROIHeads"),
        ("MODEL.ROI_HEADS.IN_FEATURES", ["p2", "p3", "p4", "p5"]),
        ("MODEL.ROI_HEADS.NUM_CLASSES", 1),
        ("MODEL.ROI_HEADS.SCORE_THRESH_TEST", float(score_threshold)),
        ("MODEL.ROI_HEADS.NMS_THRESH_TEST", config.test_nms_thresh),
        ("TEST.DETECTIONS_PER_IMAGE", config.detections_per_image),
        ("MODEL.ROI_BOX_HEAD.NAME", "FastRCNNConvFCHead"),
        ("MODEL.ROI_BOX_HEAD.NUM_FC", 2),
        ("MODEL.ROI_BOX_HEAD.POOLER_RESOLUTION", config.box_pooler_resolution),
        ("MODEL.ROI_BOX_HEAD.POOLER_SAMPLING_RATIO", 0),
        ("MODEL.ROI_BOX_HEAD.POOLER_TYPE", "ROIAlignV2"),
        ("MODEL.ROI_BOX_HEAD.CLS_AGNOSTIC_BBOX_REG", True),
        ("MODEL.ROI_BOX_HEAD.BBOX_REG_WEIGHTS", list(config.bbox_reg_weights[0])),
        ("MODEL.ROI_MASK_HEAD.NAME", "MaskRCNNConvUpsampleHead"),
        ("MODEL.ROI_MASK_HEAD.NUM_CONV", 4),
        ("MODEL.ROI_MASK_HEAD.POOLER_RESOLUTION", config.mask_pooler_resolution),
        ("MODEL.ROI_MASK_HEAD.POOLER_SAMPLING_RATIO", 0),
        ("MODEL.ROI_MASK_HEAD.POOLER_TYPE", "ROIAlignV2"),
    ]
    if cascade:
        pairs.append(("MODEL.ROI_BOX_CASCADE_HEAD.BBOX_REG_WEIGHTS", [list(w) for w in config.bbox_reg_weights]))
        pairs.append(("MODEL.ROI_BOX_CASCADE_HEAD.IOUS", [0.5, 0.6, 0.7][: config.num_stages]))
    return [item for pair in pairs for item in pair]


def instances_from_detectron2(d2: Any, t: int = 0) -> Instances:
    """Convert detectron2 output ``Instances`` (after ``detector_postprocess``).

    Reads ``image_size`` (H, W), ``pred_boxes`` (``Boxes`` or (N, 4) tensor, xyxy
    output pixels), ``scores`` (N,) and ``pred_masks`` (N, H, W) bool/uint8; any object
    with these attributes works.
    """
    h, w = (int(v) for v in d2.image_size)
    boxes = d2.pred_boxes
    boxes = getattr(boxes, "tensor", boxes)
    boxes_np = torch.as_tensor(boxes).detach().float().cpu().numpy().reshape(-1, 4)
    scores = torch.as_tensor(d2.scores).detach().float().cpu().numpy().reshape(-1)
    masks = torch.as_tensor(d2.pred_masks).detach().cpu().numpy()
    if masks.ndim == 4:
        masks = masks[:, 0]
    if masks.shape[1:] != (h, w) and len(masks):
        raise BadInputError(f"detectron2 masks have shape {masks.shape[1:]} but the image is {(h, w)}")
    n = len(scores)
    if len(boxes_np) != n or len(masks) != n:
        raise BadInputError(f"detectron2 instances disagree: {len(boxes_np)} boxes, {n} scores, {len(masks)} masks")
    rles = encode_many(masks.reshape(n, h, w).astype(bool)) if n else []
    return Instances(boxes=boxes_np, masks=rles, objectness=scores, image_size=(h, w),
                     frame=np.full(n, t, dtype=np.int32))


class Detectron2CutlerProposer:
    """CutLER proposals computed by detectron2 (optional alternative to :class:`CutlerProposer`).

    Args: as :class:`~uvis.proposers.cutler.CutlerProposer` (``weights`` a registry
    name or local path; ``min_size``/``max_size``; ``score_threshold``; ``device``).
    Raises :class:`~uvis.errors.MissingDependencyError` naming the install command when
    detectron2 is not importable.
    """

    context_frames: int = 0

    def __init__(
        self, weights: str | Path, *, min_size: int = 800, max_size: int = 1333, score_threshold: float = 0.0,
        device: str = "cpu", batch_size: int = 1,
    ):
        require("detectron2", DETECTRON2_INSTALL)
        from detectron2.config import get_cfg
        from detectron2.data import transforms as T
        from detectron2.modeling import build_model

        path, digest = weights_mod.resolve_with_digest(weights)
        state = load_checkpoint_file(path)
        config = CutlerConfig().with_stages(num_stages_of(state))
        cfg = get_cfg()
        cfg.merge_from_list(detectron2_config_overrides(
            config, min_size=min_size, max_size=max_size, score_threshold=score_threshold, device=device))
        cfg.freeze()
        model = build_model(cfg)
        result = model.load_state_dict({k: v for k, v in state.items() if k not in ("pixel_mean", "pixel_std")},
                                       strict=False)
        if result.missing_keys or result.unexpected_keys:
            raise CheckpointError(
                f"detectron2 model and {path} disagree: missing {result.missing_keys}, unused {result.unexpected_keys}"
            )
        self.model = model.eval()
        self.resize = T.ResizeShortestEdge([min_size, min_size], max_size)
        self.batch_size = max(1, int(batch_size))
        self.name = f"detectron2-cutler[{path.name}@{digest[:12]},min{min_size},max{max_size},thr{score_threshold:g}]"

    def reset(self) -> None:
        """Stateless."""

    def propose(self, frame: np.ndarray, t: int) -> Instances:
        return self.propose_batch([frame], t)[0]

    def propose_batch(self, frames: Sequence[np.ndarray], start_t: int) -> list[Instances]:
        out = []
        for start in range(0, len(frames), self.batch_size):
            inputs = []
            for frame in frames[start:start + self.batch_size]:
                check_frame(frame)
                image = self.resize.get_transform(frame).apply_image(frame)
                inputs.append({
                    "image": torch.as_tensor(image.astype("float32").transpose(2, 0, 1)),
                    "height": frame.shape[0], "width": frame.shape[1],
                })
            with torch.inference_mode():
                outputs = self.model(inputs)
            for offset, o in enumerate(outputs):
                out.append(instances_from_detectron2(o["instances"].to("cpu"), start_t + start + offset))
        return out


Detectron2Proposer = Detectron2CutlerProposer
"""Alias used by :mod:`uvis.proposers.factory`."""
