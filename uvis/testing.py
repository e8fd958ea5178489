"""Small deterministic stand-ins shared by tests and benchmarks (no models, no weights)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np


def unit(v: np.ndarray | Sequence) -> np.ndarray:
    """Rows L2-normalised, float32."""
    v = np.asarray(v, np.float32)
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


@dataclass(frozen=True)
class ToyTextEncoder:
    """A deterministic text 'model' over a known vocabulary.

    A prompt naming class i embeds to the unit vector along axis i plus a small offset
    (0.1) on one of three extra axes chosen by the prompt's length, so templates differ a
    little. ``dim`` must be at least ``len(vocabulary) + 3``. Call it with a list of
    prompts; returns (P, dim) float32 normalised rows.
    """

    vocabulary: tuple[str, ...]
    dim: int

    def __call__(self, prompts: Sequence[str]) -> np.ndarray:
        n = len(self.vocabulary)
        if self.dim < n + 3:
            raise ValueError(f"dim must be >= {n + 3} for {n} classes")
        out = np.zeros((len(prompts), self.dim))
        for row, prompt in enumerate(prompts):
            words = f" {prompt} "
            cls = next(i for i, c in enumerate(self.vocabulary) if f" {c.replace('_', ' ')} " in words)
            out[row, cls] = 1.0
            out[row, n + (len(prompt) % 3)] = 0.1
        return unit(out)


def column_runs(mask: np.ndarray) -> list[int]:
    """Uncompressed COCO RLE counts of a (H, W) mask, by a plain loop (a test reference):
    column-major run lengths, starting with the zeros."""
    out, cur, run = [], 0, 0
    for v in np.asarray(mask).flatten(order="F").astype(int).tolist():
        if v == cur:
            run += 1
        else:
            out.append(run)
            cur, run = v, 1
    out.append(run)
    return out
