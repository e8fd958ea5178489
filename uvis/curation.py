"""Curation with provenance: which instance a logged action means, in the cache at hand.

Every logged item (:class:`uvis.db.ItemRef`) names the cache it was made on and the
instance's **fingerprint** (:func:`fingerprint`: frame, box and mask RLE). Against a
loaded cache an item resolves (:func:`resolve`) as follows:

* made on this cache: it applies to the instance at its (frame, index) **only if** that
  instance has its fingerprint;
* made on an earlier labelling of the video (another cache key: other proposer or
  embedder settings): it is **carried over** by one-to-one matching of the curated
  instances to the new proposals of the same source frame — Hungarian assignment on mask
  IoU, pairs with IoU >= :data:`CARRY_OVER_IOU` (0.5) accepted;
* otherwise it is listed as :class:`Unresolved` (reason ``earlier_labelling``,
  ``not_cached`` for frames not cached yet, ``changed`` for a fingerprint mismatch,
  ``no_provenance`` for a pre-provenance row the migration could not place,
  ``class_outside_vocabulary`` for a label the current vocabulary lacks) — never
  dropped or applied to another instance silently. :func:`unresolved_message` words it
  for the CLI ``show``, the app's counts line and its history panel.

The class of an instance as shown, counted, exported and evaluated is
:func:`instance_classes` (DESIGN §1.6, the track-label rule): a curated instance has
the class the person gave it; a tracked instance otherwise has its track's class
(:func:`uvis.tracker.track_classes`: the majority of the curated labels in the track,
else the score-weighted vote); an untracked one its own label.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np

from uvis.config import CLASS_AGNOSTIC_NAME
from uvis.db import CurationState, Effect, ItemRef, is_legacy
from uvis.errors import BadInputError

if TYPE_CHECKING:
    from uvis.cache import VideoCache
    from uvis.workspace import Workspace

CARRY_OVER_IOU = 0.5
"""Minimum mask IoU for carrying a curated instance over to a proposal of a re-labelled video."""

REASONS = {
    "earlier_labelling": "refers to an earlier labelling of this video (no new proposal overlaps it with "
                         f"mask IoU >= {CARRY_OVER_IOU})",
    "not_cached": "refers to a frame not cached yet",
    "changed": "refers to an instance that changed in this cache",
    "no_provenance": "was logged before provenance was recorded and its instance no longer exists",
    "class_outside_vocabulary": "gives a class that is not in the vocabulary",
}
"""Why an item does not apply, as shown to people."""


def fingerprint(frame: int, box: Sequence[float], counts: str) -> str:
    """Fingerprint of one instance: sha1 of its frame, box (xyxy pixels, 0.1 px) and mask
    RLE counts, 16 hex digits. Equal fingerprints mean the same mask at the same place."""
    x0, y0, x1, y1 = (float(v) for v in box)
    raw = f"{int(frame)}|{x0:.1f},{y0:.1f},{x1:.1f},{y1:.1f}|{counts}"
    return hashlib.sha1(raw.encode()).hexdigest()[:16]


def cache_key_of(cache: "VideoCache") -> str:
    """The key of a loaded cache (its folder name under ``videos/<name>/``)."""
    return cache.directory.name


def row_fingerprint(cache: "VideoCache", row: int) -> str:
    inst = cache.instances
    return fingerprint(int(inst.frame[row]), inst.boxes[row], inst.masks[row]["counts"])  # type: ignore[index]


def src_frame_of(cache: "VideoCache", frame: int) -> int | None:
    """Source-video frame index of processed frame ``frame`` (None if unknown)."""
    idx = cache.info.source_indices
    return int(idx[frame]) if 0 <= frame < len(idx) else None


def item_for(cache: "VideoCache", frame: int, index: int, label: str | None = None) -> ItemRef:
    """The item of instance ``index`` of ``frame`` in ``cache`` (BadInputError if absent)."""
    row = cache.row(int(frame), int(index))
    return ItemRef(int(frame), int(index), row_fingerprint(cache, row), cache_key_of(cache),
                   src_frame_of(cache, int(frame)), cache.instances.masks[row]["counts"], label)


def draw_item(cache: "VideoCache", frame: int, counts: str, box: Sequence[float], label: str | None) -> ItemRef:
    """The item of a drawn instance (index -1: it gets its place when decided)."""
    if not 0 <= int(frame) < cache.num_cached:
        raise BadInputError(f"frame {frame} is not cached for {cache.info.name} ({cache.num_cached} frames)")
    return ItemRef(int(frame), -1, fingerprint(frame, box, counts), cache_key_of(cache),
                   src_frame_of(cache, int(frame)), counts, label)


@dataclass(frozen=True)
class Unresolved:
    """An item that does not apply to the cache at hand: the action it belongs to, what
    kind of item, where it pointed, and why (a key of :data:`REASONS`)."""

    action_id: int
    kind: str
    frame: int
    index: int
    reason: str


@dataclass(frozen=True)
class DrawnInstance:
    """A drawn instance to add to frame ``frame``: mask counts, box xyxy, label, action id."""

    action_id: int
    frame: int
    counts: str
    box: tuple[float, float, float, float]
    label: str | None
    fingerprint: str


@dataclass
class Resolved:
    """Curation of one video resolved to rows of its cache (drawn instances get rows
    ``len(cache.instances) + k`` in ``draws`` order).

    ``label``: row -> class name a person gave (relabel, accept with a label, draw);
    ``accepted``/``rejected``: rows; ``order``: row -> id of the action that decided it;
    ``merges``/``splits``: rows; ``carried``: items placed by carry-over;
    ``unresolved``: what does not apply.
    """

    label: dict[int, str] = field(default_factory=dict)
    accepted: set[int] = field(default_factory=set)
    rejected: set[int] = field(default_factory=set)
    order: dict[int, int] = field(default_factory=dict)
    merges: list[tuple[int, int]] = field(default_factory=list)
    splits: list[int] = field(default_factory=list)
    draws: list[DrawnInstance] = field(default_factory=list)
    carried: int = 0
    unresolved: list[Unresolved] = field(default_factory=list)


MaskLookup = Callable[[Sequence[tuple[int, str]]], dict[tuple[int, str], "str | None"]]


def _carry_over(cache: "VideoCache", stale: list[tuple[int, str, int, int | None]],
                masks: dict[tuple[int, str], str | None]) -> dict[tuple[int, str], int]:
    """Match stale curated instances ``(action_id, fp, frame, src_frame)`` to rows of ``cache``.

    Distinct fingerprints are one instance each; per target frame, Hungarian assignment
    on mask IoU, pairs with IoU >= CARRY_OVER_IOU. Returns ``(action_id, fp) -> row``.
    """
    from scipy.optimize import linear_sum_assignment

    from uvis import masks as mask_ops

    src_to_t = {int(s): t for t, s in enumerate(cache.info.source_indices[:cache.num_cached])}
    h, w = cache.info.height, cache.info.width
    by_frame: dict[int, dict[str, str]] = {}
    keys_of: dict[str, list[tuple[int, str]]] = {}
    for aid, fp, frame, src in stale:
        t = src_to_t.get(src) if src is not None and src_to_t else (frame if frame < cache.num_cached else None)
        counts = masks.get((aid, fp))
        if t is None or counts is None:
            continue
        by_frame.setdefault(t, {})[fp] = counts
        keys_of.setdefault(fp, []).append((aid, fp))
    out: dict[tuple[int, str], int] = {}
    for t, refs in by_frame.items():
        sl = cache.frame_slices[t]
        if sl.stop <= sl.start:
            continue
        fps = list(refs)
        old = [mask_ops.to_coco({"size": [h, w], "counts": refs[fp]}) for fp in fps]
        new = [mask_ops.to_coco(cache.instances.masks[r]) for r in range(sl.start, sl.stop)]
        iou = mask_ops.iou_matrix(old, new)
        ri, ci = linear_sum_assignment(-iou)
        for a, b in zip(ri, ci):
            if iou[a, b] >= CARRY_OVER_IOU:
                for key in keys_of[fps[a]]:
                    out[key] = sl.start + int(b)
    return out


def resolve(cache: "VideoCache", state: CurationState, masks: MaskLookup,
            draw_rows: dict[str, int] | None = None) -> Resolved:
    """Resolve a video's effective curation (:meth:`uvis.db.WorkspaceDB.effect`) against ``cache``.

    Args:
        cache: the loaded cache decisions are made on.
        state: the video's effective curation.
        masks: ``[(action_id, fingerprint)] -> mask counts`` of stale items (for carry-over).
        draw_rows: fingerprint -> row of drawn instances (filled here when None).
    """
    key = cache_key_of(cache)
    out = Resolved()
    draw_rows = {} if draw_rows is None else draw_rows
    n = len(cache.instances)
    for action in state.structural:
        if action.action != "draw":
            continue
        for it in state.struct_items.get(action.id, []):
            if it.cache_key != key:
                # drawn on an earlier labelling: the mask is still valid if the frame size is
                p = action.payload
                if list(p.get("mask", {}).get("size", [])) != [cache.info.height, cache.info.width]:
                    out.unresolved.append(Unresolved(action.id, "draw", it.frame, -1, "earlier_labelling"))
                    continue
            if it.frame >= cache.num_cached:
                out.unresolved.append(Unresolved(action.id, "draw", it.frame, -1, "not_cached"))
                continue
            p = action.payload
            draw_rows[it.fingerprint] = n + len(out.draws)
            out.draws.append(DrawnInstance(action.id, it.frame, p["mask"]["counts"],
                                           tuple(float(v) for v in p["box"]), it.label, it.fingerprint))

    direct: dict[tuple[int, str], int | str] = {}  # (action, fp) -> row or unresolved reason
    stale: list[tuple[int, str, int, int | None]] = []

    def place(aid: int, it: ItemRef | Effect) -> None:
        fp = it.fingerprint
        if fp in draw_rows:
            direct[(aid, fp)] = draw_rows[fp]
        elif is_legacy(fp):
            if not it.cache_key:
                direct[(aid, fp)] = "no_provenance"
            elif it.cache_key != key:
                direct[(aid, fp)] = "earlier_labelling"
            else:
                try:
                    direct[(aid, fp)] = cache.row(it.frame, it.index)
                except BadInputError:
                    direct[(aid, fp)] = "not_cached" if it.frame >= cache.num_cached else "changed"
        elif it.cache_key == key:
            if it.frame >= cache.num_cached:
                direct[(aid, fp)] = "not_cached"
                return
            try:
                row = cache.row(it.frame, it.index)
            except BadInputError:
                direct[(aid, fp)] = "changed"
                return
            direct[(aid, fp)] = row if row_fingerprint(cache, row) == fp else "changed"
        else:
            stale.append((aid, fp, it.frame, it.src_frame))

    for e in state.effects:
        if e.kind == "draw" and e.fingerprint not in draw_rows:
            continue  # a draw that could not be placed is listed above
        place(e.action_id, e)
    for action in state.structural:
        if action.action in ("merge", "split"):
            for it in state.struct_items.get(action.id, []):
                place(action.id, it)
    if stale:
        carried = _carry_over(cache, stale, masks([(a, fp) for a, fp, _, _ in stale]))
        for aid, fp, frame, _ in stale:
            if (aid, fp) in carried:
                direct[(aid, fp)] = carried[(aid, fp)]
                out.carried += 1
            else:
                pending = not cache.complete and (frame >= cache.num_cached)
                direct[(aid, fp)] = "not_cached" if pending else "earlier_labelling"

    def row_of(aid: int, it: ItemRef | Effect, kind: str) -> int | None:
        got = direct[(aid, it.fingerprint)]
        if isinstance(got, str):
            out.unresolved.append(Unresolved(aid, kind, it.frame, it.index, got))
            return None
        return got

    for e in state.effects:  # oldest action first: a newer action on the same row wins
        if (e.action_id, e.fingerprint) not in direct:
            continue
        row = row_of(e.action_id, e, e.kind)
        if row is None:
            continue
        out.order[row] = e.action_id
        if e.kind == "reject":
            out.rejected.add(row)
            out.accepted.discard(row)
            out.label.pop(row, None)
            continue
        out.rejected.discard(row)
        out.accepted.add(row)
        if e.label and not (e.kind == "accept" and e.label == CLASS_AGNOSTIC_NAME):
            out.label[row] = e.label
        else:
            out.label.pop(row, None)
    for action in state.structural:
        items = state.struct_items.get(action.id, [])
        if action.action == "merge" and len(items) == 2:
            a, b = row_of(action.id, items[0], "merge"), row_of(action.id, items[1], "merge")
            if a is not None and b is not None:
                out.merges.append((a, b))
        elif action.action == "split" and items:
            r = row_of(action.id, items[0], "split")
            if r is not None:
                out.splits.append(r)
    return out


def unresolved_actions(unresolved: Sequence[Unresolved], reasons: Sequence[str] | None = None) -> list[int]:
    """Distinct action ids among ``unresolved`` items (optionally of the given reasons)."""
    return sorted({u.action_id for u in unresolved if reasons is None or u.reason in reasons})


def unresolved_message(unresolved: Sequence[Unresolved]) -> str:
    """One line per reason, e.g. "3 curation actions refer to an earlier labelling of this
    video"; empty when everything applies."""
    lines = []
    for reason in REASONS:
        n = len(unresolved_actions(unresolved, [reason]))
        if n:
            lines.append(f"{n} curation action{'s' if n != 1 else ''} {REASONS[reason]}"
                         if reason != "earlier_labelling" else
                         f"{n} curation action{'s' if n != 1 else ''} refer{'s' if n == 1 else ''} to an earlier "
                         "labelling of this video")
    return "; ".join(lines)


