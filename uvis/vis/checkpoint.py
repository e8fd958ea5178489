"""Loading MinVIS / Mask2Former checkpoints (detectron2 key names) into :class:`~uvis.vis.model.MinVIS`.

The port's module names ARE the checkpoint's names (``backbone.res2.0.conv1.norm.weight``,
``sem_seg_head.pixel_decoder.transformer.encoder.layers.0.self_attn.sampling_offsets.weight``,
``sem_seg_head.predictor.query_feat.weight``, ``criterion.empty_weight`` ...), so conversion is
the identity except for:

- ``pixel_mean`` / ``pixel_std`` (saved by some detectron2 versions): ignored;
- ``*.num_batches_tracked`` of backbone norms (BatchNorm-trained backbones): ignored, FrozenBN;
- old Mask2Former files (``static_query``): renamed to ``query_feat``;
- a CutLER checkpoint's ``backbone.bottom_up.*`` (see :func:`cutler_backbone_state_dict`).

Files are read with ``torch.load(weights_only=True)``; the state dict may sit under ``"model"``
(detectron2 checkpointer) or ``"state_dict"``. Every problem is collected and raised at once as
:class:`CheckpointError` (unused, missing and mis-shaped keys).
"""
from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from uvis.errors import BadInputError
from uvis.proposers.cutler.checkpoint import load_checkpoint_file as _load_file
from uvis.proposers.cutler.checkpoint import unwrap_checkpoint as _unwrap
from uvis.vis.config import MinVISConfig

IGNORED = re.compile(r"(pixel_mean|pixel_std|.*\.num_batches_tracked)")
PREDICTOR = "sem_seg_head.predictor."
ENCODER = "sem_seg_head.pixel_decoder.transformer.encoder.layers."


class CheckpointError(BadInputError):
    """A state dict does not fit the MinVIS architecture; the message lists every problem."""


def unwrap_checkpoint(obj: Any) -> dict[str, Any]:
    """The state dict inside a loaded checkpoint (``obj["model"]``, ``obj["state_dict"]`` or ``obj``)."""
    return _unwrap(obj, "MinVIS/Mask2Former")


def load_checkpoint_file(path: str | Path) -> dict[str, Any]:
    """``torch.load(path, weights_only=True)`` of a ``.pth``; returns the state dict."""
    return _load_file(path, "MinVIS/Mask2Former")


def _tensor(value: Any, key: str) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(value))
    raise CheckpointError(f"checkpoint entry {key!r} is a {type(value).__name__}, not a tensor")


def _shape(sd: Mapping[str, Any], key: str) -> tuple[int, ...]:
    if key not in sd:
        raise CheckpointError(f"the state dict has no {key!r}; is it a MinVIS / Mask2Former checkpoint? "
                              f"(first keys: {', '.join(list(sd)[:5])})")
    return tuple(_tensor(sd[key], key).shape)


def _count(sd: Mapping[str, Any], prefix: str) -> int:
    pattern = re.compile(re.escape(prefix) + r"(\d+)\.")
    found = {int(m.group(1)) for k in sd if (m := pattern.match(k))}
    return max(found) + 1 if found else 0


