"""Training losses of the frame-level MinVIS / Mask2Former model (deep supervision).

For the final prediction and every auxiliary one (``aux_outputs[i]``: after i decoder
layers, i = 0 is the query initialisation), in this order:

1. match queries to targets (:class:`~uvis.vis.matcher.HungarianMatcher`, per image);
2. ``loss_ce``: cross-entropy over C+1 classes, class weights ``empty_weight`` (1 for the
   C classes, ``no_object_weight`` for "no object", the target of unmatched queries),
   weighted mean over all queries of the batch;
3. ``loss_mask`` / ``loss_dice`` on matched pairs, at ``num_points`` points per mask
   (:meth:`PointSource.loss_points`, importance sampled by default): mean pointwise BCE,
   and ``1 - (2 sum(p t) + 1) / (sum p + sum t + 1)``, each summed over masks and divided
   by ``num_masks`` (targets in the batch, averaged over DDP ranks, at least 1).

Terms are named ``loss_ce``, ``loss_mask``, ``loss_dice`` (final) and ``loss_ce_{i}`` ...
(aux i); weighted terms are multiplied by 2 / 5 / 5.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import torch
import torch.nn.functional as F

from uvis.vis.matcher import HungarianMatcher, Match
from uvis.vis.points import PointSource, RandomPoints, point_sample


def sigmoid_bce_loss(logits: torch.Tensor, targets: torch.Tensor, num_masks: float) -> torch.Tensor:
    """(N, P) logits and targets -> mean BCE over points, summed over masks / num_masks."""
    return F.binary_cross_entropy_with_logits(logits, targets, reduction="none").mean(1).sum() / num_masks


def dice_loss(logits: torch.Tensor, targets: torch.Tensor, num_masks: float) -> torch.Tensor:
    """(N, P) logits and targets -> dice loss summed over masks / num_masks."""
    p = logits.sigmoid()
    num = 2 * (p * targets).sum(-1)
    den = p.sum(-1) + targets.sum(-1)
    return (1 - (num + 1) / (den + 1)).sum() / num_masks


@dataclass
class LossOutput:
    """``weighted`` / ``unweighted``: term name -> scalar tensor; ``matches``: layer name
    (``final``, ``aux0`` ...) -> per-image :class:`Match`; ``total``: sum of the weighted terms."""

    weighted: dict[str, torch.Tensor]
    unweighted: dict[str, torch.Tensor]
    matches: dict[str, list[Match]] = field(default_factory=dict)

    @property
    def total(self) -> torch.Tensor:
        return torch.stack(list(self.weighted.values())).sum()


class SetCriterion:
    """Args:
        num_classes: C (the "no object" class is index C).
        matcher: the Hungarian matcher (its ``num_points`` is also the loss's).
        weight_ce / weight_mask / weight_dice: loss weights (2.0 / 5.0 / 5.0).
        no_object_weight: class weight of "no object" in the CE (0.1).
        deep_supervision: also compute the terms of every ``aux_outputs`` entry.
    """

    def __init__(self, num_classes: int, matcher: HungarianMatcher | None = None, *, weight_ce: float = 2.0,
                 weight_mask: float = 5.0, weight_dice: float = 5.0, no_object_weight: float = 0.1,
                 deep_supervision: bool = True) -> None:
        self.num_classes = num_classes
        self.matcher = matcher or HungarianMatcher()
        self.weights = {"loss_ce": weight_ce, "loss_mask": weight_mask, "loss_dice": weight_dice}
        self.no_object_weight = no_object_weight
        self.deep_supervision = deep_supervision

    def empty_weight(self, device: torch.device | None = None) -> torch.Tensor:
        """(C+1,) class weights of the CE (MinVIS keeps them as the ``criterion.empty_weight`` buffer)."""
        w = torch.ones(self.num_classes + 1, device=device)
        w[-1] = self.no_object_weight
        return w

    def __call__(self, outputs: dict, targets: Sequence[dict], points: PointSource | None = None,
                 num_masks: float | None = None) -> LossOutput:
        """Losses of one batch.

        Args:
            outputs: ``pred_logits`` (B, Q, C+1), ``pred_masks`` (B, Q, h, w) and (with deep
                supervision) ``aux_outputs``: list of dicts with the same two keys.
            targets: per image ``labels`` (N,) int64 in [0, C) and ``masks`` (N, H, W) {0, 1}
                float at the padded input size.
            points: point source (default :class:`RandomPoints` on ``torch.rand``).
            num_masks: normaliser of the mask terms (default: targets in the batch, averaged
                over the DDP ranks when a process group is initialised, at least 1).
        """
        points = points or RandomPoints()
        if num_masks is None:
            num_masks = self.num_masks(targets, outputs["pred_logits"].device)
        layers = [("final", "", outputs)]
        if self.deep_supervision:
            layers += [(f"aux{i}", f"_{i}", aux) for i, aux in enumerate(outputs.get("aux_outputs", []))]
        out = LossOutput({}, {})
        for name, suffix, layer in layers:
            matches = self.matcher(layer, targets, points)
            out.matches[name] = matches
            terms = {"loss_ce": self.loss_labels(layer, targets, matches)}
            terms.update(self.loss_masks(layer, targets, matches, num_masks, points))
            for key, value in terms.items():
                out.unweighted[key + suffix] = value
                out.weighted[key + suffix] = value * self.weights[key]
        return out

    @staticmethod
    def num_masks(targets: Sequence[dict], device: torch.device) -> float:
        n = torch.tensor([float(sum(len(t["labels"]) for t in targets))], device=device)
        world = 1
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.all_reduce(n)
            world = torch.distributed.get_world_size()
        return max(float(n.item()) / world, 1.0)

    def loss_labels(self, layer: dict, targets: Sequence[dict], matches: Sequence[Match]) -> torch.Tensor:
        logits = layer["pred_logits"].float()
        b, q, _ = logits.shape
        target_classes = torch.full((b, q), self.num_classes, dtype=torch.int64, device=logits.device)
        for i, (t, m) in enumerate(zip(targets, matches)):
            if len(m.src):
                target_classes[i, torch.as_tensor(m.src, device=logits.device)] = \
                    t["labels"][torch.as_tensor(m.tgt, device=logits.device)]
        return F.cross_entropy(logits.transpose(1, 2), target_classes, self.empty_weight(logits.device))

    def loss_masks(self, layer: dict, targets: Sequence[dict], matches: Sequence[Match], num_masks: float,
                   points: PointSource) -> dict[str, torch.Tensor]:
        masks = layer["pred_masks"]
        dev = masks.device
        src = [masks[i, torch.as_tensor(m.src, device=dev)] for i, m in enumerate(matches) if len(m.src)]
        if not src:  # no target in the batch: zero terms that still reach every mask parameter
            zero = masks.sum() * 0.0
            return {"loss_mask": zero, "loss_dice": zero}
        src_masks = torch.cat(src)[:, None].float()  # (N, 1, h, w)
        tgt_masks = torch.cat([t["masks"][torch.as_tensor(m.tgt, device=dev)]
                               for t, m in zip(targets, matches) if len(m.src)])[:, None].to(src_masks)
        num_points = self.matcher.num_points
        with torch.no_grad():
            coords = points.loss_points(src_masks.detach(), num_points)
            labels = point_sample(tgt_masks, coords)[:, 0]
        logits = point_sample(src_masks, coords)[:, 0]
        return {"loss_mask": sigmoid_bce_loss(logits, labels, num_masks),
                "loss_dice": dice_loss(logits, labels, num_masks)}
