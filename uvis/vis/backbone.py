"""ResNet-50 with detectron2's module names and frozen batch norm (MinVIS / Mask2Former R50).

State-dict names are exactly detectron2's: ``stem.conv1.weight``,
``stem.conv1.norm.{weight,bias,running_mean,running_var}``, ``res2.0.shortcut.weight``,
``res2.0.conv1.norm.weight``, ... ``res5.2.conv3.norm.running_var`` (prefixed by
``backbone.`` in the full model). Settings: ``STRIDE_IN_1X1: False`` (the stride of a
stage's first block sits in its 3x3 conv), no dilation, FrozenBN (eps 1e-5) everywhere.

Input: (N, 3, H, W) normalised float, H and W multiples of 32.
Output: dict ``res2..res5`` with 256, 512, 1024, 2048 channels at strides 4, 8, 16, 32.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

RESNET50_BLOCKS: tuple[int, ...] = (3, 4, 6, 3)
"""Bottleneck blocks of res2..res5."""
FEATURE_CHANNELS: dict[str, int] = {"res2": 256, "res3": 512, "res4": 1024, "res5": 2048}
FEATURE_STRIDES: dict[str, int] = {"res2": 4, "res3": 8, "res4": 16, "res5": 32}


class FrozenBatchNorm2d(nn.Module):
    """Batch norm with fixed statistics and affine parameters, all buffers (never trained).

    ``y = (x - running_mean) / sqrt(running_var + eps) * weight + bias``, per channel of a
    (N, C, H, W) tensor. Same buffers and names as detectron2's ``FrozenBatchNorm2d``.
    """

    def __init__(self, num_features: int, eps: float = 1e-5):
        super().__init__()
        self.num_features = num_features
        self.eps = eps
        self.register_buffer("weight", torch.ones(num_features))
        self.register_buffer("bias", torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features) - eps)

    def scale_shift(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(scale, shift), each (C,), with ``y = x * scale + shift``."""
        scale = self.weight * torch.rsqrt(self.running_var + self.eps)
        return scale, self.bias - self.running_mean * scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale, shift = self.scale_shift()
        return x * scale.view(1, -1, 1, 1).to(x.dtype) + shift.view(1, -1, 1, 1).to(x.dtype)


class ConvFrozenBN(nn.Conv2d):
    """detectron2 ``Conv2d(..., bias=False, norm=FrozenBN)``: a conv with a ``norm`` child.

    The forward folds the frozen norm into the conv's weight and bias on the fly (one conv,
    no extra pass over the output; the state dict keeps detectron2's separate entries).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, padding: int = 0):
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, padding=padding, bias=False)
        self.norm = FrozenBatchNorm2d(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale, shift = self.norm.scale_shift()
        weight = self.weight * scale.view(-1, 1, 1, 1)
        return F.conv2d(x, weight.to(x.dtype), shift.to(x.dtype), self.stride, self.padding)


class BottleneckBlock(nn.Module):
    """1x1 -> 3x3 (stride) -> 1x1 with FrozenBN, ReLU after each and after the residual sum;
    a 1x1 projection ``shortcut`` when channels or resolution change (declared first, as in
    detectron2, so the state-dict order matches)."""

    def __init__(self, in_channels: int, bottleneck_channels: int, out_channels: int, stride: int):
        super().__init__()
        self.shortcut: ConvFrozenBN | None = None
        if in_channels != out_channels or stride != 1:
            self.shortcut = ConvFrozenBN(in_channels, out_channels, 1, stride=stride)
        self.conv1 = ConvFrozenBN(in_channels, bottleneck_channels, 1)
        self.conv2 = ConvFrozenBN(bottleneck_channels, bottleneck_channels, 3, stride=stride, padding=1)
        self.conv3 = ConvFrozenBN(bottleneck_channels, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu_(self.conv1(x))
        out = F.relu_(self.conv2(out))
        out = self.conv3(out)
        out = out + (x if self.shortcut is None else self.shortcut(x))
        return F.relu_(out)


class BasicStem(nn.Module):
    """7x7/2 conv (``conv1``) with FrozenBN, ReLU, 3x3/2 max-pool: stride 4, 64 channels."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = ConvFrozenBN(3, 64, 7, stride=2, padding=3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.max_pool2d(F.relu_(self.conv1(x)), kernel_size=3, stride=2, padding=1)


class ResNet50(nn.Module):
    """ResNet-50 trunk with children ``stem``, ``res2`` .. ``res5`` (detectron2 names).

    ``forward(x)`` -> {"res2": (N, 256, H/4, W/4), "res3": (N, 512, H/8, W/8),
    "res4": (N, 1024, H/16, W/16), "res5": (N, 2048, H/32, W/32)}.
    """

    def __init__(self) -> None:
        super().__init__()
        self.stem = BasicStem()
        in_ch, mid, out = 64, 64, 256
        for index, count in enumerate(RESNET50_BLOCKS):
            first_stride = 1 if index == 0 else 2
            blocks = [BottleneckBlock(in_ch if b == 0 else out, mid, out, first_stride if b == 0 else 1)
                      for b in range(count)]
            self.add_module(f"res{index + 2}", nn.Sequential(*blocks))
            in_ch, mid, out = out, mid * 2, out * 2

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Runs channels-last (faster convolutions on CPU); the outputs are channels-last too."""
        x = self.stem(x.contiguous(memory_format=torch.channels_last))
        outputs: dict[str, torch.Tensor] = {}
        for name in FEATURE_CHANNELS:
            x = getattr(self, name)(x)
            outputs[name] = x
        return outputs

    def freeze(self) -> "ResNet50":
        """``requires_grad=False`` on every parameter (the norms are buffers already)."""
        for p in self.parameters():
            p.requires_grad_(False)
        return self
