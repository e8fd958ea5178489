"""Decisions from cached model outputs: labels, score filter, PMF, tracks, curation.

Everything here is numpy over loaded caches and re-runs in milliseconds when a
threshold, template or vocabulary changes. A :class:`Project` holds the loaded caches
of a workspace and memoises what does not depend on the changed setting (labels per
text-embedding set, mask IoUs for tracking).

Order of one decision pass (DESIGN §1):
    1. label every instance (prompt matching, or exemplar matching without CLIP);
       relabelled instances take the user's label;
    2. score filter (objectness, CLIP score with per-class overrides);
    3. prototype memory from all videos' survivors plus user exemplars (accepted and
       relabelled instances), then PMF on survivors;
    4. user rejects -> ``user_reject``; accepted/relabelled instances are kept;
    5. tracking of kept instances, then user merges and splits.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
from threadpoolctl import ThreadpoolController

from uvis.cache import VideoCache
from uvis.config import Config
from uvis.db import CurationAction
from uvis.errors import BadInputError
from uvis.filters import pmf_filter, score_filter
from uvis.labeler import LabelScores, match_exemplars, match_prompts
from uvis.pmf import PrototypeMemory
from uvis.text_cache import TextEmbeddingCache, TextEncoder
from uvis.tracker import TrackSummary, summarise_tracks, track
from uvis.types import Instances, Reason, VideoInfo


_LABEL_MEMO_SIZE = 6
"""Label sets memoised per video (recent vocabulary/template/pooling settings)."""


@dataclass
class VideoResult:
    """Decisions for one video.

    ``instances`` is the whole cached table (kept and dropped) with every derived
    field set; ``user`` (N,) bool marks instances a person curated; ``top_classes`` /
    ``top_probs`` (N, k) the k best classes and probabilities per instance; ``tracks``
    the track summaries (track label by score-weighted vote).
    """

    info: VideoInfo
    instances: Instances
    vocabulary: list[str]
    prompts: list[str]
    config: Config
    user: np.ndarray
    top_classes: np.ndarray
    top_probs: np.ndarray
    tracks: list[TrackSummary] = field(default_factory=list)

    @property
    def kept(self) -> np.ndarray:
        """(N,) bool: instances kept after every filter and curation."""
        assert self.instances.decision is not None
        return self.instances.decision == Reason.KEPT

    def track_labels(self) -> dict[int, int]:
        return {t.track_id: t.label for t in self.tracks}


@dataclass
class _Curation:
    label_override: dict[int, int]  # row -> class index
    accepted: set[int]  # rows kept by the user (accepted or relabelled)
    rejected: set[int]
    merges: list[tuple[int, int]]  # (row a, row b)
    splits: list[int]  # rows


def _curation_for(cache: VideoCache, actions: Sequence[CurationAction], vocabulary: Sequence[str]) -> _Curation:
    index = {name: i for i, name in enumerate(vocabulary)}
    cur = _Curation({}, set(), set(), [], [])
    for a in actions:
        p = a.payload
        try:
            if a.action in ("accept", "reject", "relabel"):
                row = cache.row(int(p["frame"]), int(p["index"]))
                if a.action == "reject":
                    cur.rejected.add(row)
                    cur.accepted.discard(row)
                else:
                    cur.rejected.discard(row)
                    cur.accepted.add(row)
                    if a.action == "relabel":
                        if p["label"] in index:
                            cur.label_override[row] = index[p["label"]]
                        # a label outside the current vocabulary cannot be shown; the
                        # instance stays accepted with its matched label
            elif a.action == "merge":
                cur.merges.append((cache.row(*p["a"]), cache.row(*p["b"])))
            elif a.action == "split":
                cur.splits.append(cache.row(*p["at"]))
        except BadInputError:
            continue  # refers to frames not (yet) cached: ignored until they are
    return cur


def _apply_merges_splits(track_id: np.ndarray, frames: np.ndarray, cur: _Curation) -> np.ndarray:
    """Apply user splits then merges to (N,) track ids over the full table (-1 untracked)."""
    tid = track_id.copy()
    next_id = int(tid.max(initial=-1)) + 1
    for row in cur.splits:
        t = tid[row]
        if t < 0:
            continue
        later = (tid == t) & (frames >= frames[row])
        tid[later] = next_id
        next_id += 1
    for a, b in cur.merges:
        ta, tb = tid[a], tid[b]
        if ta >= 0 and tb >= 0 and ta != tb:
            tid[tid == tb] = ta
    return tid


def _shared_embeddings(caches: dict[str, VideoCache]) -> tuple[dict[str, int], np.ndarray]:
    """All videos' embeddings as one (N_total, D) array, and each video's row offset in it.

    With several videos the array is built once and every cache's ``embeddings`` becomes
    a view into it, so project-wide PMF needs no per-decision concatenation and no second
    copy stays in memory.
    """
    offsets: dict[str, int] = {}
    total = 0
    for name, cache in caches.items():
        offsets[name] = total
        total += len(cache.instances)
    arrays = [c.instances.embeddings for c in caches.values()]
    assert all(a is not None for a in arrays)
    if len(arrays) == 1:
        return offsets, arrays[0]  # type: ignore[return-value]
    shared = np.concatenate(arrays, axis=0)  # type: ignore[arg-type]
    for name, cache in caches.items():
        cache.instances.embeddings = shared[offsets[name]:offsets[name] + len(cache.instances)]
    return offsets, shared


def _key(*parts: object) -> str:
    return hashlib.sha1(repr(parts).encode()).hexdigest()


class Project:
    """Loaded caches of a set of videos and the memoised decision machinery.

    Args:
        caches: name -> loaded :class:`VideoCache` (all with the same embedder).
        text_cache: prompt-embedding cache of that embedder (for CLIP-like embedders).
        text_encoder_factory: zero-argument callable returning a text encoder, called only
            when a prompt is missing from ``text_cache`` (loading a model lazily).
        curation: ``video -> effective curation actions`` (from the workspace database).
    """

    def __init__(self, caches: dict[str, VideoCache], *, text_cache: TextEmbeddingCache | None = None,
                 text_encoder_factory: Callable[[], TextEncoder] | None = None,
                 curation: Callable[[str], Sequence[CurationAction]] | None = None) -> None:
        if not caches:
            raise BadInputError("the project has no labelled videos yet")
        embedders = {c.meta.embedder for c in caches.values()}
        if len(embedders) > 1:
            raise BadInputError(f"videos were embedded by different embedders ({', '.join(sorted(embedders))}); "
                                "re-label them with one embedder")
        self.caches = caches
        self._offsets, self._embeddings = _shared_embeddings(caches)
        first = next(iter(caches.values())).meta
        self.has_text = first.has_text
        self.logit_scale = first.logit_scale
        self.embedder_name = first.embedder
        self.text_cache = text_cache
        self.text_encoder_factory = text_encoder_factory
        self.curation = curation or (lambda name: [])
        self._label_memo: dict[tuple[str, str], LabelScores] = {}
        self._blas = ThreadpoolController()
        self._topk_memo: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}

    # ------------------------------------------------------------------ text
    def text_embeddings(self, config: Config) -> np.ndarray:
        """(C, T, D) prompt embeddings for the config's vocabulary and templates."""
        if self.text_cache is None:
            raise BadInputError("no text-embedding cache: this project's embedder has no text encoder")
        prompts = config.prompts()
        flat = self.text_cache.get(prompts, self.text_encoder_factory, lazy_encoder=True) \
            if self.text_encoder_factory else self.text_cache.get(prompts)
        c, t = len(config.labeler.vocabulary), len(config.labeler.templates)
        return flat.reshape(c, t, -1)

    # ------------------------------------------------------------------ labels
    def _labels(self, name: str, cache: VideoCache, config: Config, text: np.ndarray | None,
                exemplars: tuple[np.ndarray, np.ndarray]) -> LabelScores:
        emb = cache.instances.embeddings
        assert emb is not None
        vocab = config.labeler.vocabulary
        if text is not None:
            key = (name, _key(self.embedder_name, config.prompts(), config.labeler.prompt_pooling))
            if key not in self._label_memo:
                while len(self._label_memo) >= _LABEL_MEMO_SIZE * len(self.caches):  # bounded, oldest first
                    dropped = self._label_memo.pop(next(iter(self._label_memo)))
                    self._topk_memo = {k: v for k, v in self._topk_memo.items() if k[0] != id(dropped)}
                self._label_memo[key] = match_prompts(emb, text, self.logit_scale, config.labeler.prompt_pooling)
            return self._label_memo[key]
        ex_emb, ex_lab = exemplars
        return match_exemplars(emb, ex_emb, ex_lab, len(vocab))

    def _exemplars(self, config: Config, curations: dict[str, _Curation],
                   base_labels: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        embs, labs = [], []
        for name, cur in curations.items():
            emb = self.caches[name].instances.embeddings
            assert emb is not None
            for row in sorted(cur.accepted):
                lbl = cur.label_override.get(row, int(base_labels[name][row]) if name in base_labels else -1)
                if lbl >= 0:
                    embs.append(emb[row])
                    labs.append(lbl)
        dim = next(iter(self.caches.values())).meta.embedding_dim
        if not embs:
            return np.zeros((0, dim), np.float32), np.zeros(0, np.int32)
        return np.stack(embs).astype(np.float32), np.asarray(labs, np.int32)

    def _top_k(self, scores: LabelScores, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-k classes, memoised for memoised (prompt-matched) label scores."""
        if not any(v is scores for v in self._label_memo.values()):
            return scores.top_k(k)
        key = (id(scores), k)  # scores is kept alive by _label_memo, so its id is stable
        if key not in self._topk_memo:
            self._topk_memo[key] = scores.top_k(k)
        return self._topk_memo[key]

    # ------------------------------------------------------------------ decide
    def decide(self, config: Config, videos: Sequence[str] | None = None) -> dict[str, VideoResult]:
        """Run every decision stage for all (or the named) videos; PMF memory is project-wide.

        BLAS runs single-threaded here: the matrices are small, and a multi-threaded BLAS
        competing with a labelling job for the cores stalls for tens of milliseconds per call.
        """
        with self._blas.limit(limits=1, user_api="blas"):
            return self._decide(config, videos)

    def _decide(self, config: Config, videos: Sequence[str] | None) -> dict[str, VideoResult]:
        config.validate()
        names = list(self.caches)
        vocab = config.labeler.vocabulary
        curations = {n: _curation_for(self.caches[n], self.curation(n), vocab) for n in names}
        text = self.text_embeddings(config) if self.has_text else None
        # exemplars need labels of accepted-but-not-relabelled instances: with text, labels
        # come from prompts; without, accepted instances must carry a relabel to count.
        labels: dict[str, LabelScores] = {}
        if text is not None:
            for n in names:
                labels[n] = self._labels(n, self.caches[n], config, text, (np.zeros(0), np.zeros(0)))
        exemplars = self._exemplars(config, curations, {n: s.label for n, s in labels.items()})
        if text is None:
            for n in names:
                labels[n] = self._labels(n, self.caches[n], config, None, exemplars)

        fc = config.filters
        stage: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = {}
        member_labels = np.full(len(self._embeddings), -1, np.int32)  # -1: not a PMF member
        for n in names:
            inst = self.caches[n].instances
            cur = curations[n]
            label = labels[n].label.copy()
            clip_score = labels[n].clip_score.copy()
            for row, lbl in cur.label_override.items():
                label[row] = lbl
                clip_score[row] = labels[n].probs[row, lbl] if labels[n].probs.shape[1] > lbl else 1.0
            decision, similarity = score_filter(inst.objectness, clip_score, label, fc, vocab)
            stage[n] = (label, clip_score, decision, similarity)
            passed = (decision == Reason.KEPT)
            passed[list(cur.accepted)] = False  # exemplars enter the memory as exemplars
            member_labels[self._offsets[n]:self._offsets[n] + len(inst)][passed] = label[passed]
        memory = PrototypeMemory()
        if fc.pmf_enabled:
            memory = PrototypeMemory.build(
                self._embeddings, member_labels,
                k=fc.pmf_k, iterations=fc.pmf_iterations, max_samples=fc.pmf_max_samples, seed=fc.seed,
                exemplar_embeddings=exemplars[0], exemplar_labels=exemplars[1])

        selected = names if videos is None else [v for v in videos if v in self.caches]
        results: dict[str, VideoResult] = {}
        for n in selected:
            results[n] = self._finish(n, config, labels[n], stage[n], memory, curations[n])
        return results

    def _finish(self, name: str, config: Config, scores: LabelScores,
                stage: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
                memory: PrototypeMemory, cur: _Curation) -> VideoResult:
        cache = self.caches[name]
        inst = cache.instances
        assert inst.embeddings is not None and inst.frame is not None
        label, clip_score, decision, similarity = stage
        fc = config.filters
        if fc.pmf_enabled:
            decision, similarity, pmf_sim = pmf_filter(decision, similarity, inst.embeddings, label, memory, fc)
        else:
            pmf_sim = np.full(len(inst), np.nan, np.float32)
        user = np.zeros(len(inst), dtype=bool)
        if cur.accepted:
            acc = np.fromiter(cur.accepted, dtype=np.int64)
            decision[acc] = Reason.KEPT
            user[acc] = True
        if cur.rejected:
            rej = np.fromiter(cur.rejected, dtype=np.int64)
            decision[rej] = Reason.USER_REJECT
            similarity[rej] = np.nan
            user[rej] = True
        kept = np.flatnonzero(decision == Reason.KEPT)
        track_id = np.full(len(inst), -1, np.int32)
        assert cache.iou_memo is not None
        track_id[kept] = track(inst.frame[kept], kept, inst.embeddings[kept], config.tracker, cache.iou_memo)
        if cur.merges or cur.splits:
            track_id = _apply_merges_splits(track_id, inst.frame, cur)
        tops = self._top_k(scores, config.labeler.top_k)
        tracks = summarise_tracks(track_id, label, clip_score, inst.frame)
        out = inst.with_fields(label=label, clip_score=clip_score, best_prompt=scores.best_prompt,
                               decision=decision, similarity=similarity, pmf_similarity=pmf_sim,
                               track_id=track_id)
        return VideoResult(cache.info, out, list(config.labeler.vocabulary), config.prompts(), config, user,
                           tops[0], tops[1], tracks)