def instance_classes(labels: np.ndarray, track_id: np.ndarray, track_class: dict[int, int],
                     curated_label: np.ndarray) -> np.ndarray:
    """(N,) int32 class of each instance as shown, counted, exported and evaluated.

    Args:
        labels: (N,) the matched label (-1: none).
        track_id: (N,) track ids (-1: untracked).
        track_class: track id -> class (:func:`uvis.tracker.track_classes`).
        curated_label: (N,) class a person gave (-1: not curated or no class).
    Returns:
        the person's class where given, else the track's class for tracked instances, else
        the instance's own label.
    """
    out = labels.astype(np.int32).copy()
    tracked = np.flatnonzero(track_id >= 0)
    if len(tracked):
        out[tracked] = [track_class.get(int(t), int(labels[i])) for i, t in zip(tracked, track_id[tracked])]
    given = curated_label >= 0
    out[given] = curated_label[given]
    return out


def backfill_provenance(workspace: "Workspace") -> dict[str, int]:
    """Give pre-provenance items (schema migration) the fingerprint of the video's current
    cache where that (frame, index) exists. Returns per video how many items could NOT be
    placed (they stay listed as ``no_provenance``)."""
    from uvis.cache import VideoCache

    db = workspace.db
    missing: dict[str, int] = {}
    for video in db.curated_videos():
        legacy = db.legacy_items(video)
        if not legacy:
            continue
        rec = db.video(video)
        cache = None
        if rec is not None and rec.cache_key:
            try:
                cache = VideoCache.load(workspace.cache_dir(video, rec.cache_key))
            except (BadInputError, OSError, ValueError, KeyError):
                cache = None
        rows = []
        placed = 0
        for aid, seq, t, i in legacy:
            if cache is None:
                continue  # no cache yet: tried again once the video is labelled
            try:
                it = item_for(cache, t, i)
            except BadInputError:  # not in the current cache: marked tried ("" key), listed
                rows.append((aid, seq, "", f"legacy:{t}:{i}", None, None))
                continue
            placed += 1
            rows.append((aid, seq, it.cache_key, it.fingerprint, it.src_frame, it.mask))
        if rows:
            db.set_provenance(rows)
        if len(legacy) - placed:
            missing[video] = len(legacy) - placed
    return missing
