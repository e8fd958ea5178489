"""On-disk cache of text (prompt) embeddings, keyed by (embedder name, prompt).

A vocabulary or template edit encodes only prompts never seen before with that
model. One ``.npz`` file per embedder name under ``<workspace>/text_cache/`` holds the
prompts and their (P, D) float32 L2-normalised embeddings; it is rewritten atomically
(temp file then rename) whenever new prompts are added.
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from uvis.fsutil import atomic_path

TextEncoder = Callable[[Sequence[str]], np.ndarray]


class TextEmbeddingCache:
    """Prompt embeddings of one text encoder, persisted in ``directory``.

    Args:
        directory: folder of cache files (created if missing).
        model_name: the embedder's ``name``; different models never share entries.
    Attributes:
        encoded_count: number of prompts this object has sent to an encoder (for tests
            and the UI: a vocabulary edit should encode only new prompts).
    """

    def __init__(self, directory: str | Path, model_name: str) -> None:
        self.directory = Path(directory)
        self.model_name = model_name
        digest = hashlib.sha1(model_name.encode()).hexdigest()[:16]
        self.path = self.directory / f"text-{digest}.npz"
        self.encoded_count = 0
        self._index: dict[str, int] = {}
        self._matrix = np.zeros((0, 0), dtype=np.float32)
        self._load()

    def _load(self) -> None:
        if not self.path.is_file():
            return
        with np.load(self.path, allow_pickle=False) as data:
            if str(data["model"]) != self.model_name:
                return
            prompts = [str(p) for p in data["prompts"]]
            self._matrix = data["embeddings"].astype(np.float32)
        self._index = {p: i for i, p in enumerate(prompts)}

    def __contains__(self, prompt: str) -> bool:
        return prompt in self._index

    def missing(self, prompts: Sequence[str]) -> list[str]:
        """Prompts (unique, in order) not yet in the cache."""
        seen: set[str] = set()
        return [p for p in prompts if p not in self._index and not (p in seen or seen.add(p))]

    def get(self, prompts: Sequence[str], encoder: TextEncoder | Callable[[], TextEncoder] | None = None,
            *, lazy_encoder: bool = False) -> np.ndarray:
        """Embeddings (P, D) float32 of ``prompts`` in order, encoding only missing ones.

        Args:
            prompts: prompt strings.
            encoder: ``encoder(list_of_prompts) -> (n, D)`` normalised array; or, with
                ``lazy_encoder=True``, a zero-argument factory returning such a function
                (called only if something is missing, so no model loads when all prompts
                are cached).
        Raises:
            LookupError: prompts are missing and no encoder was given.
        """
        todo = self.missing(prompts)
        if todo:
            if encoder is None:
                raise LookupError(
                    f"{len(todo)} prompt(s) have no cached text embedding for {self.model_name} "
                    f"(e.g. {todo[0]!r}) and no text encoder is available"
                )
            fn = encoder() if lazy_encoder else encoder  # type: ignore[operator]
            new = np.asarray(fn(todo), dtype=np.float32)
            if new.shape[0] != len(todo):
                raise ValueError(f"text encoder returned {new.shape[0]} rows for {len(todo)} prompts")
            self.encoded_count += len(todo)
            base = len(self._index)
            self._matrix = new if base == 0 else np.concatenate([self._matrix, new], axis=0)
            for i, p in enumerate(todo):
                self._index[p] = base + i
            self._save()
        if not prompts:
            return np.zeros((0, self._matrix.shape[1] if self._matrix.ndim == 2 else 0), np.float32)
        return self._matrix[[self._index[p] for p in prompts]]

    def _save(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        prompts = np.array(sorted(self._index, key=self._index.__getitem__))
        with atomic_path(self.path) as tmp:
            np.savez(tmp, model=np.array(self.model_name), prompts=prompts, embeddings=self._matrix)
