"""Building blocks: conv + batch norm (foldable at load time) and box arithmetic.

Boxes are (R, 4) float32 tensors, xyxy, in pixels of the network input (the resized,
unpadded image), exactly as in detectron2's ``Boxes``.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class ConvBN(nn.Module):
    """``Conv2d`` without bias followed by ``BatchNorm2d`` (eps 1e-5), no activation.

    This is detectron2's ``Conv2d(..., bias=False, norm=BN)``. In inference the batch
    norm is an affine map per channel; :meth:`fuse` folds it into the convolution's
    weight and bias (same output up to float rounding, one op fewer).

    Args:
        in_channels, out_channels: channel counts.
        kernel_size: square kernel, e.g. 1, 3 or 7.
        stride: 1 or 2.
        padding: zero padding on each side.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, padding: int = 0):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=padding, bias=False)
        self.bn: nn.Module = nn.BatchNorm2d(out_channels)
        self.fused = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(x))

    @torch.no_grad()
    def fuse(self) -> None:
        """Fold the batch norm's running statistics and affine parameters into the conv."""
        if self.fused:
            return
        bn = self.bn
        assert isinstance(bn, nn.BatchNorm2d)
        scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        conv = self.conv
        fused = nn.Conv2d(
            conv.in_channels, conv.out_channels, conv.kernel_size, stride=conv.stride,
            padding=conv.padding, bias=True,
        ).to(device=conv.weight.device, dtype=conv.weight.dtype)
        fused.weight.copy_(conv.weight * scale.reshape(-1, 1, 1, 1))
        fused.bias.copy_(bn.bias - bn.running_mean * scale)
        self.conv = fused
        self.bn = nn.Identity()
        self.fused = True


# --------------------------------------------------------------------------- boxes


def decode_boxes(
    deltas: torch.Tensor, boxes: torch.Tensor, weights: tuple[float, ...], scale_clamp: float
) -> torch.Tensor:
    """detectron2 ``Box2BoxTransform.apply_deltas`` for one box per row.

    Args:
        deltas: (R, 4) float (dx, dy, dw, dh).
        boxes: (R, 4) reference boxes, xyxy.
        weights: (wx, wy, ww, wh) divisors of the deltas.
        scale_clamp: maximum of dw/dh after division (log(1000/16)).
    Returns:
        (R, 4) float32 decoded boxes, xyxy.
    """
    deltas = deltas.float()
    boxes = boxes.to(deltas.dtype)
    widths = boxes[:, 2] - boxes[:, 0]
    heights = boxes[:, 3] - boxes[:, 1]
    ctr_x = boxes[:, 0] + 0.5 * widths
    ctr_y = boxes[:, 1] + 0.5 * heights
    wx, wy, ww, wh = weights
    dx = deltas[:, 0] / wx
    dy = deltas[:, 1] / wy
    dw = torch.clamp(deltas[:, 2] / ww, max=scale_clamp)
    dh = torch.clamp(deltas[:, 3] / wh, max=scale_clamp)
    pred_ctr_x = dx * widths + ctr_x
    pred_ctr_y = dy * heights + ctr_y
    pred_w = torch.exp(dw) * widths
    pred_h = torch.exp(dh) * heights
    return torch.stack(
        (pred_ctr_x - 0.5 * pred_w, pred_ctr_y - 0.5 * pred_h, pred_ctr_x + 0.5 * pred_w, pred_ctr_y + 0.5 * pred_h),
        dim=-1,
    )


def clip_boxes(boxes: torch.Tensor, image_hw: tuple[int, int]) -> torch.Tensor:
    """Clamp xyxy boxes to [0, W] x [0, H] (detectron2 ``Boxes.clip``); returns a new tensor."""
    h, w = image_hw
    return torch.stack(
        (boxes[:, 0].clamp(min=0, max=w), boxes[:, 1].clamp(min=0, max=h),
         boxes[:, 2].clamp(min=0, max=w), boxes[:, 3].clamp(min=0, max=h)),
        dim=-1,
    )


def nonempty(boxes: torch.Tensor, threshold: float = 0.0) -> torch.Tensor:
    """(R,) bool: width > threshold and height > threshold."""
    return ((boxes[:, 2] - boxes[:, 0]) > threshold) & ((boxes[:, 3] - boxes[:, 1]) > threshold)


def cell_anchors(size: float, ratios: tuple[float, ...]) -> torch.Tensor:
    """Anchors of one grid cell centred on (0, 0), (A, 4) float32 xyxy, one per ratio.

    For aspect ratio r = h/w and area size**2: w = sqrt(size**2 / r), h = r * w
    (detectron2 ``DefaultAnchorGenerator.generate_cell_anchors``, in Python floats).
    """
    anchors = []
    area = size**2.0
    for ratio in ratios:
        w = math.sqrt(area / ratio)
        h = ratio * w
        anchors.append([-w / 2.0, -h / 2.0, w / 2.0, h / 2.0])
    return torch.tensor(anchors, dtype=torch.float32)


def grid_anchors(cell: torch.Tensor, stride: int, grid_hw: tuple[int, int], offset: float) -> torch.Tensor:
    """All anchors of one feature map, (H * W * A, 4) float32, ordered (y, x, anchor).

    Args:
        cell: (A, 4) cell anchors from :func:`cell_anchors`.
        stride: the feature map's stride in input pixels.
        grid_hw: the feature map's (H, W).
        offset: anchor centre offset in units of the stride.
    """
    gh, gw = grid_hw
    device = cell.device
    shifts_x = torch.arange(offset * stride, gw * stride, step=stride, dtype=torch.float32, device=device)
    shifts_y = torch.arange(offset * stride, gh * stride, step=stride, dtype=torch.float32, device=device)
    shift_y, shift_x = torch.meshgrid(shifts_y, shifts_x, indexing="ij")
    shift_x = shift_x.reshape(-1)
    shift_y = shift_y.reshape(-1)
    shifts = torch.stack((shift_x, shift_y, shift_x, shift_y), dim=1)
    return (shifts.view(-1, 1, 4) + cell.view(1, -1, 4)).reshape(-1, 4)


def relu_(x: torch.Tensor) -> torch.Tensor:
    """In-place ReLU (inference tensors are never needed twice)."""
    return F.relu_(x)
