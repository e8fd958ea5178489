"""2-D sine position embedding (DETR / Mask2Former ``PositionEmbeddingSine``, normalised).

For a feature map of H x W (no padding mask: every position counts), the row index
y = 1..H and column index x = 1..W are scaled to (0, 2*pi] by ``v / (last + 1e-6) * 2*pi``;
channel k of the F = ``num_pos_feats`` per axis gets ``v / 10000 ** (2 * (k // 2) / F)``,
sine on even and cosine on odd k. Output channels: F for y, then F for x.
"""
from __future__ import annotations

import math

import torch


def sine_position_embedding(
    height: int, width: int, num_pos_feats: int, *, device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32, temperature: float = 10000.0,
) -> torch.Tensor:
    """The embedding of one H x W map: (2 * num_pos_feats, H, W), the same for every image.

    Computed in float32 (as the reference) and cast to ``dtype``.
    """
    eps = 1e-6
    scale = 2 * math.pi
    y = torch.arange(1, height + 1, dtype=torch.float32, device=device)
    x = torch.arange(1, width + 1, dtype=torch.float32, device=device)
    y = y / (y[-1:] + eps) * scale
    x = x / (x[-1:] + eps) * scale
    dim_t = torch.arange(num_pos_feats, dtype=torch.float32, device=device)
    dim_t = temperature ** (2 * torch.div(dim_t, 2, rounding_mode="floor") / num_pos_feats)
    pos_y = y[:, None] / dim_t  # (H, F)
    pos_x = x[:, None] / dim_t  # (W, F)
    pos_y = torch.stack((pos_y[:, 0::2].sin(), pos_y[:, 1::2].cos()), dim=2).flatten(1)
    pos_x = torch.stack((pos_x[:, 0::2].sin(), pos_x[:, 1::2].cos()), dim=2).flatten(1)
    pos = torch.cat((pos_y[:, None, :].expand(height, width, -1), pos_x[None, :, :].expand(height, width, -1)), dim=2)
    return pos.permute(2, 0, 1).contiguous().to(dtype)
