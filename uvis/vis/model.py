"""The MinVIS network (frame-level Mask2Former, R50) and its inference entry points.

Module tree = MinVIS/detectron2 state-dict names, so ``model.state_dict()`` saves straight
into a checkpoint the official code and :func:`load_minvis` load:

- ``backbone``: :class:`~uvis.vis.backbone.ResNet50` (``backbone.stem.*``, ``backbone.res2.0.*`` ...).
- ``sem_seg_head.pixel_decoder``: :class:`~uvis.vis.pixel_decoder.MSDeformAttnPixelDecoder`.
- ``sem_seg_head.predictor``: :class:`~uvis.vis.decoder.MaskedTransformerDecoder`.
- ``criterion``: :class:`CriterionState`, holding only the buffer ``criterion.empty_weight``
  (C + 1 class weights of the classification loss: 1 per class, 0.1 for "no object") that
  MinVIS's ``VideoSetCriterion`` registers; it is part of every official checkpoint, so keeping
  it makes strict loading and saving round-trip. The loss itself lives with the trainer.

Images given to :meth:`MinVIS.forward` are float (B, 3, H, W), normalised and zero-padded to a
multiple of 32 (:meth:`MinVIS.preprocess` does both for uint8 RGB frames).
"""
from __future__ import annotations

from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from uvis.vis.backbone import ResNet50
from uvis.vis.config import MinVISConfig
from uvis.vis.decoder import MaskedTransformerDecoder
from uvis.vis.pixel_decoder import MSDeformAttnPixelDecoder

NO_OBJECT_WEIGHT = 0.1
"""``MASK_FORMER.NO_OBJECT_WEIGHT``: class weight of "no object" in ``criterion.empty_weight``."""


class CriterionState(nn.Module):
    """Holds ``empty_weight`` (C + 1,) float32: 1 for every class, 0.1 for "no object"."""

    def __init__(self, num_classes: int, no_object_weight: float = NO_OBJECT_WEIGHT):
        super().__init__()
        weight = torch.ones(num_classes + 1)
        weight[-1] = no_object_weight
        self.register_buffer("empty_weight", weight)


class MaskFormerHead(nn.Module):
    """``sem_seg_head``: ``pixel_decoder`` + ``predictor``."""

    def __init__(self, cfg: MinVISConfig):
        super().__init__()
        self.pixel_decoder = MSDeformAttnPixelDecoder(
            conv_dim=cfg.hidden_dim, mask_dim=cfg.mask_dim, nheads=cfg.nheads, enc_layers=cfg.enc_layers,
            enc_dim_feedforward=cfg.enc_dim_feedforward, enc_n_points=cfg.enc_n_points)
        self.predictor = MaskedTransformerDecoder(
            cfg.num_classes, hidden_dim=cfg.hidden_dim, num_queries=cfg.num_queries, nheads=cfg.nheads,
            dim_feedforward=cfg.dim_feedforward, dec_layers=cfg.dec_layers, pre_norm=cfg.pre_norm,
            mask_dim=cfg.mask_dim)

    def forward(self, features: dict[str, torch.Tensor]) -> dict[str, Any]:
        mask_features, multi_scale = self.pixel_decoder(features)
        return self.predictor(multi_scale, mask_features)


