"""Build the configured embedder: ``make_embedder(cfg.embedder)``."""
from __future__ import annotations

from typing import Any

from uvis.config import EmbedderConfig
from uvis.embedders.base import Embedder
from uvis.errors import BadInputError, ConfigError

BACKENDS: tuple[str, ...] = ("clip", "efficientnet")

# The EmbedderConfig fields each backend's crop embeddings depend on (device and batch
# size excluded): the embedder part of the cache key (uvis.cache.cache_settings).
_OUTPUT_FIELDS: dict[str, tuple[str, ...]] = {
    "clip": ("clip_model", "clip_pretrained", "crop_padding", "grey_background"),
    "efficientnet": ("crop_padding", "grey_background"),
}


def embedder_settings(cfg: EmbedderConfig) -> dict[str, Any]:
    """The settings of ``cfg`` that change the chosen backend's embeddings (no device or
    batch size). Weights digests are in the embedder's ``name``, also in the cache key."""
    fields = _OUTPUT_FIELDS.get(cfg.backend, tuple(k for k in vars(cfg) if k not in ("device", "batch_size")))
    return {"backend": cfg.backend, **{k: getattr(cfg, k) for k in fields}}


def make_embedder(cfg: EmbedderConfig) -> Embedder:
    """The embedder named by ``cfg.backend`` (``clip`` | ``efficientnet``).

    ``clip`` uses ``clip_model``/``clip_pretrained`` (``none`` = seeded random weights;
    ``uvis-tiny-vit`` = the tiny test ViT); ``efficientnet`` needs no network.
    ``crop_padding``, ``grey_background``, ``batch_size`` and ``device`` apply to both.

    Raises:
        ConfigError: unknown backend or bad value; MissingWeightsError: weights missing;
        BadInputError: a weights file cannot be read (names the file).
    """
    try:
        return _make(cfg)
    except OSError as exc:
        raise BadInputError(f"embedder '{cfg.backend}': cannot read {exc.filename or 'its weights'}: "
                            f"{exc.strerror or exc} (embedder.clip_pretrained / --clip-pretrained)") from exc


def _make(cfg: EmbedderConfig) -> Embedder:
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
