"""Decisions from cached model outputs: labels, score filter, PMF, tracks, curation.

Everything here is numpy over loaded caches and re-runs in milliseconds when a
threshold, template or vocabulary changes. A :class:`Project` holds the loaded caches
of a workspace and memoises what does not depend on the changed setting (labels per
text-embedding set, mask IoUs for tracking).

Order of one decision pass (DESIGN §1):
    0. resolve each video's effective curation against its cache (:func:`uvis.curation.resolve`:
       fingerprints, carry-over to a re-labelled cache, the list of what does not apply);
    1. label every instance by the label source in effect (``labeler.label_source``:
       prompt matching, exemplar matching, or class-agnostic ``object``); curated
       instances take the class the person gave; their ``clip_score`` is the model's score
       for that class (prompts: its probability; examples: its similarity to that class's
       nearest exemplar; NaN when the class is not scored — never a made-up 1.0);
    2. score filter (objectness, CLIP score with per-class overrides; off when class-agnostic);
    3. prototype memory from all videos' survivors plus user exemplars (accepted and
       relabelled instances), then PMF on survivors;
    4. user rejects -> ``user_reject``; accepted/relabelled instances are kept;
    5. tracking of kept instances, then user merges and splits; track classes and the
       class of every instance (:func:`uvis.curation.instance_classes`).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
from threadpoolctl import ThreadpoolController

from uvis.cache import VideoCache
from uvis.config import CLASS_AGNOSTIC_NAME, Config, resolve_label_source
from uvis.curation import DrawnInstance, Resolved, Unresolved, cache_key_of, instance_classes, resolve
from uvis.drawn import Extension, extend
from uvis.db import CurationState, WorkspaceDB
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
    field set (``label``: the matched label, or the person's class for curated
    instances); ``user`` (N,) bool marks instances a person curated; ``top_classes`` /
    ``top_probs`` (N, k) the k best classes and probabilities per instance; ``tracks``
    the track summaries; ``classes`` (N,) int32 the class of each instance as shown,
    counted, exported and evaluated (:func:`uvis.curation.instance_classes`: the
    person's class, else the track's class, else its own label); ``vocabulary`` the
    classes in effect (``["object"]`` when class-agnostic); ``label_source`` the source
    in effect (prompts | examples | none); ``unresolved`` the curation items that do not
    apply to this cache (:mod:`uvis.curation`); ``cache_key`` the cache decided on.
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
    classes: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int32))
    label_source: str = "prompts"
    unresolved: list[Unresolved] = field(default_factory=list)
    cache_key: str = ""

    @property
    def kept(self) -> np.ndarray:
        """(N,) bool: instances kept after every filter and curation."""
        assert self.instances.decision is not None
        return self.instances.decision == Reason.KEPT

    def track_labels(self) -> dict[int, int]:
        """Track id -> class (:func:`uvis.tracker.track_classes`)."""
        return {t.track_id: t.label for t in self.tracks}

    def frame_rows(self, frame: int) -> slice:
        """Rows of ``frame`` in ``instances`` (its proposals, then any drawn instances)."""
        f = self.instances.frame
        assert f is not None
        return slice(int(np.searchsorted(f, frame, side="left")), int(np.searchsorted(f, frame, side="right")))

    def row(self, frame: int, index: int) -> int:
        """Row of instance ``index`` of ``frame`` (BadInputError if absent)."""
        sl = self.frame_rows(frame)
        if not 0 <= index < sl.stop - sl.start:
            raise BadInputError(f"frame {frame} of {self.info.name} has no instance {index}")
        return sl.start + index

    def class_name(self, row: int) -> str | None:
        """Name of the class of instance ``row`` as shown (None: unlabelled)."""
        c = int(self.classes[row])
        return self.vocabulary[c] if 0 <= c < len(self.vocabulary) else None


@dataclass
class _Curation:
    """Curation of one video in vocabulary terms (from :class:`uvis.curation.Resolved`)."""

    label_override: dict[int, int]  # row -> class index a person gave
    accepted: set[int]  # rows kept by the user (accepted or relabelled)
    rejected: set[int]
    merges: list[tuple[int, int]]  # (row a, row b)
    splits: list[int]  # rows
    order: dict[int, int]  # row -> id of the deciding action
    unresolved: list[Unresolved]
    draws: list[DrawnInstance] = field(default_factory=list)  # rows N.. of the cache table


def _curation_for(res: Resolved, vocabulary: Sequence[str], source: str, cache: VideoCache) -> _Curation:
    """Map a resolved curation onto the vocabulary in effect.

    Class-agnostic (``none``): every curated class is ``object``. Otherwise a class the
    vocabulary lacks makes that item not apply (listed as ``class_outside_vocabulary``:
    the instance is decided as if uncurated, so counts and exports agree).
    """
    index = {name: i for i, name in enumerate(vocabulary)}
    cur = _Curation({}, set(res.accepted), set(res.rejected), list(res.merges), list(res.splits),
                    dict(res.order), list(res.unresolved), list(res.draws))
    n = len(cache.instances)
    for row, name in res.label.items():
        if source == "none":
            cur.label_override[row] = 0
        elif name in index:
            cur.label_override[row] = index[name]
        elif row >= n:  # a drawn instance with a class outside the vocabulary: kept, unlabelled
            d = res.draws[row - n]
            cur.unresolved.append(Unresolved(d.action_id, "draw", d.frame, -1, "class_outside_vocabulary"))
        else:
            cur.accepted.discard(row)
            frame = int(cache.instances.frame[row])  # type: ignore[index]
            cur.unresolved.append(Unresolved(res.order.get(row, 0), "relabel", frame,
                                             row - cache.frame_slices[frame].start, "class_outside_vocabulary"))
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
        db: the workspace database holding the curation log (None: no curation).
    """

    def __init__(self, caches: dict[str, VideoCache], *, text_cache: TextEmbeddingCache | None = None,
                 text_encoder_factory: Callable[[], TextEncoder] | None = None,
                 db: WorkspaceDB | None = None) -> None:
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
        self.db = db
        self._resolved_memo: dict[tuple[str, int, str], Resolved] = {}
        self._extension_memo: dict[str, tuple[tuple[Any, ...], Extension]] = {}
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

    # ------------------------------------------------------------------ curation
    def state(self, name: str) -> CurationState:
        """The effective curation of video ``name`` (empty without a database)."""
        if self.db is None:
            return CurationState([], [], 0)
        return self.db.effect(name)

    def resolved(self, name: str, state: CurationState | None = None) -> Resolved:
        """Video ``name``'s curation resolved against its cache (memoised per log version)."""
        cache = self.caches[name]
        if self.db is None and state is None:
            return Resolved()
        version = self.db.version(name) if state is None and self.db is not None else -1
        key = (name, version, cache_key_of(cache))
        if state is None and key in self._resolved_memo:
            return self._resolved_memo[key]
        st = self.state(name) if state is None else state
        masks = self.db.masks_of if self.db is not None else (lambda keys: {k: None for k in keys})
        res = resolve(cache, st, masks)
        if state is None:
            self._resolved_memo = {k: v for k, v in self._resolved_memo.items() if k[0] != name}
            self._resolved_memo[key] = res
        return res

    # ------------------------------------------------------------------ labels
    def _labels(self, name: str, cache: VideoCache, config: Config, text: np.ndarray | None,
                exemplars: tuple[np.ndarray, np.ndarray], source: str = "prompts") -> LabelScores:
        emb = cache.instances.embeddings
        assert emb is not None
        vocab = config.labeler.vocabulary
        if source == "none":
            n = len(emb)
            return LabelScores(np.zeros(n, np.int32), np.full(n, np.nan, np.float32), np.full(n, -1, np.int32),
                               np.ones((n, 1), np.float32), np.full((n, 1), np.nan, np.float32))
        if text is not None and source == "prompts":
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
            n = len(emb)
            drawn = self._draw_embeddings(cur.draws)
            for row in sorted(cur.accepted):
                if row >= n:  # a drawn instance: an exemplar once it has an embedding and a class
                    e = drawn.get(cur.draws[row - n].action_id)
                    if e is not None and cur.label_override.get(row, -1) >= 0 and len(e) == emb.shape[1]:
                        embs.append(e / max(float(np.linalg.norm(e)), 1e-12))
                        labs.append(cur.label_override[row])
                    continue
                lbl = cur.label_override.get(row, int(base_labels[name][row]) if name in base_labels else -1)
                if lbl >= 0:
                    embs.append(emb[row])
                    labs.append(lbl)
        dim = next(iter(self.caches.values())).meta.embedding_dim
        if not embs:
            return np.zeros((0, dim), np.float32), np.zeros(0, np.int32)
        return np.stack(embs).astype(np.float32), np.asarray(labs, np.int32)

    def _draw_embeddings(self, draws: Sequence[DrawnInstance]) -> dict[int, np.ndarray]:
        if not draws or self.db is None:
            return {}
        return self.db.draw_embeddings([d.action_id for d in draws])

    def _extension(self, name: str, draws: Sequence[DrawnInstance]) -> Extension:
        """The video's table with its drawn instances (memoised per set of draws)."""
        embeddings = self._draw_embeddings(draws)
        key = tuple((d.action_id, d.fingerprint, d.action_id in embeddings) for d in draws)
        hit = self._extension_memo.get(name)
        if hit is not None and hit[0] == key:
            return hit[1]
        cache = self.caches[name]
        ext = extend(cache.instances, cache.num_cached, draws, embeddings)
        self._extension_memo[name] = (key, ext)
        return ext

    def _top_k(self, scores: LabelScores, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-k classes, memoised for memoised (prompt-matched) label scores."""
        if not any(v is scores for v in self._label_memo.values()):
            return scores.top_k(k)
        key = (id(scores), k)  # scores is kept alive by _label_memo, so its id is stable
        if key not in self._topk_memo:
            self._topk_memo[key] = scores.top_k(k)
        return self._topk_memo[key]

    # ------------------------------------------------------------------ decide
    def decide(self, config: Config, videos: Sequence[str] | None = None, *,
               overlay: dict[str, CurationState] | None = None) -> dict[str, VideoResult]:
        """Run every decision stage for all (or the named) videos; PMF memory is project-wide.

        ``overlay``: video -> a curation state to use instead of the logged one (a dry run
        of an action, :func:`uvis.batch.impact`).

        BLAS runs single-threaded here: the matrices are small, and a multi-threaded BLAS
        competing with a labelling job for the cores stalls for tens of milliseconds per call.
        """
        with self._blas.limit(limits=1, user_api="blas"):
            return self._decide(config, videos, overlay or {})

    def label_source(self, config: Config, resolved: dict[str, Resolved] | None = None) -> str:
        """The label source in effect for ``config`` (see :func:`uvis.config.resolve_label_source`)."""
        if config.labeler.label_source != "auto" or self.has_text:
            return resolve_label_source(config.labeler.label_source, self.has_text, False)
        resolved = resolved or {n: self.resolved(n) for n in self.caches}
        vocab = set(config.labeler.vocabulary)
        has_examples = any(lbl in vocab for r in resolved.values() for lbl in r.label.values())
        return resolve_label_source("auto", False, has_examples)

    def _decide(self, config: Config, videos: Sequence[str] | None,
                overlay: dict[str, CurationState]) -> dict[str, VideoResult]:
        config.validate()
        names = list(self.caches)
        resolved = {n: self.resolved(n, overlay.get(n)) for n in names}
        source = self.label_source(config, resolved)
        vocab = [CLASS_AGNOSTIC_NAME] if source == "none" else list(config.labeler.vocabulary)
        curations = {n: _curation_for(resolved[n], vocab, source, self.caches[n]) for n in names}
        text = self.text_embeddings(config) if source == "prompts" else None
        # exemplars need labels of accepted-but-not-relabelled instances: with prompts, labels
        # come from prompts; otherwise accepted instances must carry a class to count.
        labels: dict[str, LabelScores] = {}
        if source != "examples":
            for n in names:
                labels[n] = self._labels(n, self.caches[n], config, text, (np.zeros(0), np.zeros(0)), source)
        exemplars = self._exemplars(config, curations, {n: s.label for n, s in labels.items()})
        if source == "examples":
            for n in names:
                labels[n] = self._labels(n, self.caches[n], config, None, exemplars, source)

        fc = config.filters
        stage: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = {}
        member_labels = np.full(len(self._embeddings), -1, np.int32)  # -1: not a PMF member
        for n in names:
            inst = self.caches[n].instances
            cur = curations[n]
            label = labels[n].label.copy()
            clip_score = labels[n].clip_score.copy()
            scored = labels[n].class_sim if source == "examples" else labels[n].probs
            for row, lbl in cur.label_override.items():
                if row >= len(inst):
                    continue  # a drawn instance: added in _finish
                label[row] = lbl
                clip_score[row] = scored[row, lbl] if scored.shape[1] > lbl else np.nan
            if source == "examples":
                np.clip(clip_score, 0.0, 1.0, out=clip_score)
            decision, similarity = score_filter(inst.objectness, clip_score, label, fc, vocab)
            stage[n] = (label, clip_score, decision, similarity)
            passed = (decision == Reason.KEPT)
            passed[[r for r in cur.accepted if r < len(inst)]] = False  # exemplars enter the memory as exemplars
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
            results[n] = self._finish(n, config, labels[n], stage[n], memory, curations[n], vocab, source)
        return results

    def _finish(self, name: str, config: Config, scores: LabelScores,
                stage: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
                memory: PrototypeMemory, cur: _Curation, vocab: list[str], source: str) -> VideoResult:
        cache = self.caches[name]
        inst = cache.instances
        assert inst.embeddings is not None and inst.frame is not None
        label, clip_score, decision, similarity = stage
        fc = config.filters
        if fc.pmf_enabled:
            decision, similarity, pmf_sim = pmf_filter(decision, similarity, inst.embeddings, label, memory, fc)
        else:
            pmf_sim = np.full(len(inst), np.nan, np.float32)
        best_prompt = scores.best_prompt
        tops = self._top_k(scores, config.labeler.top_k)
        table, iou, order_ = inst, cache.iou_memo, None
        if cur.draws:  # drawn instances: rows N.. in append order (see uvis.drawn)
            ext = self._extension(name, cur.draws)
            d = len(cur.draws)
            lbl = np.array([cur.label_override.get(len(inst) + k, -1) for k in range(d)], np.int32)
            label = np.concatenate([label, lbl])
            clip_score = np.concatenate([clip_score, np.full(d, np.nan, np.float32)])
            decision = np.concatenate([decision, np.full(d, Reason.KEPT, np.int8)])
            similarity = np.concatenate([similarity, np.full(d, np.nan, np.float32)])
            pmf_sim = np.concatenate([pmf_sim, np.full(d, np.nan, np.float32)])
            best_prompt = np.concatenate([best_prompt, np.full(d, -1, np.int32)])
            tops = (np.concatenate([tops[0], np.full((d, tops[0].shape[1]), -1, tops[0].dtype)]),
                    np.concatenate([tops[1], np.zeros((d, tops[1].shape[1]), tops[1].dtype)]))
            table, iou, order_ = ext.table, ext.iou, ext
        n = len(table)
        user = np.zeros(n, dtype=bool)
        if cur.accepted:
            acc = np.fromiter(cur.accepted, dtype=np.int64)
            decision[acc] = Reason.KEPT
            user[acc] = True
        if cur.rejected:
            rej = np.fromiter(cur.rejected, dtype=np.int64)
            decision[rej] = Reason.USER_REJECT
            similarity[rej] = np.nan
            user[rej] = True
        assert table.frame is not None and table.embeddings is not None and iou is not None
        track_id = np.full(n, -1, np.int32)
        kept = np.flatnonzero(decision == Reason.KEPT)
        if order_ is not None:  # the tracker walks frames in order: track on the frame-sorted table
            kept = np.sort(order_.sorted_row[kept])
            track_id[order_.order[kept]] = track(table.frame[order_.order[kept]], kept,
                                                 table.embeddings[order_.order[kept]], config.tracker, iou)
        else:
            track_id[kept] = track(table.frame[kept], kept, table.embeddings[kept], config.tracker, iou)
        if cur.merges or cur.splits:
            track_id = _apply_merges_splits(track_id, table.frame, cur)
        curated = np.full(n, -1, np.int32)
        order = np.zeros(n, np.int64)
        for row in cur.accepted:
            curated[row] = cur.label_override.get(row, int(label[row]))
            order[row] = cur.order.get(row, 0)
        tracks = summarise_tracks(track_id, label, clip_score, table.frame, curated_labels=curated,
                                  curated_order=order, objectness=table.objectness)
        classes = instance_classes(label, track_id, {t.track_id: t.label for t in tracks}, curated)
        out = table.with_fields(label=label, clip_score=clip_score, best_prompt=best_prompt,
                                decision=decision, similarity=similarity, pmf_similarity=pmf_sim,
                                track_id=track_id)
        top_classes, top_probs = tops
        if order_ is not None:  # output in frame order: drawn instances after their frame's proposals
            p = order_.order
            out, user, classes, top_classes, top_probs = out[p], user[p], classes[p], top_classes[p], top_probs[p]
        prompts = config.prompts() if source == "prompts" else []
        return VideoResult(cache.info, out, vocab, prompts, config, user, top_classes, top_probs, tracks,
                           classes, source, list(cur.unresolved), cache_key_of(cache))
