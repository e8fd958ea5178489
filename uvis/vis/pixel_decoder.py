"""Mask2Former's ``MSDeformAttnPixelDecoder``: deformable encoder over res3..res5, FPN on res2.

State-dict names (under ``sem_seg_head.pixel_decoder.``): ``input_proj.{0,1,2}.{0,1}.*``
(1x1 conv + GroupNorm(32) for res5, res4, res3 in that order), ``transformer.level_embed``
(3, C), ``transformer.encoder.layers.{i}.{self_attn.*, norm1, linear1, linear2, norm2}``,
``mask_features`` (1x1 conv), ``adapter_1`` (1x1 conv, no bias, GroupNorm ``norm``) and
``layer_1`` (3x3 conv, no bias, GroupNorm ``norm``, ReLU).

Forward, for res2..res5 of a (N, 3, H, W) input (C = conv_dim = 256):

1. ``src_l = GN(conv1x1(res_l))`` for l = res5, res4, res3: (N, C, H/32, W/32), (N, C, H/16, W/16),
   (N, C, H/8, W/8); position = sine embedding + ``level_embed[l]``.
2. Six post-norm encoder layers over the S = sum H_l W_l flattened positions: MSDeformAttn
   (every position queries all three levels at its own normalised centre) + residual +
   LayerNorm, FFN (C -> 1024 -> C, ReLU) + residual + LayerNorm.
3. ``y = GN(conv1x1(res2)) + bilinear_up(enc(res3 level))``; ``out_1/4 = ReLU(GN(conv3x3(y)))``.
4. Returns ``mask_features = conv1x1(out_1/4)`` (N, mask_dim, H/4, W/4) and the multi-scale
   features [1/32, 1/16, 1/8] (each (N, C, h, w)) the decoder attends to.

Runs in float32 even under autocast (as the reference: deformable attention is not used in
half precision).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from uvis.vis.msdeform import MSDeformAttn, reference_points
from uvis.vis.position import sine_position_embedding

TRANSFORMER_FEATURES: tuple[str, ...] = ("res5", "res4", "res3")
"""Encoder inputs, coarse to fine (the order of ``input_proj`` and of the decoder's levels)."""


class Conv2dGN(nn.Conv2d):
    """detectron2 ``Conv2d(..., bias=False, norm=GroupNorm(32, C))`` with an optional ReLU."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, relu: bool = False):
        super().__init__(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=False)
        self.norm = nn.GroupNorm(32, out_channels)
        self.relu = relu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm(super().forward(x))
        return F.relu(x) if self.relu else x


class DeformableEncoderLayer(nn.Module):
    """Post-norm deformable self-attention + FFN (dropout 0)."""

    def __init__(self, d_model: int, d_ffn: int, n_levels: int, n_heads: int, n_points: int):
        super().__init__()
        self.self_attn = MSDeformAttn(d_model, n_levels, n_heads, n_points)
        self.norm1 = nn.LayerNorm(d_model)
        self.linear1 = nn.Linear(d_model, d_ffn)
        self.linear2 = nn.Linear(d_ffn, d_model)
        self.norm2 = nn.LayerNorm(d_model)

    def forward(self, src: torch.Tensor, pos: torch.Tensor, reference: torch.Tensor,
                spatial_shapes: list[tuple[int, int]]) -> torch.Tensor:
        """``src`` (N, S, C), ``pos`` (1 or N, S, C), ``reference`` (S, 2) -> (N, S, C)."""
        src = self.norm1(src + self.self_attn(src + pos, reference, src, spatial_shapes))
        return self.norm2(src + self.linear2(F.relu(self.linear1(src))))


class DeformableEncoder(nn.Module):
    """``layers`` of :class:`DeformableEncoderLayer` (kept as a child for the state-dict names)."""

    def __init__(self, num_layers: int, d_model: int, d_ffn: int, n_levels: int, n_heads: int, n_points: int):
        super().__init__()
        self.layers = nn.ModuleList(
            DeformableEncoderLayer(d_model, d_ffn, n_levels, n_heads, n_points) for _ in range(num_layers))


class DeformableTransformer(nn.Module):
    """Holds ``level_embed`` (L, C) and ``encoder`` (names of ``MSDeformAttnTransformerEncoderOnly``)."""

    def __init__(self, num_layers: int, d_model: int, d_ffn: int, n_levels: int, n_heads: int, n_points: int):
        super().__init__()
        self.level_embed = nn.Parameter(torch.empty(n_levels, d_model))
        nn.init.normal_(self.level_embed)
        self.encoder = DeformableEncoder(num_layers, d_model, d_ffn, n_levels, n_heads, n_points)

    def forward(self, srcs: list[torch.Tensor]) -> list[torch.Tensor]:
        """``srcs``: L maps (N, C, H_l, W_l) -> the encoded maps, same shapes."""
        shapes = [(int(s.shape[2]), int(s.shape[3])) for s in srcs]
        c = srcs[0].shape[1]
        pos = torch.cat([
            (sine_position_embedding(h, w, c // 2, device=s.device).flatten(1).t() + self.level_embed[i])
            for i, (s, (h, w)) in enumerate(zip(srcs, shapes))
        ], 0).unsqueeze(0)  # (1, S, C), the same for every image
        x = torch.cat([s.flatten(2).transpose(1, 2) for s in srcs], 1)  # (N, S, C)
        ref = reference_points(shapes, device=x.device)
        for layer in self.encoder.layers:
            x = layer(x, pos, ref, shapes)
        out, start = [], 0
        n = x.shape[0]
        for h, w in shapes:
            out.append(x[:, start:start + h * w].transpose(1, 2).reshape(n, c, h, w))
            start += h * w
        return out


class MSDeformAttnPixelDecoder(nn.Module):
    """See the module docstring. ``forward(features)`` -> (mask_features, multi_scale)."""

    def __init__(self, conv_dim: int = 256, mask_dim: int = 256, nheads: int = 8, enc_layers: int = 6,
                 enc_dim_feedforward: int = 1024, enc_n_points: int = 4,
                 in_channels: dict[str, int] | None = None):
        super().__init__()
        channels = in_channels or {"res2": 256, "res3": 512, "res4": 1024, "res5": 2048}
        self.input_proj = nn.ModuleList(
            nn.Sequential(nn.Conv2d(channels[f], conv_dim, kernel_size=1), nn.GroupNorm(32, conv_dim))
            for f in TRANSFORMER_FEATURES)
        self.transformer = DeformableTransformer(enc_layers, conv_dim, enc_dim_feedforward,
                                                 len(TRANSFORMER_FEATURES), nheads, enc_n_points)
        self.mask_features = nn.Conv2d(conv_dim, mask_dim, kernel_size=1)
        self.adapter_1 = Conv2dGN(channels["res2"], conv_dim, 1)
        self.layer_1 = Conv2dGN(conv_dim, conv_dim, 3, relu=True)

    def forward(self, features: dict[str, torch.Tensor]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """
        Args:
            features: ``res2..res5`` of the backbone.
        Returns:
            mask_features (N, mask_dim, H/4, W/4) and [ms_1/32, ms_1/16, ms_1/8], each (N, C, h, w).
        """
        with torch.autocast(device_type=features["res2"].device.type, enabled=False):
            srcs = [proj(features[f].float()) for proj, f in zip(self.input_proj, TRANSFORMER_FEATURES)]
            encoded = self.transformer(srcs)
            lateral = self.adapter_1(features["res2"].float())
            y = lateral + F.interpolate(encoded[-1], size=lateral.shape[-2:], mode="bilinear", align_corners=False)
            fine = self.layer_1(y)
            # plain (N, C, H, W) layout: the decoder reshapes the mask features on every layer
            return self.mask_features(fine).contiguous(), encoded
