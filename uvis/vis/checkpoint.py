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

import torch

from uvis.errors import BadInputError
from uvis.proposers.cutler.checkpoint import as_tensor
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


_PICKLE_GLOBALS = frozenset({
    ("collections", "OrderedDict"), ("numpy", "ndarray"), ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
})
"""What a detectron2 ``.pkl`` checkpoint (a pickled dict of numpy arrays) may reference."""


def _load_pickle(path: Path) -> Any:
    """Unpickle a detectron2 model-zoo ``.pkl`` allowing only numpy arrays and plain containers."""
    import pickle

    class _Restricted(pickle.Unpickler):
        def find_class(self, module: str, name: str) -> Any:
            if (module, name) not in _PICKLE_GLOBALS:
                raise pickle.UnpicklingError(f"{path}: refusing to load {module}.{name} (only numpy arrays allowed)")
            return super().find_class(module, name)

    with open(path, "rb") as fh:
        return _Restricted(fh, encoding="latin1").load()


def load_checkpoint_file(path: str | Path) -> dict[str, Any]:
    """The state dict of a checkpoint file: ``torch.load(path, weights_only=True)`` for ``.pth``,
    a restricted unpickler (numpy arrays only) for detectron2 model-zoo ``.pkl`` files."""
    path = Path(path)
    if path.suffix != ".pkl":
        return _load_file(path, "MinVIS/Mask2Former")
    if not path.is_file():
        raise BadInputError(f"MinVIS/Mask2Former weights file not found: {path}")
    try:
        obj = _load_pickle(path)
    except Exception as exc:  # unpickling errors come in many types
        raise CheckpointError(f"cannot read {path} as a detectron2 .pkl checkpoint: {exc}") from exc
    return unwrap_checkpoint(obj)


def load_model(name_or_path: str | Path, *, device: str | torch.device = "cpu",
               cfg: MinVISConfig | None = None, offline: bool | None = None, progress: bool = True):
    """Resolve weights (a registry name such as ``minvis_ytvis19_R50`` or a local file; see
    :mod:`uvis.weights`), read them and build the model with :func:`uvis.vis.model.load_minvis`.

    Raises:
        MissingWeightsError: unknown name, or not cached and offline / no network.
        CheckpointError: unreadable file or keys/shapes that do not fit.
    """
    from uvis import weights
    from uvis.vis.model import load_minvis

    path = weights.resolve(name_or_path, offline=offline, progress=progress)
    try:
        return load_minvis(load_checkpoint_file(path), cfg=cfg, device=device)
    except CheckpointError as exc:
        raise CheckpointError(f"{path}: {exc}") from exc


def _shape(sd: Mapping[str, Any], key: str) -> tuple[int, ...]:
    if key not in sd:
        raise CheckpointError(f"the state dict has no {key!r}; is it a MinVIS / Mask2Former checkpoint? "
                              f"(first keys: {', '.join(list(sd)[:5])})")
    return tuple(as_tensor(sd[key], key).shape)


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
        tensor = as_tensor(value, key)
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
    out = {"backbone." + k[len(prefix):]: as_tensor(v, k) for k, v in sd.items()
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


def load_cutler_backbone(model: torch.nn.Module, name_or_path: str | Path = "cutler_cascade_final", *,
                         offline: bool | None = None) -> None:
    """Put the ResNet-50 of a CutLER checkpoint (registry name or file) into ``model.backbone``
    (the ``backbone="cutler"`` setup: the paper's unsupervised backbone, kept frozen)."""
    from uvis import weights

    path = weights.resolve(name_or_path, offline=offline)
    load_backbone(model, cutler_backbone_state_dict(_load_file(path, "CutLER")))
