"""Small random-initialised CLIP models for tests, benchmarks and offline demos.

:func:`register_tiny_clip` registers the architecture of a tiny ViT CLIP with
open_clip's own config registry (``open_clip.add_model_config``), so the real
open_clip code path builds it: ``ClipEmbedder("uvis-tiny-vit", "none")``.
:class:`~uvis.embedders.clip.ClipEmbedder` registers it by itself when asked for
``uvis-tiny-vit``, so the CLI works with ``--clip-model uvis-tiny-vit
--clip-pretrained none`` in any process.
"""
from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from uvis.errors import UvisError

if TYPE_CHECKING:
    from uvis.embedders.clip import ClipEmbedder

TINY_CLIP_NAME = "uvis-tiny-vit"


def tiny_clip_config() -> dict[str, Any]:
    """The open_clip model config of the tiny ViT: 64×64 input, 16-px patches, 2 layers of
    width 64 in each tower, 32-d joint embedding, the standard CLIP BPE vocabulary."""
    return {
        "embed_dim": 32,
        "vision_cfg": {"image_size": 64, "patch_size": 16, "width": 64, "layers": 2, "head_width": 32},
        "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
    }


def register_tiny_clip(name: str = TINY_CLIP_NAME) -> str:
    """Register the tiny ViT config under ``name`` with open_clip; idempotent.

    open_clip reads configs from JSON files, so the config is written to a temporary
    file, registered (open_clip reads it immediately) and the file removed.

    Returns:
        ``name``, now listed by ``open_clip.list_models()``.
    Raises:
        UvisError: ``name`` is already an open_clip model with a different config.
    """
    import open_clip

    config = tiny_clip_config()
    if name in open_clip.list_models():
        if open_clip.get_model_config(name) != config:
            raise UvisError(f"open_clip already has a model named '{name}' with a different config")
        return name
    with tempfile.TemporaryDirectory(prefix="uvis-open-clip-") as tmp:
        path = Path(tmp) / f"{name}.json"
        path.write_text(json.dumps(config))
        open_clip.add_model_config(path)
    if name not in open_clip.list_models():  # pragma: no cover - open_clip API change
        raise UvisError(f"registering the open_clip model config '{name}' failed")
    return name


def tiny_clip_embedder(**kwargs: Any) -> "ClipEmbedder":
    """A :class:`ClipEmbedder` on the tiny ViT with seeded random weights.

    Keyword arguments go to :class:`ClipEmbedder` (``device``, ``batch_size``,
    ``padding``, ``grey_background``, ``seed``).
    """
    from uvis.embedders.clip import ClipEmbedder

    return ClipEmbedder(register_tiny_clip(), "none", **kwargs)
