"""Prototype memory (DESIGN §1.5): per-class K-means prototypes, cosine.

Members of class c: embeddings of instances (across the whole project) that passed
the score filter with label c, plus every user exemplar of c (accepted or relabelled
instances, which always stay members). K = min(pmf_k, #members) prototypes per class
by spherical K-means (k-means++ seeding, seeded RNG, ``pmf_iterations`` Lloyd steps,
centroids re-normalised). For speed, at most ``pmf_max_samples`` non-exemplar members
per class enter K-means (a seeded uniform sample); the member *count* used for
``pmf_min_members`` is the full count.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


def _normalise(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def spherical_kmeans(x: np.ndarray, k: int, iterations: int, rng: np.random.Generator) -> np.ndarray:
    """K-means on the unit sphere (cosine similarity).

    Args:
        x: (M, D) float32, L2-normalised rows, M >= 1.
        k: number of centroids, 1 <= k <= M.
    Returns:
        (k, D) float32 L2-normalised centroids.
    """
    m = x.shape[0]
    k = max(1, min(k, m))
    # k-means++ seeding on cosine distance (1 - cos)
    centers = [int(rng.integers(m))]
    dist = np.clip(1.0 - x @ x[centers[0]], 0.0, None).astype(np.float64)
    for _ in range(1, k):
        cum = np.cumsum(dist)
        if cum[-1] <= 1e-12:  # all points coincide with a centre: pick any other point
            rest = np.setdiff1d(np.arange(m), centers)
            centers.append(int(rng.choice(rest)))
        else:
            centers.append(int(min(np.searchsorted(cum, rng.random() * cum[-1], side="right"), m - 1)))
        dist = np.minimum(dist, np.clip(1.0 - x @ x[centers[-1]], 0.0, None))
    cent = x[centers].copy()
    assign = np.full(m, -1, dtype=np.int64)
    rows = np.arange(m)
    for _ in range(iterations):
        new_assign = (x @ cent.T).argmax(axis=1)
        if np.array_equal(new_assign, assign):
            break  # converged: assignments stable
        assign = new_assign
        onehot = np.zeros((k, m), dtype=x.dtype)
        onehot[assign, rows] = 1.0
        sums = onehot @ x
        empty = onehot.sum(axis=1) == 0
        sums[empty] = cent[empty]  # keep an empty cluster's centroid where it was
        cent = _normalise(sums)
    return cent.astype(np.float32)


@dataclass
class PrototypeMemory:
    """Per-class prototypes. ``prototypes[c]`` is (K_c, D) float32; ``member_counts[c]`` the
    number of members of class c (exemplars included)."""

    prototypes: dict[int, np.ndarray] = field(default_factory=dict)
    member_counts: dict[int, int] = field(default_factory=dict)

    @classmethod
    def build(cls, embeddings: np.ndarray, labels: np.ndarray, *, k: int, iterations: int = 10,
              max_samples: int = 2048, seed: int = 0,
              exemplar_embeddings: np.ndarray | None = None,
              exemplar_labels: np.ndarray | None = None) -> "PrototypeMemory":
        """Build the memory.

        Args:
            embeddings: (M, D) normalised embeddings; only rows with a label >= 0 are members
                (pass the whole project's table with -1 for instances that did not survive
                the score filter: nothing is copied but the sampled members).
            labels: (M,) class index of each member, -1 for non-members.
            exemplar_embeddings / exemplar_labels: (E, D) / (E,) user exemplars.
        """
        dim = embeddings.shape[1] if embeddings.ndim == 2 else 0
        ex_emb = np.zeros((0, dim), np.float32) if exemplar_embeddings is None else exemplar_embeddings
        ex_lab = np.zeros(0, np.int32) if exemplar_labels is None else np.asarray(exemplar_labels)
        memory = cls()
        classes = np.union1d(np.unique(labels), np.unique(ex_lab)).astype(int)
        for c in classes:
            if c < 0:
                continue
            idx = np.flatnonzero(labels == c)
            ex = ex_emb[ex_lab == c]
            rng = np.random.default_rng([seed, int(c)])
            count = len(idx)
            if count > max_samples:
                idx = idx[np.sort(rng.choice(count, size=max_samples, replace=False))]
            own = embeddings[idx]
            members = np.concatenate([ex, own], axis=0) if len(ex) else own
            memory.member_counts[int(c)] = int(count + len(ex))
            memory.prototypes[int(c)] = spherical_kmeans(
                np.ascontiguousarray(members, dtype=np.float32), k, iterations, rng)
        return memory

    def similarity(self, embeddings: np.ndarray, labels: np.ndarray) -> np.ndarray:
        """(N,) float32: max cosine of each embedding to its own class's prototypes (NaN if none)."""
        out = np.full(len(labels), np.nan, dtype=np.float32)
        if not self.prototypes or not len(labels):
            return out
        for c, protos in self.prototypes.items():  # per class: only its own rows and prototypes
            idx = np.flatnonzero(labels == c)
            if len(idx):
                out[idx] = (embeddings[idx] @ protos.T).max(axis=1)
        return out
