"""The embedder interface: instance crops (and, for CLIP, prompts) to L2-normalised vectors."""
from __future__ import annotations

from typing import Protocol, Sequence, runtime_checkable

import numpy as np

from uvis.masks import RLE


@runtime_checkable
class Embedder(Protocol):
    """Embeds instance crops of one frame.

    Attributes:
        name: identifies model and weights (e.g. ``"clip:ViT-B-32:openai"``); cached
            embeddings and text embeddings are keyed by it.
        dim: embedding dimension D.
        has_text: True when :meth:`encode_text` is available (CLIP-like models).
        logit_scale: the model's softmax temperature multiplier (100 for OpenAI CLIP;
            1.0 when ``has_text`` is False).
    """

    name: str
    dim: int
    has_text: bool
    logit_scale: float

    def embed_crops(self, frame: np.ndarray, boxes: np.ndarray, masks: Sequence[RLE]) -> np.ndarray:
        """Embed the box crops of one frame.

        Args:
            frame: RGB uint8 (H, W, 3).
            boxes: (N, 4) float32 xyxy pixels.
            masks: N RLEs at (H, W) (used when the background is greyed).
        Returns:
            (N, D) float32, rows L2-normalised.
        """
        ...

    def encode_text(self, prompts: Sequence[str]) -> np.ndarray:
        """(P, D) float32 L2-normalised text embeddings; raises if ``has_text`` is False."""
        ...
