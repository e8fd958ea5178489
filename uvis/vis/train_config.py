"""Training settings of the VIS model (the only home of their defaults).

Defaults are MinVIS's R50 YouTube-VIS recipe (``video_maskformer2_R50_bs32_8ep_frame.yaml``
on Mask2Former's base): 16 images per batch, AdamW lr 1e-4, weight decay 0.05 (0 on norms
and embeddings), 6,000 iterations with the lr x0.1 at 4,000, full-model L2 gradient clip
0.01, AMP on CUDA, short side drawn from (360, 480) with the long side <= 1333, horizontal
flip; matcher costs class 2 / mask 5 / dice 5, loss weights 2 / 5 / 5, no-object weight
0.1, 12,544 points, oversampling 3.0, importance 0.75, deep supervision.

``model`` holds overrides of :class:`uvis.vis.config.MinVISConfig` (``num_classes`` is
always taken from the training data).
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import yaml

from uvis.errors import ConfigError

PRESETS = ("default", "tiny")

TINY_MODEL: dict[str, Any] = {
    "num_queries": 16, "hidden_dim": 64, "mask_dim": 64, "nheads": 4, "dim_feedforward": 128,
    "dec_layers": 2, "enc_layers": 1, "enc_dim_feedforward": 128,
}
"""The small CPU model of ``--preset tiny``: 2 decoder layers, 16 queries, 64 dims."""


@dataclass(frozen=True)
class TrainConfig:
    """Attributes (ranges in brackets):
        model: MinVISConfig overrides (dict).
        batch_size: images per iteration over all processes [>= 1, a multiple of the process count].
        max_iter: iterations [>= 1]. steps: iterations at which lr is multiplied by ``gamma``.
        lr, weight_decay, weight_decay_norm, weight_decay_embed: AdamW settings [>= 0].
        clip_norm: full-model L2 gradient clip (0: off).
        amp: mixed precision (float16 autocast + GradScaler) when the device is CUDA.
        min_sizes, max_size, flip_prob: augmentation (short-side choices, long-side cap, flip probability).
        num_points, oversample_ratio, importance_sample_ratio: point sampling of matcher and losses.
        cost_class, cost_mask, cost_dice: matcher costs. weight_ce, weight_mask, weight_dice: loss weights.
        no_object_weight: CE weight of "no object" [0, 1]. deep_supervision: losses on every decoder layer.
        seed: seeds the model init, the data order, the augmentation and the point sampling.
        checkpoint_period: iterations between checkpoints (the last iteration always writes one).
        keep_checkpoints: how many periodic checkpoints to keep (older ones are deleted).
        num_workers: data-loader worker processes (0: load in the training process).
        max_frames: train on the first N frames with instances only (None: all frames).
        tensorboard: also write TensorBoard event files (needs the ``tensorboard`` package).
    """

    model: dict[str, Any] = field(default_factory=dict)
    batch_size: int = 16
    max_iter: int = 6000
    steps: tuple[int, ...] = (4000,)
    gamma: float = 0.1
    lr: float = 1e-4
    weight_decay: float = 0.05
    weight_decay_norm: float = 0.0
    weight_decay_embed: float = 0.0
    clip_norm: float = 0.01
    amp: bool = True
    min_sizes: tuple[int, ...] = (360, 480)
    max_size: int = 1333
    flip_prob: float = 0.5
    num_points: int = 12544
    oversample_ratio: float = 3.0
    importance_sample_ratio: float = 0.75
    cost_class: float = 2.0
    cost_mask: float = 5.0
    cost_dice: float = 5.0
    weight_ce: float = 2.0
    weight_mask: float = 5.0
    weight_dice: float = 5.0
    no_object_weight: float = 0.1
    deep_supervision: bool = True
    seed: int = 0
    checkpoint_period: int = 500
    keep_checkpoints: int = 2
    num_workers: int = 4
    max_frames: int | None = None
    tensorboard: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "steps", tuple(int(s) for s in self.steps))
        object.__setattr__(self, "min_sizes", tuple(int(s) for s in self.min_sizes))
        object.__setattr__(self, "model", dict(self.model))
        self.validate()

    def validate(self) -> "TrainConfig":
        """Raise :class:`ConfigError` naming the first invalid field."""
        for name in ("batch_size", "max_iter", "max_size", "num_points", "checkpoint_period", "keep_checkpoints"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ConfigError(f"train.{name} must be a positive integer, got {v!r}")
        for name in ("lr", "weight_decay", "weight_decay_norm", "weight_decay_embed", "clip_norm", "gamma",
                     "cost_class", "cost_mask", "cost_dice", "weight_ce", "weight_mask", "weight_dice"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0:
                raise ConfigError(f"train.{name} must be a non-negative number, got {v!r}")
        if self.lr <= 0:
            raise ConfigError(f"train.lr must be positive, got {self.lr!r}")
        for name in ("flip_prob", "no_object_weight", "importance_sample_ratio"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or not 0 <= v <= 1:
                raise ConfigError(f"train.{name} must be in [0, 1], got {v!r}")
        if self.oversample_ratio < 1:
            raise ConfigError(f"train.oversample_ratio must be >= 1, got {self.oversample_ratio!r}")
        if not self.min_sizes or min(self.min_sizes) < 32:
            raise ConfigError(f"train.min_sizes must be short sides >= 32, got {list(self.min_sizes)}")
        if list(self.steps) != sorted(self.steps) or any(s < 1 for s in self.steps):
            raise ConfigError(f"train.steps must be increasing positive iterations, got {list(self.steps)}")
        if self.num_workers < 0:
            raise ConfigError(f"train.num_workers must be >= 0, got {self.num_workers!r}")
        if self.max_frames is not None and self.max_frames < 1:
            raise ConfigError(f"train.max_frames must be >= 1 or null, got {self.max_frames!r}")
        if "num_classes" in self.model:
            raise ConfigError("train.model.num_classes is taken from the training data; remove it")
        return self

    def with_(self, **changes: Any) -> "TrainConfig":
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["steps"], d["min_sizes"] = list(self.steps), list(self.min_sizes)
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any], base: "TrainConfig | None" = None) -> "TrainConfig":
        """``data`` over ``base`` (default: the defaults); unknown keys are an error."""
        if not isinstance(data, dict):
            raise ConfigError(f"a training config must be a mapping, got {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown training config key(s): {', '.join(unknown)} (known: {', '.join(sorted(known))})")
        base = base or cls()
        values = base.to_dict()
        for k, v in data.items():
            values[k] = {**values["model"], **v} if k == "model" and isinstance(v, dict) else v
        try:
            return cls(**values)
        except TypeError as exc:
            raise ConfigError(f"invalid training config: {exc}") from exc

    @classmethod
    def load(cls, path: str | Path, base: "TrainConfig | None" = None) -> "TrainConfig":
        p = Path(path)
        try:
            text = p.read_text()
            data = yaml.safe_load(text) if p.suffix in (".yaml", ".yml") else json.loads(text)
        except OSError as exc:
            raise ConfigError(f"cannot read training config {p}: {exc.strerror or exc}") from exc
        except (yaml.YAMLError, json.JSONDecodeError) as exc:
            raise ConfigError(f"training config {p} is not valid YAML/JSON: {exc}") from exc
        return cls.from_dict(data or {}, base)


def preset(name: str) -> TrainConfig:
    """``default`` (MinVIS R50) or ``tiny`` (the small CPU config of the overfit test)."""
    if name == "default":
        return TrainConfig()
    if name == "tiny":
        return TrainConfig(model=dict(TINY_MODEL), batch_size=2, max_iter=300, steps=(250,), lr=1e-3,
                           min_sizes=(192,), max_size=1333, checkpoint_period=100, num_workers=0,
                           num_points=3136)
    raise ConfigError(f"unknown training preset {name!r}; choose one of {', '.join(PRESETS)}")
