"""Build the configured embedder: ``make_embedder(cfg.embedder)``."""
from __future__ import annotations

from uvis.config import EmbedderConfig
from uvis.embedders.base import Embedder
from uvis.errors import ConfigError

BACKENDS: tuple[str, ...] = ("clip", "efficientnet")


def make_embedder(cfg: EmbedderConfig) -> Embedder:
    """The embedder named by ``cfg.backend`` (``clip`` | ``efficientnet``).

    ``clip`` uses ``clip_model``/``clip_pretrained`` (``none`` = seeded random weights;
    ``uvis-tiny-vit`` = the tiny test ViT); ``efficientnet`` needs no network.
    ``crop_padding``, ``grey_background``, ``batch_size`` and ``device`` apply to both.

    Raises:
        ConfigError: unknown backend or bad value; MissingWeightsError: weights missing.
    """
    common = dict(
        device=cfg.device,
        batch_size=cfg.batch_size,
        padding=cfg.crop_padding,
        grey_background=cfg.grey_background,
    )
    if cfg.backend == "clip":
        from uvis.embedders.clip import ClipEmbedder

        return ClipEmbedder(cfg.clip_model, cfg.clip_pretrained, **common)
    if cfg.backend == "efficientnet":
        from uvis.embedders.efficientnet import EfficientNetEmbedder

        return EfficientNetEmbedder(**common)
    raise ConfigError(f"embedder.backend must be one of {', '.join(BACKENDS)}; got {cfg.backend!r}")
