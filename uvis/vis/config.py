"""Architecture and inference settings of the MinVIS model (the only home of these defaults).

Defaults are MinVIS's R50 YouTube-VIS 2019 config
(``video_maskformer2_R50_bs32_8ep_frame.yaml`` on top of Mask2Former's R50 base):
ResNet-50 with FrozenBN, MSDeformAttn pixel decoder (6 layers, 8 heads, 4 points, FFN 1024)
over res3..res5, masked-attention decoder with 9 layers, 100 queries, 256 dims, FFN 2048.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

from uvis.errors import ConfigError

BACKBONES: tuple[str, ...] = ("resnet50", "cutler")
"""``resnet50``: the MinVIS/Mask2Former ImageNet ResNet-50; ``cutler``: the same network
carrying CutLER's ``backbone.bottom_up.*`` weights (the paper's unsupervised setup).
Both have the same architecture and state-dict names; the name records where the backbone
weights come from."""


@dataclass(frozen=True)
class MinVISConfig:
    """Settings of :class:`uvis.vis.model.MinVIS`.

    Attributes:
        num_classes: object classes C (the class head has C + 1 outputs, the last = "no object").
        num_queries: Q, learnable object queries.
        hidden_dim: D, transformer width of the decoder (and of the pixel decoder, ``conv_dim``).
        nheads: attention heads (decoder and deformable encoder).
        dim_feedforward: decoder FFN width.
        dec_layers: masked-attention decoder layers (MinVIS's ``DEC_LAYERS`` minus 1).
        pre_norm: LayerNorm before instead of after each decoder sub-layer.
        enc_layers: deformable encoder layers of the pixel decoder.
        enc_dim_feedforward: deformable encoder FFN width.
        enc_n_points: sampling points per head and level in MSDeformAttn.
        mask_dim: channels of the 1/4 mask features and of the mask embeddings.
        backbone: one of :data:`BACKBONES`.
        freeze_backbone: backbone convs get ``requires_grad=False`` (norms are FrozenBN anyway).
        pixel_mean, pixel_std: RGB normalisation on 0..255 input.
        size_divisibility: inputs are zero-padded (after normalisation) to a multiple of this.
        test_short_side: test-time resize of the shorter side (detectron2 ResizeShortestEdge).
        max_size: cap of the longer side at test time.
        window: frames per forward pass in video inference (memory bound, not a semantic knob).
    """

    num_classes: int = 40
    num_queries: int = 100
    hidden_dim: int = 256
    nheads: int = 8
    dim_feedforward: int = 2048
    dec_layers: int = 9
    pre_norm: bool = False
    enc_layers: int = 6
    enc_dim_feedforward: int = 1024
    enc_n_points: int = 4
    mask_dim: int = 256
    backbone: str = "resnet50"
    freeze_backbone: bool = True
    pixel_mean: tuple[float, float, float] = (123.675, 116.28, 103.53)
    pixel_std: tuple[float, float, float] = (58.395, 57.12, 57.375)
    size_divisibility: int = 32
    test_short_side: int = 360
    max_size: int = 1333
    window: int = 8

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> "MinVISConfig":
        """Raise :class:`ConfigError` naming the first invalid field."""
        positive = ("num_classes", "num_queries", "hidden_dim", "nheads", "dim_feedforward", "dec_layers",
                    "enc_layers", "enc_dim_feedforward", "enc_n_points", "mask_dim", "size_divisibility",
                    "test_short_side", "max_size", "window")
        for name in positive:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"vis.{name} must be a positive integer, got {value!r}")
        if self.hidden_dim % self.nheads:
            raise ConfigError(f"vis.hidden_dim ({self.hidden_dim}) must be divisible by vis.nheads ({self.nheads})")
        if self.hidden_dim % 32 or self.hidden_dim % 2:
            raise ConfigError(f"vis.hidden_dim must be a multiple of 32 (GroupNorm(32) groups), got {self.hidden_dim}")
        if self.backbone not in BACKBONES:
            raise ConfigError(f"vis.backbone must be one of {', '.join(BACKBONES)}, got {self.backbone!r}")
        for name in ("pixel_mean", "pixel_std"):
            value = getattr(self, name)
            if len(value) != 3 or not all(isinstance(v, (int, float)) for v in value):
                raise ConfigError(f"vis.{name} must be three numbers (R, G, B), got {value!r}")
        if min(self.pixel_std) <= 0:
            raise ConfigError(f"vis.pixel_std must be positive, got {self.pixel_std!r}")
        if self.max_size < self.test_short_side:
            raise ConfigError(f"vis.max_size ({self.max_size}) must be >= vis.test_short_side ({self.test_short_side})")
        return self

    def with_(self, **changes: Any) -> "MinVISConfig":
        """A validated copy with ``changes`` applied."""
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (tuples become lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "MinVISConfig":
        """Inverse of :meth:`to_dict`; unknown keys are an error."""
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown vis config key(s): {', '.join(unknown)}")
        values = {k: tuple(v) if k in ("pixel_mean", "pixel_std") else v for k, v in data.items()}
        return cls(**values)
