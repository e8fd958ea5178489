"""Score filter and PMF decisions (DESIGN §1.4–1.5), vectorised over instances.

Every instance gets a :class:`~uvis.types.Reason` code and the similarity that decided
it: objectness for ``objectness``, the CLIP score for ``clip_score``, the PMF
similarity for ``pmf`` and for ``kept`` instances the PMF similarity if the class was
filtered, else the CLIP score.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from uvis.config import FilterConfig
from uvis.pmf import PrototypeMemory
from uvis.types import Reason


def clip_thresholds(labels: np.ndarray, cfg: FilterConfig, vocabulary: Sequence[str]) -> np.ndarray:
    """Per-instance CLIP threshold (N,) float32 honouring per-class overrides."""
    per_class = np.full(len(vocabulary), cfg.clip_threshold, dtype=np.float32)
    for i, name in enumerate(vocabulary):
        if name in cfg.clip_threshold_per_class:
            per_class[i] = cfg.clip_threshold_per_class[name]
    thr = np.full(len(labels), cfg.clip_threshold, dtype=np.float32)
    valid = labels >= 0
    thr[valid] = per_class[labels[valid]]
    return thr


def score_filter(objectness: np.ndarray, clip_score: np.ndarray, labels: np.ndarray,
                 cfg: FilterConfig, vocabulary: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Keep iff objectness >= threshold and CLIP score >= its (class) threshold.

    Args:
        objectness, clip_score: (N,) float32; labels: (N,) int32 (-1: unlabelled, dropped
            by the CLIP-score rule).
    Returns:
        decision (N,) int8 Reason codes, similarity (N,) float32.
    """
    n = len(objectness)
    decision = np.full(n, Reason.KEPT, dtype=np.int8)
    similarity = clip_score.astype(np.float32).copy()
    low_clip = (clip_score < clip_thresholds(labels, cfg, vocabulary)) | (labels < 0)
    decision[low_clip] = Reason.CLIP_SCORE
    low_obj = objectness < cfg.objectness_threshold
    decision[low_obj] = Reason.OBJECTNESS
    similarity[low_obj] = objectness[low_obj]
    return decision, similarity


def pmf_filter(decision: np.ndarray, similarity: np.ndarray, embeddings: np.ndarray,
               labels: np.ndarray, memory: PrototypeMemory, cfg: FilterConfig
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Apply PMF to instances still kept after the score filter.

    An instance with label c whose class has >= ``pmf_min_members`` members is kept iff
    max cosine to c's prototypes >= ``pmf_threshold``.

    Returns:
        decision, similarity (updated copies) and pmf_similarity (N,) float32 for every
        labelled instance whose class has prototypes (NaN otherwise).
    """
    decision = decision.copy()
    similarity = similarity.copy()
    pmf_sim = memory.similarity(embeddings, labels)
    counts = np.zeros(max(memory.member_counts, default=-1) + 1, dtype=np.int64)
    for c, n in memory.member_counts.items():
        counts[c] = n
    has_class = (labels >= 0) & (labels < len(counts))
    enough = np.zeros(len(labels), dtype=bool)
    enough[has_class] = counts[labels[has_class]] >= cfg.pmf_min_members
    filtered = enough & (decision == Reason.KEPT) & ~np.isnan(pmf_sim)
    similarity[filtered] = pmf_sim[filtered]
    drop = filtered & (pmf_sim < cfg.pmf_threshold)
    decision[drop] = Reason.PMF
    return decision, similarity, pmf_sim
