"""Text–instance matching (DESIGN §1.3) and exemplar matching, pure numpy.

Prompt matching: for C classes and T templates, text embeddings ``text`` (C, T, D)
(L2-normalised; prompt index = c * T + t). For instance embeddings q (N, D):
s(c, t) = q · text[c, t]. ``max`` pooling (the paper): label = class of the single
closest prompt; ``best_prompt`` = that prompt's index. ``mean`` pooling: the class
embedding is the normalised mean of its templates; ``best_prompt`` is still the closest
template of the chosen class. CLIP score = softmax over classes of
(logit_scale × class similarity), taken at the label.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

EXEMPLAR_LOGIT_SCALE = 100.0
"""Softmax temperature multiplier for exemplar matching (CLIP's value)."""


@dataclass(frozen=True)
class LabelScores:
    """Labelling of N instances against C classes.

    label (N,) int32 class index (-1: no class could be scored), clip_score (N,)
    float32 probability of the label, best_prompt (N,) int32 prompt index (-1: exemplar
    matching), probs (N, C) float32 class probabilities, class_sim (N, C) float32 the
    pooled cosine similarity per class (NaN where a class has no exemplar).
    """

    label: np.ndarray
    clip_score: np.ndarray
    best_prompt: np.ndarray
    probs: np.ndarray
    class_sim: np.ndarray

    def top_k(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(classes (N, k) int, probabilities (N, k) float32), best first."""
        k = min(k, self.probs.shape[1])
        if k == 0 or self.probs.shape[0] == 0:
            return np.zeros((self.probs.shape[0], 0), np.int64), np.zeros((self.probs.shape[0], 0), np.float32)
        part = np.argpartition(-self.probs, k - 1, axis=1)[:, :k]
        vals = np.take_along_axis(self.probs, part, axis=1)
        order = np.argsort(-vals, axis=1, kind="stable")
        return np.take_along_axis(part, order, axis=1), np.take_along_axis(vals, order, axis=1)


def _softmax_rows(x: np.ndarray) -> np.ndarray:
    x = x - np.nanmax(x, axis=1, keepdims=True)
    e = np.exp(np.nan_to_num(x, nan=-np.inf))
    return e / e.sum(axis=1, keepdims=True)


def _normalise(x: np.ndarray, axis: int = -1) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=axis, keepdims=True), 1e-12)


def match_prompts(embeddings: np.ndarray, text: np.ndarray, logit_scale: float,
                  pooling: str = "max") -> LabelScores:
    """Label instances by their closest prompt.

    Args:
        embeddings: (N, D) float32, L2-normalised instance embeddings.
        text: (C, T, D) float32, L2-normalised prompt embeddings, class-major.
        logit_scale: softmax multiplier (the model's; 100 for OpenAI CLIP).
        pooling: ``max`` or ``mean`` over templates.
    """
    n = embeddings.shape[0]
    c, t, d = text.shape
    if n == 0:
        z = np.zeros(0, np.float32)
        return LabelScores(np.zeros(0, np.int32), z, np.zeros(0, np.int32),
                           np.zeros((0, c), np.float32), np.zeros((0, c), np.float32))
    emb = np.ascontiguousarray(embeddings, dtype=np.float32)
    sims = (emb @ text.reshape(c * t, d).T).reshape(n, c, t)  # (N, C, T)
    best_t = sims.argmax(axis=2)  # (N, C)
    if pooling == "max":
        class_sim = np.take_along_axis(sims, best_t[:, :, None], axis=2)[:, :, 0]
    elif pooling == "mean":
        class_emb = _normalise(text.mean(axis=1))  # (C, D)
        class_sim = emb @ class_emb.T
    else:
        raise ValueError(f"prompt pooling must be 'max' or 'mean', got {pooling!r}")
    label = class_sim.argmax(axis=1).astype(np.int32)
    probs = _softmax_rows(float(logit_scale) * class_sim.astype(np.float64)).astype(np.float32)
    rows = np.arange(n)
    best_prompt = (label * t + best_t[rows, label]).astype(np.int32)
    return LabelScores(label, probs[rows, label], best_prompt, probs, class_sim.astype(np.float32))


def match_exemplars(embeddings: np.ndarray, exemplar_embeddings: np.ndarray,
                    exemplar_labels: np.ndarray, num_classes: int,
                    logit_scale: float = EXEMPLAR_LOGIT_SCALE) -> LabelScores:
    """Label instances by their most similar user exemplar ("label by example").

    Class similarity = max cosine to that class's exemplars (NaN for classes without
    one); label = the most similar class. The score (``clip_score``) is that cosine
    similarity itself, so the CLIP threshold acts as a similarity threshold (a softmax
    over the few classes that have exemplars would be 1.0 for everything when only one
    class has exemplars); ``probs`` is the softmax over classes with exemplars, for
    display. With no exemplars at all, every label is -1 and every score 0.

    Args:
        embeddings: (N, D) normalised; exemplar_embeddings: (E, D) normalised;
        exemplar_labels: (E,) class indices in [0, num_classes).
    """
    n = embeddings.shape[0]
    class_sim = np.full((n, num_classes), np.nan, dtype=np.float32)
    if n and len(exemplar_labels):
        sims = embeddings @ exemplar_embeddings.T  # (N, E)
        for cls in np.unique(exemplar_labels):
            class_sim[:, cls] = sims[:, exemplar_labels == cls].max(axis=1)
    if n == 0 or not len(exemplar_labels):
        return LabelScores(np.full(n, -1, np.int32), np.zeros(n, np.float32), np.full(n, -1, np.int32),
                           np.zeros((n, num_classes), np.float32), class_sim)
    probs = _softmax_rows(logit_scale * class_sim.astype(np.float64)).astype(np.float32)
    label = np.nan_to_num(class_sim, nan=-np.inf).argmax(axis=1).astype(np.int32)
    rows = np.arange(n)
    score = np.clip(class_sim[rows, label], 0.0, 1.0).astype(np.float32)
    return LabelScores(label, score, np.full(n, -1, np.int32), probs, class_sim)
