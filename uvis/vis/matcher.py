"""Hungarian matching of predicted queries to target instances (Mask2Former's matcher).

Per image: cost = ``cost_mask`` * mean pointwise BCE + ``cost_class`` * (-softmax
probability of the target class) + ``cost_dice`` * dice, with masks compared at
``num_points`` points shared by all predictions and targets of that image
(:meth:`PointSource.matcher_points`). Solved by ``scipy.optimize.linear_sum_assignment``
on the (Q, N) cost matrix; the returned query indices are increasing.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment

from uvis.vis.points import PointSource, point_sample


def pairwise_bce(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """(Q, P) logits x (N, P) {0, 1} targets -> (Q, N) mean BCE-with-logits over the points."""
    pos = F.binary_cross_entropy_with_logits(logits, torch.ones_like(logits), reduction="none")
    neg = F.binary_cross_entropy_with_logits(logits, torch.zeros_like(logits), reduction="none")
    return (pos @ targets.T + neg @ (1 - targets).T) / logits.shape[1]


def pairwise_dice(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """(Q, P) logits x (N, P) targets -> (Q, N) dice cost ``1 - (2 p.t + 1) / (sum p + sum t + 1)``."""
    p = logits.sigmoid()
    num = 2 * (p @ targets.T)
    den = p.sum(-1)[:, None] + targets.sum(-1)[None, :]
    return 1 - (num + 1) / (den + 1)


@dataclass
class Match:
    """Matched pairs of one image: ``src`` query indices (increasing) and ``tgt`` target indices (int64)."""

    src: np.ndarray
    tgt: np.ndarray


class HungarianMatcher:
    """Args:
        cost_class / cost_mask / cost_dice: cost weights (2.0 / 5.0 / 5.0).
        num_points: points per mask (12544 = 112 x 112).
    """

    def __init__(self, cost_class: float = 2.0, cost_mask: float = 5.0, cost_dice: float = 5.0,
                 num_points: int = 12544) -> None:
        if cost_class == 0 and cost_mask == 0 and cost_dice == 0:
            raise ValueError("all matcher costs are 0")
        self.cost_class, self.cost_mask, self.cost_dice = cost_class, cost_mask, cost_dice
        self.num_points = num_points

    @torch.no_grad()
    def cost_matrix(self, logits: torch.Tensor, masks: torch.Tensor, labels: torch.Tensor,
                    target_masks: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
        """(Q, N) cost of one image.

        Args:
            logits: (Q, C+1) class logits; masks: (Q, h, w) mask logits;
            labels: (N,) int64 class ids; target_masks: (N, H, W) {0, 1} (padded size);
            points: (1, P, 2) (x, y) in [0, 1].
        """
        prob = logits.float().softmax(-1)
        cost_class = -prob[:, labels]
        q, n = masks.shape[0], target_masks.shape[0]
        out = point_sample(masks[:, None].float(), points.expand(q, -1, -1))[:, 0]
        tgt = point_sample(target_masks[:, None].float(), points.expand(n, -1, -1))[:, 0]
        return (self.cost_mask * pairwise_bce(out, tgt) + self.cost_class * cost_class
                + self.cost_dice * pairwise_dice(out, tgt))

    @torch.no_grad()
    def __call__(self, outputs: dict, targets: Sequence[dict], points: PointSource) -> list[Match]:
        """Match every image of the batch.

        Args:
            outputs: ``pred_logits`` (B, Q, C+1), ``pred_masks`` (B, Q, h, w).
            targets: per image ``labels`` (N,) int64 and ``masks`` (N, H, W).
            points: the point source; one ``matcher_points`` call per image, in batch order.
        """
        result = []
        for b, tgt in enumerate(targets):
            pts = points.matcher_points(self.num_points, outputs["pred_masks"].device)
            if len(tgt["labels"]) == 0:
                result.append(Match(np.zeros(0, np.int64), np.zeros(0, np.int64)))
                continue
            cost = self.cost_matrix(outputs["pred_logits"][b], outputs["pred_masks"][b], tgt["labels"],
                                    tgt["masks"], pts)
            rows, cols = linear_sum_assignment(cost.cpu().numpy())
            result.append(Match(rows.astype(np.int64), cols.astype(np.int64)))
        return result
