"""Loading CutLER checkpoints (detectron2 key names) into :class:`CutlerNet`.

The official files (``cutler_cascade_final.pth``, ``cutler_mrcnn_final.pth``) are
``torch.save`` dicts with the state dict under ``"model"`` (plus trainer state, which is
ignored). Keys are detectron2's, e.g. ``backbone.bottom_up.res2.0.conv1.weight``,
``backbone.bottom_up.res2.0.conv1.norm.running_var``, ``backbone.fpn_lateral2.weight``,
``proposal_generator.rpn_head.anchor_deltas.bias``, ``roi_heads.box_head.1.fc1.weight``,
``roi_heads.box_predictor.2.bbox_pred.weight``, ``roi_heads.mask_head.mask_fcn1.weight``.

:func:`convert_detectron2_state_dict` maps them onto this package's module names and
fails loudly (:class:`CheckpointError`) listing every unused, missing or mis-shaped key.
"""
from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from uvis.errors import BadInputError
from uvis.proposers.cutler.config import CutlerConfig
from uvis.proposers.cutler.model import CutlerNet

NORM = r"(weight|bias|running_mean|running_var|num_batches_tracked)"

KEY_RULES: tuple[tuple[str, str], ...] = (
    (r"backbone\.bottom_up\.stem\.conv1\.weight", r"backbone.body.stem.conv.weight"),
    (rf"backbone\.bottom_up\.stem\.conv1\.norm\.{NORM}", r"backbone.body.stem.bn.\1"),
    (r"backbone\.bottom_up\.res([2-5])\.(\d+)\.(conv[123]|shortcut)\.weight",
     r"backbone.body.stages.<\1>.\2.\3.conv.weight"),
    (rf"backbone\.bottom_up\.res([2-5])\.(\d+)\.(conv[123]|shortcut)\.norm\.{NORM}",
     r"backbone.body.stages.<\1>.\2.\3.bn.\4"),
    (r"backbone\.fpn_(lateral|output)([2-5])\.weight", r"backbone.fpn.\1.<\2>.conv.weight"),
    (rf"backbone\.fpn_(lateral|output)([2-5])\.norm\.{NORM}", r"backbone.fpn.\1.<\2>.bn.\3"),
    (r"proposal_generator\.rpn_head\.conv\.(weight|bias)", r"rpn.conv.\1"),
    (r"proposal_generator\.rpn_head\.objectness_logits\.(weight|bias)", r"rpn.objectness.\1"),
    (r"proposal_generator\.rpn_head\.anchor_deltas\.(weight|bias)", r"rpn.deltas.\1"),
    (r"roi_heads\.box_head\.(\d+)\.(fc[12])\.(weight|bias)", r"roi_heads.box_heads.\1.\2.\3"),
    (r"roi_heads\.box_head\.(fc[12])\.(weight|bias)", r"roi_heads.box_heads.0.\1.\2"),
    (r"roi_heads\.box_predictor\.(\d+)\.(cls_score|bbox_pred)\.(weight|bias)", r"roi_heads.box_heads.\1.\2.\3"),
    (r"roi_heads\.box_predictor\.(cls_score|bbox_pred)\.(weight|bias)", r"roi_heads.box_heads.0.\1.\2"),
    (r"roi_heads\.mask_head\.mask_fcn([1-4])\.(weight|bias)", r"roi_heads.mask_head.convs.<\1-1>.\2"),
    (r"roi_heads\.mask_head\.(deconv|predictor)\.(weight|bias)", r"roi_heads.mask_head.\1.\2"),
)
"""(detectron2 key regex, port key template). ``<n>`` is a level number turned into a
0-based index (res2/p2 -> 0); ``<n-1>`` subtracts one (mask_fcn1 -> convs.0)."""

IGNORED_KEYS: frozenset[str] = frozenset({"pixel_mean", "pixel_std"})
"""Buffers some detectron2 versions save; they carry the normalisation, used if present."""


class CheckpointError(BadInputError):
    """A state dict does not fit the CutLER architecture; the message lists every problem."""


def _render(template: str, match: re.Match[str]) -> str:
    out = match.expand(template)

    def index(m: re.Match[str]) -> str:
        value = int(m.group(1))
        return str(value - 1 if m.group(2) else value - 2)

    return re.sub(r"<(\d+)(-1)?>", index, out)