def config_for_state_dict(sd: Mapping[str, Any], base: MinVISConfig | None = None) -> MinVISConfig:
    """``base`` with class/query counts, widths and layer counts read from the state dict's shapes."""
    base = base or MinVISConfig()
    sd = {_rename(k): v for k, v in sd.items()}
    classes = _shape(sd, PREDICTOR + "class_embed.weight")
    queries = _shape(sd, PREDICTOR + "query_feat.weight")
    mask = _shape(sd, "sem_seg_head.pixel_decoder.mask_features.weight")
    dec_layers = _count(sd, PREDICTOR + "transformer_ffn_layers.")
    enc_layers = _count(sd, ENCODER)
    if dec_layers == 0 or enc_layers == 0:
        raise CheckpointError("the state dict has no decoder or no deformable-encoder layers "
                              f"({dec_layers} decoder, {enc_layers} encoder); is it a Mask2Former-style checkpoint?")
    ffn = _shape(sd, PREDICTOR + "transformer_ffn_layers.0.linear1.weight")
    enc_ffn = _shape(sd, ENCODER + "0.linear1.weight")
    attn = _shape(sd, ENCODER + "0.self_attn.attention_weights.weight")
    levels = 3
    if attn[0] % (base.nheads * levels):
        raise CheckpointError(f"{ENCODER}0.self_attn.attention_weights.weight has {attn[0]} rows, not a multiple "
                              f"of heads x levels = {base.nheads} x {levels}")
    try:
        return replace(base, num_classes=classes[0] - 1, num_queries=queries[0], hidden_dim=queries[1],
                       mask_dim=mask[0], dec_layers=dec_layers, enc_layers=enc_layers, dim_feedforward=ffn[0],
                       enc_dim_feedforward=enc_ffn[0], enc_n_points=attn[0] // (base.nheads * levels))
    except BadInputError as exc:
        raise CheckpointError(f"the state dict describes an invalid model: {exc}") from exc


def _rename(key: str) -> str:
    return key.replace("predictor.static_query.", "predictor.query_feat.")


def convert_state_dict(state_dict: Mapping[str, Any], expected: Mapping[str, torch.Size]) -> dict[str, torch.Tensor]:
    """Check a MinVIS-named state dict against the network's ``expected`` key -> shape.

    Returns:
        key -> tensor, exactly the keys of ``expected``.
    Raises:
        CheckpointError: listing unused keys, missing keys and shape mismatches, all at once.
    """
    converted: dict[str, torch.Tensor] = {}
    unused: list[str] = []
    misshaped: list[str] = []
    for key, value in state_dict.items():
        if IGNORED.fullmatch(key):
            continue
        target = _rename(key)
        if target not in expected:
            unused.append(key)
            continue
        tensor = _tensor(value, key)
        if tuple(tensor.shape) != tuple(expected[target]):
            misshaped.append(f"{key}: checkpoint {tuple(tensor.shape)} vs network {tuple(expected[target])}")
            continue
        converted[target] = tensor
    missing = sorted(set(expected) - set(converted) - {m.split(":")[0] for m in misshaped})
    if unused or missing or misshaped:
        parts = []
        if unused:
            parts.append(f"{len(unused)} unused key(s): " + ", ".join(sorted(unused)))
        if missing:
            parts.append(f"{len(missing)} missing key(s): " + ", ".join(missing))
        if misshaped:
            parts.append(f"{len(misshaped)} mis-shaped key(s): " + "; ".join(misshaped))
        raise CheckpointError("MinVIS checkpoint does not fit the network: " + " | ".join(parts))
    return converted


def cutler_backbone_state_dict(cutler: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """The ``backbone.*`` entries of a MinVIS model taken from a CutLER checkpoint.

    CutLER's ResNet-50 (``backbone.bottom_up.stem.*``, ``backbone.bottom_up.res2.0.*`` ...) has
    the same layout and names under ``bottom_up``; its batch-norm statistics become FrozenBN
    buffers (``num_batches_tracked`` dropped). The FPN and heads are not used.
    """
    sd = unwrap_checkpoint(cutler)
    prefix = "backbone.bottom_up."
    out = {"backbone." + k[len(prefix):]: _tensor(v, k) for k, v in sd.items()
           if k.startswith(prefix) and not k.endswith("num_batches_tracked")}
    if not out:
        raise CheckpointError("the CutLER checkpoint has no backbone.bottom_up.* keys "
                              f"(first keys: {', '.join(list(sd)[:5])})")
    return out


def load_backbone(model: torch.nn.Module, backbone_sd: Mapping[str, torch.Tensor]) -> None:
    """Load ``backbone.*`` entries strictly into ``model.backbone`` (all its keys, right shapes)."""
    expected = {"backbone." + k: v.shape for k, v in model.backbone.state_dict().items()}
    converted = convert_state_dict(backbone_sd, expected)
    model.backbone.load_state_dict({k[len("backbone."):]: v for k, v in converted.items()}, strict=True)
