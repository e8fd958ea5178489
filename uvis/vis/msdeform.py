"""Multi-scale deformable attention (Deformable DETR) in pure PyTorch (``F.grid_sample``).

Shapes (N images, S = sum of H_l * W_l value positions over L levels, M heads, D channels
per head, Lq queries, P points):

- ``value``: (N, S, M, D), the levels flattened row-major and concatenated.
- ``spatial_shapes``: L pairs (H_l, W_l), Python ints.
- ``sampling_locations``: (N, Lq, M, L, P, 2), (x, y) in [0, 1] of each level
  (0 = left/top edge, 1 = right/bottom edge; points outside read zeros).
- ``attention_weights``: (N, Lq, M, L, P), softmax-normalised over (L, P) per head.
- result: (N, Lq, M * D).

Bilinear sampling follows ``grid_sample(..., align_corners=False, padding_mode="zeros")``:
pixel (i, j) of a level has its centre at ((j + 0.5) / W, (i + 0.5) / H).

Two implementations with the same result (both differentiable in value, locations and weights):

- :func:`ms_deform_attn` (default): every level is zero-padded by one pixel and all levels'
  rows sit in one (N * S' * M, D) table; the four bilinear corners of every point of every level
  become row indices and weights (bilinear weight x attention weight), and a single
  ``F.embedding_bag(mode="sum", per_sample_weights=...)`` gathers and sums them straight into
  the (N * Lq * M, D) output. No per-level work, no (.., Lq, L, P) intermediate of sampled
  values; fast on CPU and CUDA.
- :func:`ms_deform_attn_grid_sample`: the reference formulation, one ``F.grid_sample`` per level
  then a weighted sum over the points (kept for comparison and as a cross-check).
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn


def _check(value: torch.Tensor, spatial_shapes: Sequence[tuple[int, int]], sampling_locations: torch.Tensor) -> None:
    s, levels = value.shape[1], sampling_locations.shape[3]
    if levels != len(spatial_shapes):
        raise ValueError(f"sampling_locations has {levels} levels but spatial_shapes has {len(spatial_shapes)}")
    if sum(h * w for h, w in spatial_shapes) != s:
        raise ValueError(f"value has {s} positions but spatial_shapes {list(spatial_shapes)} cover "
                         f"{sum(h * w for h, w in spatial_shapes)}")


def ms_deform_attn(
    value: torch.Tensor, spatial_shapes: Sequence[tuple[int, int]], sampling_locations: torch.Tensor,
    attention_weights: torch.Tensor,
) -> torch.Tensor:
    """Weighted sum of bilinear samples of ``value`` by one ``embedding_bag`` (module docstring)."""
    _check(value, spatial_shapes, sampling_locations)
    n, s, m, d = value.shape
    _, lq, _, levels, points, _ = sampling_locations.shape
    dev = value.device
    # one zero table: every level zero-padded (1 pixel before, 2 after), so corners outside a map
    # read zeros and no validity masks are needed
    starts, start = [], 0
    for h, w in spatial_shapes:
        starts.append(start)
        start += (h + 3) * (w + 3)
    table = value.new_zeros((n, start, m, d))
    offset = 0
    for (h, w), s0 in zip(spatial_shapes, starts):
        block = table[:, s0:s0 + (h + 3) * (w + 3)].view(n, h + 3, w + 3, m, d)
        block[:, 1:h + 1, 1:w + 1] = value[:, offset:offset + h * w].view(n, h, w, m, d)
        offset += h * w
    size = torch.tensor(spatial_shapes, dtype=sampling_locations.dtype, device=dev)  # (L, 2) = (H, W)
    hgt, wid = size[:, 0:1], size[:, 1:2]  # (L, 1), broadcast over (N, Lq, M, L, P)
    # pixel coordinates in the padded map, clamped to [0, size + 1]: beyond that all corners are zeros
    x = torch.minimum((sampling_locations[..., 0] * wid + 0.5).clamp_(min=0.0), wid + 1.0)
    y = torch.minimum((sampling_locations[..., 1] * hgt + 0.5).clamp_(min=0.0), hgt + 1.0)
    x0, y0 = x.floor(), y.floor()
    fx, fy = x - x0, y - y0
    itype = torch.int32 if n * start * m < 2**31 else torch.int64
    row_len = (wid + 3.0).to(itype)  # (L, 1) padded width
    first = (torch.arange(n, device=dev, dtype=itype).view(n, 1, 1, 1, 1) * start
             + torch.tensor(starts, device=dev, dtype=itype).view(-1, 1)) * m \
        + torch.arange(m, device=dev, dtype=itype).view(1, 1, m, 1, 1)
    i00 = first + (y0.to(itype) * row_len + x0.to(itype)) * m  # (N, Lq, M, L, P) row of the top-left corner
    one = torch.tensor([0, 1], device=dev, dtype=itype)
    corners = ((one.view(2, 1) * row_len.view(-1, 1, 1) + one.view(1, 2)) * m).view(-1, 1, 4)  # (L, 1, 4)
    idx = i00.unsqueeze(-1) + corners
    wy1 = attention_weights * fy
    wy = torch.stack((attention_weights - wy1, wy1), -1)
    wx = torch.stack((1.0 - fx, fx), -1)
    wts = wy.unsqueeze(-1) * wx.unsqueeze(-2)  # (N, Lq, M, L, P, 2, 2): (top, bottom) x (left, right)
    k = levels * points * 4
    out = F.embedding_bag(idx.reshape(n * lq * m, k), table.view(n * start * m, d),
                          per_sample_weights=wts.reshape(n * lq * m, k), mode="sum")
    return out.view(n, lq, m * d)


def ms_deform_attn_grid_sample(
    value: torch.Tensor, spatial_shapes: Sequence[tuple[int, int]], sampling_locations: torch.Tensor,
    attention_weights: torch.Tensor,
) -> torch.Tensor:
    """Weighted sum of bilinear samples of ``value``, one ``grid_sample`` per level."""
    _check(value, spatial_shapes, sampling_locations)
    n, s, m, d = value.shape
    _, lq, _, levels, points, _ = sampling_locations.shape
    # (N, S, M, D) -> (N * M, D, S): one copy; each level is then a strided view (N*M, D, H, W)
    value_t = value.permute(0, 2, 3, 1).reshape(n * m, d, s)
    # (N, Lq, M, L, P, 2) -> (L, N * M, P, Lq, 2) in grid_sample's [-1, 1] coordinates
    grids = (2.0 * sampling_locations - 1.0).permute(3, 0, 2, 4, 1, 5).reshape(levels, n * m, points, lq, 2)
    weights = attention_weights.permute(3, 0, 2, 4, 1).reshape(levels, n * m, 1, points, lq)
    out: torch.Tensor | None = None
    start = 0
    for level, (h, w) in enumerate(spatial_shapes):
        v = value_t[:, :, start:start + h * w].reshape(n * m, d, h, w)
        start += h * w
        sampled = F.grid_sample(v, grids[level], mode="bilinear", padding_mode="zeros", align_corners=False)
        term = (sampled * weights[level]).sum(2)  # (N*M, D, P, Lq) -> (N*M, D, Lq)
        out = term if out is None else out + term
    assert out is not None
    return out.reshape(n, m * d, lq).transpose(1, 2)


def reference_points(spatial_shapes: Sequence[tuple[int, int]], device: torch.device | str | None = None,
                     dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """(S, 2) normalised (x, y) centres of every position of every level, in value order
    (no padding: the valid ratios are 1, as in the reference when no mask is given)."""
    refs = []
    for h, w in spatial_shapes:
        ys = torch.linspace(0.5, h - 0.5, h, dtype=torch.float32, device=device) / h
        xs = torch.linspace(0.5, w - 0.5, w, dtype=torch.float32, device=device) / w
        ref_y, ref_x = torch.meshgrid(ys, xs, indexing="ij")
        refs.append(torch.stack((ref_x.reshape(-1), ref_y.reshape(-1)), -1))
    return torch.cat(refs, 0).to(dtype)


class MSDeformAttn(nn.Module):
    """Multi-scale deformable attention with Deformable DETR's parameters (state-dict names
    ``sampling_offsets``, ``attention_weights``, ``value_proj``, ``output_proj``).

    Args:
        d_model: C, channels of queries and values.
        n_levels: L feature levels.
        n_heads: M heads (C divisible by M).
        n_points: P sampling points per head and level.
    """

    def __init__(self, d_model: int = 256, n_levels: int = 3, n_heads: int = 8, n_points: int = 4):
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"d_model {d_model} must be divisible by n_heads {n_heads}")
        self.d_model, self.n_levels, self.n_heads, self.n_points = d_model, n_levels, n_heads, n_points
        self.sampling_offsets = nn.Linear(d_model, n_heads * n_levels * n_points * 2)
        self.attention_weights = nn.Linear(d_model, n_heads * n_levels * n_points)
        self.value_proj = nn.Linear(d_model, d_model)
        self.output_proj = nn.Linear(d_model, d_model)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Deformable DETR's initialisation: zero offset weights, offsets fanning out on a circle
        per head (point k at distance k + 1), uniform attention, Xavier projections."""
        nn.init.zeros_(self.sampling_offsets.weight)
        thetas = torch.arange(self.n_heads, dtype=torch.float32) * (2.0 * math.pi / self.n_heads)
        grid = torch.stack([thetas.cos(), thetas.sin()], -1)
        grid = (grid / grid.abs().max(-1, keepdim=True)[0]).view(self.n_heads, 1, 1, 2)
        grid = grid.repeat(1, self.n_levels, self.n_points, 1)
        grid = grid * torch.arange(1, self.n_points + 1, dtype=torch.float32).view(1, 1, -1, 1)
        with torch.no_grad():
            self.sampling_offsets.bias.copy_(grid.reshape(-1))
        nn.init.zeros_(self.attention_weights.weight)
        nn.init.zeros_(self.attention_weights.bias)
        for lin in (self.value_proj, self.output_proj):
            nn.init.xavier_uniform_(lin.weight)
            nn.init.zeros_(lin.bias)

    def forward(self, query: torch.Tensor, reference: torch.Tensor, value_in: torch.Tensor,
                spatial_shapes: Sequence[tuple[int, int]]) -> torch.Tensor:
        """
        Args:
            query: (N, Lq, C) queries (with position embedding added).
            reference: (Lq, 2) or (N, Lq, 2) normalised (x, y) reference points, shared by the levels.
            value_in: (N, S, C) flattened multi-level input.
            spatial_shapes: L pairs (H_l, W_l).
        Returns:
            (N, Lq, C).
        """
        n, lq, _ = query.shape
        m, levels, points = self.n_heads, self.n_levels, self.n_points
        value = self.value_proj(value_in).view(n, value_in.shape[1], m, self.d_model // m)
        offsets = self.sampling_offsets(query).view(n, lq, m, levels, points, 2)
        logits = self.attention_weights(query).view(n, lq, m, levels * points)
        # softmax over the L * P logits of each head, written out: torch.softmax over a last dim of
        # 12 is several times slower on CPU than these three passes (same values)
        weights = (logits - logits.amax(-1, keepdim=True)).exp()
        weights = (weights / weights.sum(-1, keepdim=True)).view(n, lq, m, levels, points)
        normaliser = torch.tensor([[w, h] for h, w in spatial_shapes], dtype=offsets.dtype, device=offsets.device)
        ref = reference if reference.dim() == 3 else reference.unsqueeze(0)
        locations = ref[:, :, None, None, None, :] + offsets / normaliser[None, None, None, :, None, :]
        return self.output_proj(ms_deform_attn(value, spatial_shapes, locations, weights))