def map_key(key: str) -> str | None:
    """The port name of a detectron2 key, or None when no rule knows it."""
    for pattern, template in KEY_RULES:
        m = re.fullmatch(pattern, key)
        if m:
            return _render(template, m)
    return None


def detectron2_key(port_key: str, num_stages: int) -> str:
    """The detectron2 name of a port key (inverse of :func:`map_key`), for messages."""
    k = port_key
    k = re.sub(r"^backbone\.body\.stem\.conv\.", "backbone.bottom_up.stem.conv1.", k)
    k = re.sub(r"^backbone\.body\.stem\.bn\.", "backbone.bottom_up.stem.conv1.norm.", k)
    k = re.sub(
        r"^backbone\.body\.stages\.(\d)\.(\d+)\.(\w+)\.(conv|bn)\.",
        lambda m: f"backbone.bottom_up.res{int(m.group(1)) + 2}.{m.group(2)}.{m.group(3)}."
        + ("" if m.group(4) == "conv" else "norm."),
        k,
    )
    k = re.sub(
        r"^backbone\.fpn\.(lateral|output)\.(\d)\.(conv|bn)\.",
        lambda m: f"backbone.fpn_{m.group(1)}{int(m.group(2)) + 2}." + ("" if m.group(3) == "conv" else "norm."),
        k,
    )
    k = re.sub(r"^rpn\.conv\.", "proposal_generator.rpn_head.conv.", k)
    k = re.sub(r"^rpn\.objectness\.", "proposal_generator.rpn_head.objectness_logits.", k)
    k = re.sub(r"^rpn\.deltas\.", "proposal_generator.rpn_head.anchor_deltas.", k)
    stage = (lambda m: f"{m.group(1)}.") if num_stages > 1 else (lambda m: "")
    k = re.sub(r"^roi_heads\.box_heads\.(\d+)\.(fc[12])\.", lambda m: f"roi_heads.box_head.{stage(m)}{m.group(2)}.", k)
    k = re.sub(
        r"^roi_heads\.box_heads\.(\d+)\.(cls_score|bbox_pred)\.",
        lambda m: f"roi_heads.box_predictor.{stage(m)}{m.group(2)}.", k,
    )
    k = re.sub(
        r"^roi_heads\.mask_head\.convs\.(\d)\.", lambda m: f"roi_heads.mask_head.mask_fcn{int(m.group(1)) + 1}.", k
    )
    return k


def unwrap_checkpoint(obj: Any, what: str = "CutLER") -> dict[str, Any]:
    """The state dict inside a loaded checkpoint: ``obj["model"]`` for detectron2 /
    official CutLER (or MinVIS, ``what``) files, ``obj["state_dict"]``, or ``obj`` itself."""
    if isinstance(obj, Mapping):
        for wrapper in ("model", "state_dict"):
            inner = obj.get(wrapper)
            if isinstance(inner, Mapping) and inner and all(isinstance(k, str) for k in inner):
                return dict(inner)
        if all(isinstance(k, str) for k in obj):
            return dict(obj)
    raise CheckpointError(
        f"not a {what} checkpoint: expected a state dict (or {{'model': state_dict}}), got {type(obj).__name__}"
    )


def num_stages_of(state_dict: Mapping[str, Any]) -> int:
    """Box-head stages in a detectron2 state dict: 3 for the cascade, 1 for Mask R-CNN."""
    stages = {int(m.group(1)) for k in state_dict if (m := re.match(r"roi_heads\.box_predictor\.(\d+)\.", k))}
    if stages:
        return max(stages) + 1
    if any(k.startswith("roi_heads.box_predictor.cls_score") for k in state_dict):
        return 1
    raise CheckpointError(
        "the state dict has no roi_heads.box_predictor keys; is it a CutLER (Cascade) Mask R-CNN checkpoint?"
    )


def as_tensor(value: Any, key: str) -> torch.Tensor:
    """A checkpoint entry as a tensor (numpy arrays of detectron2 ``.pkl`` files converted)."""
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(value))
    raise CheckpointError(f"checkpoint entry {key!r} is a {type(value).__name__}, not a tensor")


