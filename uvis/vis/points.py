"""Point sampling for the mask losses (PointRend-style, as Mask2Former trains).

Coordinates are (x, y) in [0, 1] over the whole (padded) mask, so predictions at 1/4
resolution and targets at full resolution are sampled at the same places without
resizing either. The random source is injectable (:data:`RandFn`) so that a test can
replay a recorded sequence of uniform draws, and :class:`GridPoints` replaces the
randomness altogether.
"""
from __future__ import annotations

from typing import Callable, Protocol, Sequence

import torch
import torch.nn.functional as F

RandFn = Callable[[Sequence[int], torch.device], torch.Tensor]
"""``rand(shape, device) -> float32 tensor`` of uniform [0, 1) values (``torch.rand``'s role)."""


def torch_rand(generator: torch.Generator | None = None) -> RandFn:
    """A :data:`RandFn` drawing from ``generator`` (None: the default generator)."""

    def rand(shape: Sequence[int], device: torch.device) -> torch.Tensor:
        gen_device = generator.device if generator is not None else torch.device("cpu")
        out = torch.rand(tuple(shape), generator=generator, device=gen_device)
        return out.to(device)

    return rand


def point_sample(values: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
    """Bilinear values at points.

    Args:
        values: (N, C, H, W).
        coords: (N, P, 2) (x, y) in [0, 1] (0 and 1 are the outer edges of the map).

    Returns:
        (N, C, P): ``grid_sample(values, 2 * coords - 1, align_corners=False)``, zeros
        outside.
    """
    out = F.grid_sample(values, 2.0 * coords.unsqueeze(2) - 1.0, mode="bilinear", padding_mode="zeros",
                        align_corners=False)
    return out.squeeze(3)


def uncertain_points(logits: torch.Tensor, num_points: int, oversample_ratio: float,
                     importance_sample_ratio: float, rand: RandFn) -> torch.Tensor:
    """Points concentrated where the prediction is uncertain (|logit| small), plus random ones.

    Draws ``int(num_points * oversample_ratio)`` uniform points per mask, keeps the
    ``int(importance_sample_ratio * num_points)`` with the largest ``-|logit|`` and fills up
    with fresh uniform points. Two calls of ``rand`` in this order: (N, oversampled, 2)
    then (N, random, 2) (the second only if there are random points).

    Args:
        logits: (N, 1, h, w) mask logits.

    Returns:
        (N, num_points, 2) coordinates (x, y) in [0, 1].
    """
    n = logits.shape[0]
    num_sampled = int(num_points * oversample_ratio)
    num_uncertain = int(importance_sample_ratio * num_points)
    num_random = num_points - num_uncertain
    coords = rand((n, num_sampled, 2), logits.device).to(logits.dtype)
    uncertainty = -point_sample(logits, coords)[:, 0].abs()  # (N, num_sampled)
    idx = torch.topk(uncertainty, k=num_uncertain, dim=1).indices
    chosen = torch.gather(coords, 1, idx.unsqueeze(-1).expand(-1, -1, 2))
    if num_random > 0:
        chosen = torch.cat([chosen, rand((n, num_random, 2), logits.device).to(logits.dtype)], dim=1)
    return chosen


def grid_coords(side: int, device: torch.device | None = None) -> torch.Tensor:
    """(side*side, 2) cell centres ``(i + 0.5) / side`` as (x, y), x running fastest."""
    c = (torch.arange(side, dtype=torch.float32, device=device) + 0.5) / side
    yy, xx = torch.meshgrid(c, c, indexing="ij")
    return torch.stack([xx.reshape(-1), yy.reshape(-1)], -1)


class PointSource(Protocol):
    """Where the matcher and the mask losses sample."""

    def matcher_points(self, num_points: int, device: torch.device) -> torch.Tensor:
        """(1, num_points, 2) points shared by all predicted and target masks of one image."""

    def loss_points(self, logits: torch.Tensor, num_points: int) -> torch.Tensor:
        """(N, num_points, 2) points for N matched predictions ``logits`` (N, 1, h, w)."""


class RandomPoints:
    """The training default: uniform matcher points, importance-sampled loss points.

    Args:
        rand: the uniform source (default: ``torch.rand`` on the default generator).
        oversample_ratio: >= 1, candidates per kept point (3.0).
        importance_sample_ratio: in [0, 1], fraction of points chosen by uncertainty (0.75).
    """

    def __init__(self, rand: RandFn | None = None, oversample_ratio: float = 3.0,
                 importance_sample_ratio: float = 0.75) -> None:
        self.rand = rand or torch_rand()
        self.oversample_ratio = oversample_ratio
        self.importance_sample_ratio = importance_sample_ratio

    def matcher_points(self, num_points: int, device: torch.device) -> torch.Tensor:
        return self.rand((1, num_points, 2), device)

    def loss_points(self, logits: torch.Tensor, num_points: int) -> torch.Tensor:
        return uncertain_points(logits, num_points, self.oversample_ratio, self.importance_sample_ratio,
                                self.rand)


class GridPoints:
    """No randomness: the same regular grid (``num_points`` must be a square) everywhere."""

    def matcher_points(self, num_points: int, device: torch.device) -> torch.Tensor:
        return self._grid(num_points, device)[None]

    def loss_points(self, logits: torch.Tensor, num_points: int) -> torch.Tensor:
        return self._grid(num_points, logits.device).to(logits.dtype)[None].expand(logits.shape[0], -1, -1)

    @staticmethod
    def _grid(num_points: int, device: torch.device) -> torch.Tensor:
        side = int(round(num_points ** 0.5))
        if side * side != num_points:
            raise ValueError(f"grid points need a square point count, got {num_points}")
        return grid_coords(side, device)