class MinVIS(nn.Module):
    """MinVIS / Mask2Former R50: see the module docstring.

    ``forward(images)`` with images (B, 3, H, W) returns ``pred_logits`` (B, Q, C + 1),
    ``pred_masks`` (B, Q, H/4, W/4) mask logits, ``pred_embds`` (B, Q, D) and ``aux_outputs``
    (``dec_layers`` dicts {pred_logits, pred_masks}; entry i = after i decoder layers).
    """

    def __init__(self, cfg: MinVISConfig | None = None):
        super().__init__()
        self.cfg = cfg or MinVISConfig()
        self.backbone = ResNet50()
        if self.cfg.freeze_backbone:
            self.backbone.freeze()
        self.sem_seg_head = MaskFormerHead(self.cfg)
        self.criterion = CriterionState(self.cfg.num_classes)
        self.register_buffer("pixel_mean", torch.tensor(self.cfg.pixel_mean).view(-1, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(self.cfg.pixel_std).view(-1, 1, 1), persistent=False)

    @property
    def device(self) -> torch.device:
        return self.pixel_mean.device

    @property
    def num_classes(self) -> int:
        return self.cfg.num_classes

    def forward(self, images: torch.Tensor) -> dict[str, Any]:
        return self.sem_seg_head(self.backbone(images))

    # ---- inference -----------------------------------------------------------------------
    def preprocess(self, frames: Sequence[np.ndarray]) -> tuple[torch.Tensor, list[tuple[int, int]]]:
        """uint8 RGB (H, W, 3) frames -> (B, 3, Hp, Wp) float on the model's device, normalised
        then zero-padded (bottom/right) to a common multiple of ``size_divisibility``; and the
        (H, W) of each frame before padding."""
        from uvis.vis.inference import preprocess_frames

        return preprocess_frames(frames, self.pixel_mean, self.pixel_std, self.cfg.size_divisibility)

    @torch.no_grad()
    def frame_outputs(self, image: np.ndarray, *, resize: bool = True) -> dict[str, Any]:
        """One uint8 RGB (H, W, 3) frame -> ``pred_logits`` (Q, C + 1), ``pred_masks`` (Q, Hp/4, Wp/4)
        mask logits at 1/4 of the padded input, ``pred_embds`` (Q, D), ``image_size`` (the
        resized (h, w) fed to the network) and ``padded_size`` (Hp, Wp). ``resize=False`` feeds
        the frame as given; otherwise ResizeShortestEdge(``test_short_side``, ``max_size``)."""
        from uvis.vis.inference import frame_outputs

        return frame_outputs(self, image, resize=resize)

    @torch.no_grad()
    def predict_video(self, frames: Iterable[np.ndarray], *, output_hw: tuple[int, int] | None = None,
                      resize: bool = True, top_k: int = 10, tracking: str = "minvis",
                      memory_lambda: float | None = None, amp: bool | None = None,
                      progress: Any = None) -> list[dict[str, Any]]:
        """Video inference; see :func:`uvis.vis.inference.predict_video`."""
        from uvis.vis.inference import predict_video

        return predict_video(self, frames, output_hw=output_hw, resize=resize, top_k=top_k, tracking=tracking,
                             memory_lambda=memory_lambda, amp=amp, progress=progress)


def build_minvis(cfg: MinVISConfig | None = None) -> MinVIS:
    """A randomly initialised :class:`MinVIS` (train mode, backbone frozen per ``cfg``)."""
    return MinVIS(cfg)


def load_minvis(state_dict: Mapping[str, Any], *, cfg: MinVISConfig | None = None,
                device: str | torch.device = "cpu") -> MinVIS:
    """Build the network for a MinVIS/Mask2Former state dict and load it strictly.

    Class count, query count, widths and layer counts come from the state dict (``cfg``
    supplies the rest: heads, normalisation, test resize). A ``{"model": ...}`` wrapper is
    accepted. Returns the model in eval mode on ``device``.

    Raises:
        uvis.vis.checkpoint.CheckpointError: unused / missing / mis-shaped keys, all listed.
    """
    from uvis.vis.checkpoint import config_for_state_dict, convert_state_dict, unwrap_checkpoint

    sd = unwrap_checkpoint(state_dict)
    model_cfg = config_for_state_dict(sd, cfg or MinVISConfig())
    model = MinVIS(model_cfg)
    expected = {k: v.shape for k, v in model.state_dict().items()}
    model.load_state_dict(convert_state_dict(sd, expected), strict=True)
    return model.eval().to(device)