def convert_detectron2_state_dict(
    state_dict: Mapping[str, Any], expected: Mapping[str, torch.Size], num_stages: int = 3
) -> dict[str, torch.Tensor]:
    """Rename detectron2 keys to port keys and check them against ``expected`` shapes.

    Args:
        state_dict: detectron2 key -> tensor (or numpy array).
        expected: port key -> shape, e.g. from ``CutlerNet().state_dict()``.
        num_stages: box-head stages of the network (only used to name missing keys).
    Returns:
        port key -> tensor, exactly the keys of ``expected``.
    Raises:
        CheckpointError: listing unused keys (no rule, or a target the network lacks),
            missing keys and shape mismatches, all at once.
    """
    converted: dict[str, torch.Tensor] = {}
    unused: list[str] = []
    misshaped: list[str] = []
    misshaped_targets: set[str] = set()
    for key, value in state_dict.items():
        if key in IGNORED_KEYS:
            continue
        target = map_key(key)
        if target is None or target not in expected:
            unused.append(key)
            continue
        tensor = as_tensor(value, key)
        if tuple(tensor.shape) != tuple(expected[target]):
            misshaped.append(f"{key}: checkpoint {tuple(tensor.shape)} vs network {tuple(expected[target])} ({target})")
            misshaped_targets.add(target)
            continue
        converted[target] = tensor
    missing = sorted(set(expected) - set(converted) - misshaped_targets)
    if unused or missing or misshaped:
        parts = []
        if unused:
            parts.append(f"{len(unused)} unused key(s): " + ", ".join(sorted(unused)))
        if missing:
            parts.append(f"{len(missing)} missing key(s): " + ", ".join(detectron2_key(k, num_stages) for k in missing))
        if misshaped:
            parts.append(f"{len(misshaped)} mis-shaped key(s): " + "; ".join(misshaped))
        raise CheckpointError("CutLER checkpoint does not fit the network: " + " | ".join(parts))
    return converted


def load_checkpoint_file(path: str | Path, what: str = "CutLER") -> dict[str, Any]:
    """``torch.load(path, weights_only=True)`` of a CutLER (or ``what``) ``.pth``; returns the state dict."""
    path = Path(path)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError as exc:
        raise BadInputError(f"{what} weights file not found: {path}") from exc
    except Exception as exc:  # unpickling errors come in many types
        raise CheckpointError(
            f"cannot read {what} weights {path} with torch.load(weights_only=True): {exc}"
        ) from exc
    return unwrap_checkpoint(obj, what)


def load_cutler(
    state_dict: Mapping[str, Any], *, min_size: int = 800, max_size: int = 1333, device: str | torch.device = "cpu",
    fuse_bn: bool = True, channels_last: bool = True, config: CutlerConfig | None = None,
) -> CutlerNet:
    """Build the network for a detectron2-format CutLER state dict and load it strictly.

    Args:
        state_dict: detectron2 key -> tensor; a ``{"model": state_dict}`` wrapper is
            accepted too. Cascade (3 stages) and one-stage Mask R-CNN are detected from
            the keys.
        min_size, max_size: ResizeShortestEdge of :meth:`CutlerNet.detect` (800/1333).
        device: torch device, e.g. ``"cpu"`` or ``"cuda:0"``.
        fuse_bn: fold batch norms into convs (faster; same results to float rounding).
        channels_last: run the backbone channels-last (faster on CPU).
        config: architecture settings; default detectron2/CutLER's.
    Returns:
        :class:`CutlerNet` in eval mode on ``device``.
    Raises:
        CheckpointError: unused / missing / mis-shaped keys (all listed).
    """
    sd = unwrap_checkpoint(state_dict)
    cfg = (config or CutlerConfig()).with_stages(num_stages_of(sd))
    for name in ("pixel_mean", "pixel_std"):
        if name in sd:
            values = tuple(float(v) for v in as_tensor(sd[name], name).reshape(-1).tolist())
            if len(values) != 3:
                raise CheckpointError(f"checkpoint {name} has {len(values)} values, expected 3")
            cfg = replace(cfg, **{name: values})
    model = CutlerNet(cfg, min_size=min_size, max_size=max_size)
    expected = {k: v.shape for k, v in model.state_dict().items()}
    model.load_state_dict(convert_detectron2_state_dict(sd, expected, cfg.num_stages), strict=True)
    model.eval()
    if fuse_bn:
        model.fuse_bn()
    if channels_last:
        model.use_channels_last(True)
    return model.to(device)
