"""Curation actions as a person makes them: single or batch, previewed, reported.

* :func:`plan` turns "accept / reject / relabel these instances", "… this whole track",
  "merge these two tracks", "split here" or "this drawn mask" into one
  :class:`PlannedAction` (one log row, undone and redone in one step) whose items carry
  the fingerprints of the instances in the cache the person saw.
* :func:`impact` is the dry run: how many instances and tracks an action would change
  (decisions re-run with the action added, nothing written). :func:`compare` words the
  difference between two decisions of a video, including what exemplar propagation
  changed beyond the action's own instances ("this example relabelled 185 instances in
  5 tracks").
* :class:`SimilarProposal` — label-by-example proposals — are bound to the video, the
  curation-log version and the vocabulary they were computed under; applying one after
  an undo, a vocabulary change or on another video is refused (:func:`check_proposal`).
* :func:`vocabulary_impact` warns before classes that curated instances use are
  removed, and :func:`edit_vocabulary` keeps (adds back) those classes if asked.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from uvis.config import Config
from uvis.curation import src_frame_of, cache_key_of, draw_item, item_for
from uvis.db import INSTANCE_ACTIONS, CurationAction, CurationState, Effect, ItemRef
from uvis.errors import BadInputError

if TYPE_CHECKING:
    from uvis.cache import VideoCache
    from uvis.decide import Project, VideoResult

Ref = tuple[int, int]
"""(frame, index within the frame) of an instance of a cache."""


class StaleProposal(BadInputError):
    """Label-by-example proposals computed under another video, curation state or vocabulary."""


@dataclass(frozen=True)
class PlannedAction:
    """One curation action ready to log: action name, payload, items (with fingerprints)
    and the cache it was planned on."""

    video: str
    action: str
    payload: dict[str, Any]
    items: tuple[ItemRef, ...]
    cache_key: str


@dataclass(frozen=True)
class Impact:
    """What an action changes (or changed) in one video's decisions.

    ``instances``/``tracks``: instances whose kept state, class or track changed, and the
    tracks they belong to; ``propagated``/``propagated_tracks``: of those, the ones the
    action did not name (changed through exemplars, PMF or the track rule);
    ``relabelled``/``relabelled_tracks``: of the propagated ones, those kept before and
    after with another class; ``message``: a sentence for people.
    """

    instances: int
    tracks: int
    propagated: int
    propagated_tracks: int
    message: str
    relabelled: int = 0
    relabelled_tracks: int = 0


def _item(cache: "VideoCache", result: "VideoResult | None", t: int, i: int, label: str | None) -> ItemRef:
    """The item of (t, i): from the cache, or — for a drawn instance — from the decided table."""
    if result is not None and t < len(cache.frame_slices):
        sl = cache.frame_slices[t]
        if i >= sl.stop - sl.start:  # beyond the frame's proposals: a drawn instance
            from uvis.curation import fingerprint

            starts = _frame_starts(result.instances.frame)  # type: ignore[arg-type]
            row = int(starts[t]) + i
            inst = result.instances
            if row >= len(inst) or int(inst.frame[row]) != t:  # type: ignore[index]
                raise BadInputError(f"frame {t} of {result.info.name} has no instance {i}")
            counts = inst.masks[row]["counts"]
            return ItemRef(t, i, fingerprint(t, inst.boxes[row], counts), cache_key_of(cache),
                           src_frame_of(cache, t), counts, label)
    return item_for(cache, t, i, label)


def plan(cache: "VideoCache", video: str, action: str, refs: Sequence[Ref] = (), *, label: str | None = None,
         labels: Sequence[str | None] | None = None, scope: str = "instance",
         result: "VideoResult | None" = None) -> PlannedAction:
    """Plan an accept / reject / relabel of ``refs``, a merge of ``refs[0]``'s and ``refs[1]``'s
    tracks, or a split before ``refs[0]``.

    Args:
        cache: the loaded cache the person saw.
        label: the class of a relabel (required) — for an accept, the class the person
            confirmed (use ``labels`` to give one per instance).
        scope: ``instance`` | ``similar`` | ``track`` (recorded for the history).
        result: the decisions the person saw (needed to address drawn instances).
    Raises:
        BadInputError: unknown action, no instances, an instance the cache lacks, a
            relabel without a class, a merge of one track with itself.
    """
    if action in INSTANCE_ACTIONS:
        if not refs:
            raise BadInputError(f"{action}: no instances given")
        if action == "relabel" and not (label and label.strip()):
            raise BadInputError("relabel: choose a class first")
        per = list(labels) if labels is not None else [label if action != "reject" else None] * len(refs)
        if len(per) != len(refs):
            raise BadInputError(f"{action}: {len(refs)} instances but {len(per)} labels")
        seen: set[Ref] = set()
        uniq = [(int(t), int(i), lbl) for (t, i), lbl in zip(refs, per)
                if (int(t), int(i)) not in seen and not seen.add((int(t), int(i)))]  # type: ignore[func-returns-value]
        items = tuple(_item(cache, result, t, i, label if action == "relabel" else lbl) for t, i, lbl in uniq)
        payload: dict[str, Any] = {"items": [[t, i] for t, i, _ in uniq], "scope": scope}
        if action == "relabel":
            payload["label"] = label.strip()  # type: ignore[union-attr]
            items = tuple(ItemRef(it.frame, it.index, it.fingerprint, it.cache_key, it.src_frame, it.mask,
                                  label.strip()) for it in items)  # type: ignore[union-attr]
        return PlannedAction(video, action, payload, items, cache_key_of(cache))
    if action == "merge":
        if len(refs) != 2 or tuple(refs[0]) == tuple(refs[1]):
            raise BadInputError("merge: give one instance of each of two tracks")
        (ta, ia), (tb, ib) = refs
        items = (_item(cache, result, ta, ia, None), _item(cache, result, tb, ib, None))
        return PlannedAction(video, "merge", {"a": [int(ta), int(ia)], "b": [int(tb), int(ib)]}, items,
                             cache_key_of(cache))
    if action == "split":
        if len(refs) != 1:
            raise BadInputError("split: give the instance that starts the new track")
        t, i = refs[0]
        return PlannedAction(video, "split", {"at": [int(t), int(i)]}, (_item(cache, result, t, i, None),),
                             cache_key_of(cache))
    raise BadInputError(f"unknown curation action {action!r}")


def plan_draw(cache: "VideoCache", video: str, frame: int, mask: Any, label: str | None) -> PlannedAction:
    """Plan recording a drawn (or fixed) instance of ``frame``.

    Args:
        mask: (H, W) bool array at the processed frame size, or a COCO RLE with str counts.
        label: its class (None: kept, class decided like any instance's).
    """
    from uvis import masks as mask_ops

    h, w = cache.info.height, cache.info.width
    if isinstance(mask, dict):
        rle = {"size": [int(mask["size"][0]), int(mask["size"][1])], "counts": str(mask["counts"])}
        if rle["size"] != [h, w]:
            raise BadInputError(f"drawn mask is {rle['size'][0]}x{rle['size'][1]} but frames of {video} are {h}x{w}")
    else:
        arr = np.asarray(mask)
        if arr.shape != (h, w):
            raise BadInputError(f"drawn mask has shape {arr.shape} but frames of {video} are {(h, w)}")
        rle = mask_ops.encode(arr.astype(bool))
    if int(mask_ops.area([rle])[0]) == 0:
        raise BadInputError("the drawn mask is empty")
    box = [float(v) for v in mask_ops.to_bbox([rle])[0]]
    item = draw_item(cache, frame, rle["counts"], box, label)
    return PlannedAction(video, "draw", {"frame": int(frame), "mask": rle, "box": box, "label": label}, (item,),
                         cache_key_of(cache))


def track_refs(result: "VideoResult", frame: int, index: int) -> list[Ref]:
    """(frame, index) of every member of the track holding instance ``index`` of ``frame``
    (just that instance when it is not tracked)."""
    inst = result.instances
    slices = _frame_starts(inst.frame)  # type: ignore[arg-type]
    row = int(slices[frame]) + int(index)
    if not 0 <= row < len(inst) or int(inst.frame[row]) != frame:  # type: ignore[index]
        raise BadInputError(f"frame {frame} of {result.info.name} has no instance {index}")
    tid = int(inst.track_id[row])  # type: ignore[index]
    rows = [row] if tid < 0 else np.flatnonzero(inst.track_id == tid).tolist()
    return [(int(inst.frame[r]), int(r - slices[int(inst.frame[r])])) for r in rows]  # type: ignore[index]


def _frame_starts(frames: np.ndarray) -> np.ndarray:
    n = int(frames.max(initial=-1)) + 1
    return np.searchsorted(frames, np.arange(n + 1), side="left")


def overlay(state: CurationState, planned: PlannedAction) -> CurationState:
    """``state`` with ``planned`` added as if logged (for a dry run)."""
    fake = state.version + 1_000_000_000
    effects = list(state.effects)
    structural = list(state.structural)
    struct_items = dict(state.struct_items)
    if planned.action in INSTANCE_ACTIONS:
        effects += [Effect(fake, planned.action, it.frame, it.index, it.fingerprint, it.cache_key, it.src_frame,
                           it.label) for it in planned.items]
    else:
        structural.append(CurationAction(fake, 0.0, planned.video, planned.action, planned.payload,
                                         planned.cache_key))
        struct_items[fake] = list(planned.items)
    return CurationState(effects, structural, fake, struct_items)


def _track_key(result: "VideoResult") -> np.ndarray:
    """(N,) canonical track of each instance: its track's smallest row (-1 untracked),
    so two decisions can be compared whatever their track numbering."""
    tid = result.instances.track_id
    assert tid is not None
    out = np.full(len(tid), -1, np.int64)
    valid = tid >= 0
    if valid.any():
        rows = np.flatnonzero(valid)
        first: dict[int, int] = {}
        for r, t in zip(rows.tolist(), tid[rows].tolist()):
            first.setdefault(t, r)
        out[rows] = [first[t] for t in tid[rows].tolist()]
    return out


def changed_rows(before: "VideoResult", after: "VideoResult") -> np.ndarray:
    """Rows (of the cache table) whose kept state, class or track differ between two
    decisions of one video."""
    n = min(len(before.instances), len(after.instances))
    kb, ka = before.kept[:n], after.kept[:n]
    diff = kb != ka
    both = kb & ka
    diff |= both & (before.classes[:n] != after.classes[:n])
    diff |= both & (_track_key(before)[:n] != _track_key(after)[:n])
    return np.flatnonzero(diff)


def compare(before: "VideoResult", after: "VideoResult", direct: Sequence[int] = (), verb: str = "changes") -> Impact:
    """The difference between two decisions of a video as an :class:`Impact`.

    Args:
        direct: rows the action named (the rest of the changes are propagation).
        verb: wording of the message ("changes" for a preview, "changed" after applying).
    """
    rows = changed_rows(before, after)
    tb, ta = before.instances.track_id, after.instances.track_id
    assert tb is not None and ta is not None

    def tracks(rs: np.ndarray) -> int:
        keys = {("a", int(ta[r])) if ta[r] >= 0 else ("b", int(tb[r])) for r in rs.tolist()
                if ta[r] >= 0 or tb[r] >= 0}
        return len(keys)

    direct_set = set(int(r) for r in direct)
    other = np.array([r for r in rows.tolist() if r not in direct_set], np.int64)
    n, nt = len(rows), tracks(rows)
    msg = f"{verb} {n} instance{'s' if n != 1 else ''} in {nt} track{'s' if nt != 1 else ''}"
    relabelled = np.zeros(0, np.int64)
    if len(other):
        po = tracks(other)
        msg += (f"; {len(other)} of them through propagation (exemplars, prototype memory, track class) "
                f"in {po} track{'s' if po != 1 else ''}")
        both = before.kept[other] & after.kept[other]
        relabelled = other[both & (before.classes[other] != after.classes[other])]
    return Impact(n, nt, len(other), tracks(other) if len(other) else 0, msg, len(relabelled),
                  tracks(relabelled) if len(relabelled) else 0)


def rows_of(cache: "VideoCache", planned: PlannedAction) -> list[int]:
    """Rows of the cache the planned action names (drawn instances have none)."""
    out = []
    for it in planned.items:
        sl = cache.frame_slices[it.frame] if it.frame < len(cache.frame_slices) else slice(0, 0)
        if 0 <= it.index < sl.stop - sl.start:
            out.append(sl.start + it.index)
    return out


def impact(project: "Project", config: Config, planned: PlannedAction) -> Impact:
    """Dry run: what ``planned`` would change in its video's decisions (nothing is written)."""
    video = planned.video
    before = project.decide(config, [video])[video]
    after = project.decide(config, [video], overlay={video: overlay(project.state(video), planned)})[video]
    return compare(before, after, rows_of(project.caches[video], planned), "would change")


# ------------------------------------------------------------------ label-by-example proposals
@dataclass(frozen=True)
class SimilarProposal:
    """Label-by-example proposals for one video: give ``label`` to the ``items``
    ``(frame, index, similarity)`` most similar to an example. Valid only while the
    video's curation log is at ``version`` and the vocabulary is ``vocabulary``."""

    video: str
    label: str | None
    items: tuple[tuple[int, int, float], ...]
    version: int
    vocabulary: tuple[str, ...]


def propose_similar(result: "VideoResult", version: int, frame: int, index: int, label: str | None,
                    k: int = 12, vocabulary: Sequence[str] | None = None) -> SimilarProposal:
    """The ``k`` instances of the video most similar (cosine) to instance ``index`` of
    ``frame``, excluding itself, most similar first. ``label`` defaults to the example's
    class; ``vocabulary``: the configured vocabulary (default: the result's)."""
    inst = result.instances
    emb = inst.embeddings
    assert emb is not None and inst.frame is not None
    starts = _frame_starts(inst.frame)
    row = int(starts[frame]) + int(index)
    label = label or result.class_name(row)
    items: list[tuple[int, int, float]] = []
    if len(inst) >= 2:
        sims = emb @ emb[row]
        sims[row] = -np.inf
        kk = min(k, len(inst) - 1)
        top = np.argpartition(-sims, kk - 1)[:kk]
        top = top[np.argsort(-sims[top], kind="stable")]
        items = [(int(inst.frame[r]), int(r - starts[int(inst.frame[r])]), float(sims[r])) for r in top]
    vocab = tuple(result.vocabulary if vocabulary is None else vocabulary)
    return SimilarProposal(result.info.name, label, tuple(items), int(version), vocab)


def check_proposal(proposal: SimilarProposal, video: str, version: int, vocabulary: Sequence[str]) -> None:
    """Refuse proposals computed under another video, curation state or vocabulary.

    Raises:
        StaleProposal: naming what changed (recompute the proposals).
    """
    if proposal.video != video:
        raise StaleProposal(f"these proposals are for video {proposal.video}, not {video}; propose again")
    if proposal.version != version:
        raise StaleProposal("the curation changed since these proposals were made (an undo, redo or another "
                            "action); propose again")
    if tuple(vocabulary) != proposal.vocabulary:
        raise StaleProposal("the vocabulary changed since these proposals were made; propose again")
    if proposal.label is not None and proposal.label not in vocabulary:
        raise StaleProposal(f"class '{proposal.label}' is no longer in the vocabulary; propose again")


# ------------------------------------------------------------------ vocabulary edits
@dataclass(frozen=True)
class VocabularyImpact:
    """Curated instances whose class a vocabulary edit removes: class -> count, and a warning."""

    removed_in_use: dict[str, int] = field(default_factory=dict)

    @property
    def count(self) -> int:
        return sum(self.removed_in_use.values())

    @property
    def message(self) -> str:
        if not self.removed_in_use:
            return ""
        parts = ", ".join(f"{c} ({n})" for c, n in sorted(self.removed_in_use.items()))
        return (f"{self.count} curated instance{'s' if self.count != 1 else ''} use{'s' if self.count == 1 else ''} "
                f"removed class{'es' if len(self.removed_in_use) != 1 else ''} {parts}: keep their classes (they "
                "stay in the vocabulary), or remove them (their curation no longer applies and is listed)")


def vocabulary_impact(project: "Project", new_vocabulary: Sequence[str]) -> VocabularyImpact:
    """Count curated instances (every video) whose given class is not in ``new_vocabulary``."""
    keep = set(new_vocabulary)
    counts: dict[str, int] = {}
    for name in project.caches:
        for lbl in project.resolved(name).label.values():
            if lbl not in keep:
                counts[lbl] = counts.get(lbl, 0) + 1
    return VocabularyImpact(counts)


def edit_vocabulary(config: Config, new_vocabulary: Sequence[str], impact_: VocabularyImpact,
                    keep_curated: bool) -> Config:
    """``config`` with ``new_vocabulary``; with ``keep_curated`` the removed classes that
    curated instances use are added back (at the end), so those instances keep their class."""
    vocab = [c.strip() for c in new_vocabulary if c.strip()]
    if keep_curated:
        vocab += [c for c in sorted(impact_.removed_in_use) if c not in vocab]
    per_class = {c: v for c, v in config.filters.clip_threshold_per_class.items() if c in vocab}
    return config.replace(labeler__vocabulary=vocab, filters__clip_threshold_per_class=per_class)
