"""ResNet-50 (BN, stride in the 3x3 conv) and FPN (BN on lateral and output convs, P6 by
max-pool), as detectron2's ``build_resnet_fpn_backbone`` with CutLER's settings.

Input: (N, 3, H, W) normalised float32, H and W multiples of 32.
Output: five maps p2..p6, each (N, 256, H/s, W/s) for strides s = 4, 8, 16, 32, 64.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from uvis.proposers.cutler.layers import ConvBN

RESNET50_BLOCKS: tuple[int, ...] = (3, 4, 6, 3)
"""Bottleneck blocks of res2..res5."""

FPN_STRIDES: tuple[int, ...] = (4, 8, 16, 32, 64)
"""Strides of p2..p6 in input pixels."""


class Bottleneck(nn.Module):
    """1x1 -> 3x3 (stride here, ``STRIDE_IN_1X1: False``) -> 1x1, plus a projection
    shortcut when the channel count or resolution changes; ReLU after each and after the sum.
    """

    def __init__(self, in_channels: int, mid_channels: int, out_channels: int, stride: int):
        super().__init__()
        self.conv1 = ConvBN(in_channels, mid_channels, 1)
        self.conv2 = ConvBN(mid_channels, mid_channels, 3, stride=stride, padding=1)
        self.conv3 = ConvBN(mid_channels, out_channels, 1)
        self.shortcut: ConvBN | None = (
            ConvBN(in_channels, out_channels, 1, stride=stride) if in_channels != out_channels or stride != 1 else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu_(self.conv1(x))
        out = F.relu_(self.conv2(out))
        out = self.conv3(out)
        out += x if self.shortcut is None else self.shortcut(x)
        return F.relu_(out)


class ResNet50(nn.Module):
    """Stem (7x7/2 conv, BN, ReLU, 3x3/2 max-pool) and stages res2..res5.

    ``forward`` returns [res2, res3, res4, res5] with 256, 512, 1024, 2048 channels at
    strides 4, 8, 16, 32.
    """

    def __init__(self) -> None:
        super().__init__()
        self.stem = ConvBN(3, 64, 7, stride=2, padding=3)
        stages = []
        in_ch, mid, out = 64, 64, 256
        for index, count in enumerate(RESNET50_BLOCKS):
            first_stride = 1 if index == 0 else 2
            blocks = [
                Bottleneck(in_ch if b == 0 else out, mid, out, first_stride if b == 0 else 1) for b in range(count)
            ]
            stages.append(nn.Sequential(*blocks))
            in_ch, mid, out = out, mid * 2, out * 2
        self.stages = nn.ModuleList(stages)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = F.relu_(self.stem(x))
        x = F.max_pool2d(x, kernel_size=3, stride=2, padding=1)
        outputs = []
        for stage in self.stages:
            x = stage(x)
            outputs.append(x)
        return outputs


class FPN(nn.Module):
    """Feature pyramid: 1x1 lateral and 3x3 output convs with BN (no bias), top-down
    nearest 2x upsampling with sum fusion, and p6 = max_pool(p5, kernel 1, stride 2).
    """

    def __init__(self, in_channels: tuple[int, ...] = (256, 512, 1024, 2048), out_channels: int = 256):
        super().__init__()
        self.lateral = nn.ModuleList(ConvBN(c, out_channels, 1) for c in in_channels)
        self.output = nn.ModuleList(ConvBN(out_channels, out_channels, 3, padding=1) for _ in in_channels)

    def forward(self, feats: list[torch.Tensor]) -> list[torch.Tensor]:
        """``feats``: [res2..res5]; returns [p2, p3, p4, p5, p6]."""
        prev = self.lateral[-1](feats[-1])
        results = [self.output[-1](prev)]
        for level in range(len(feats) - 2, -1, -1):
            top_down = F.interpolate(prev, scale_factor=2.0, mode="nearest")
            prev = self.lateral[level](feats[level])
            prev += top_down
            results.insert(0, self.output[level](prev))
        results.append(F.max_pool2d(results[-1], kernel_size=1, stride=2, padding=0))
        return results


class Backbone(nn.Module):
    """ResNet-50 + FPN: (N, 3, H, W) -> [p2, p3, p4, p5, p6]."""

    def __init__(self) -> None:
        super().__init__()
        self.body = ResNet50()
        self.fpn = FPN()

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return self.fpn(self.body(x))
