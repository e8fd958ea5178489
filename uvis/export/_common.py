"""Helpers shared by the exporters and importers (private).

Per-instance *columns* are the lossless form of the decision table used in the
``uvis`` extension fields of the JSON exports: parallel lists (one entry per exported
instance) named after the :class:`~uvis.types.Instances` fields, JSON-ready (NaN as
``null``, decisions as :class:`~uvis.types.Reason` keys, boxes xyxy pixels).
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from uvis.decide import VideoResult
from uvis.errors import BadInputError
from uvis.export._io import finite_or_none, none_to_nan
from uvis.types import Reason

#: Names of the per-instance columns, in the order they are written.
COLUMNS = ("frame", "proposal_index", "track_id", "label", "objectness", "clip_score", "best_prompt",
           "decision", "similarity", "pmf_similarity", "box", "curated")


def proposal_indices(frame: np.ndarray) -> np.ndarray:
    """(N,) index of each instance within its frame, for a frame-sorted table.

    ``(frame[i], proposal_index[i])`` is an instance's stable identity: the curation
    log and :meth:`uvis.cache.VideoCache.row` address instances this way.
    """
    frame = np.asarray(frame)
    if len(frame) and np.any(np.diff(frame) < 0):
        raise ValueError("instances are not sorted by frame")
    return (np.arange(len(frame)) - np.searchsorted(frame, frame, side="left")).astype(np.int32)


def common_vocabulary(results: Mapping[str, VideoResult]) -> tuple[list[str], list[str]]:
    """The vocabulary and prompt list shared by all results (BadInputError if they differ)."""
    if not results:
        raise BadInputError("nothing to export: no videos were given")
    items = list(results.items())
    for name, _ in items:
        if not name or name.startswith(".") or any(c in name for c in "/\\\0"):
            raise BadInputError(f"video name {name!r} cannot be used as a file name in an export")
    vocab, prompts = list(items[0][1].vocabulary), list(items[0][1].prompts)
    for name, r in items[1:]:
        if list(r.vocabulary) != vocab:
            raise BadInputError(f"video {name} was decided with a different vocabulary than {items[0][0]}; "
                                "export videos decided with one config together")
    return vocab, prompts


def video_ids(results: Mapping[str, VideoResult]) -> dict[str, int]:
    """1-based video ids in the order of ``results`` (the same in every export)."""
    return {name: i + 1 for i, name in enumerate(results)}


def export_labels(r: VideoResult) -> np.ndarray:
    """(N,) class exported per instance: ``r.classes`` (:func:`uvis.curation.instance_classes`:
    the person's class, else the track's class, else its own label)."""
    return r.classes.astype(np.int32)


def instance_columns(r: VideoResult, rows: Sequence[int] | np.ndarray) -> dict[str, list[Any]]:
    """JSON-ready per-instance columns for the given rows of ``r.instances``."""
    inst = r.instances
    rows = np.asarray(rows, dtype=np.int64)
    pidx = proposal_indices(inst.frame)

    def floats(a: np.ndarray | None) -> list[float | None]:
        return [None] * len(rows) if a is None else [finite_or_none(x) for x in a[rows]]

    def ints(a: np.ndarray | None, missing: int = -1) -> list[int]:
        return [missing] * len(rows) if a is None else [int(x) for x in a[rows]]

    return {
        "frame": ints(inst.frame),
        "proposal_index": [int(x) for x in pidx[rows]],
        "track_id": ints(inst.track_id),
        "label": ints(inst.label),
        "objectness": floats(inst.objectness),
        "clip_score": floats(inst.clip_score),
        "best_prompt": ints(inst.best_prompt),
        "decision": [Reason(int(d)).key for d in inst.decision[rows]] if inst.decision is not None
        else ["kept"] * len(rows),
        "similarity": floats(inst.similarity),
        "pmf_similarity": floats(inst.pmf_similarity),
        "box": inst.boxes[rows].tolist(),
        "curated": [bool(x) for x in r.user[rows]],
    }


def parse_columns(cols: Any, n: int, where: str) -> dict[str, np.ndarray]:
    """Validate columns written by :func:`instance_columns` (``n`` entries each) into arrays.

    Raises:
        BadInputError: naming ``where`` and the column when a column is missing,
            has the wrong length or holds a wrong value.
    """
    if not isinstance(cols, dict):
        raise BadInputError(f"{where}: must be an object of per-instance columns")
    out: dict[str, np.ndarray] = {}
    for key in COLUMNS:
        if key not in cols:
            raise BadInputError(f"{where}: missing column '{key}'")
        col = cols[key]
        if not isinstance(col, list) or len(col) != n:
            raise BadInputError(f"{where}.{key}: must be a list of {n} entries (one per frame with a mask)")
        try:
            if key == "decision":
                out[key] = np.array([Reason.from_key(str(d)) for d in col], dtype=np.int8)
            elif key == "box":
                arr = np.asarray(col, dtype=np.float32).reshape(n, 4)
                out[key] = arr
            elif key == "curated":
                out[key] = np.array([bool(x) for x in col], dtype=bool)
            elif key in ("objectness", "clip_score", "similarity", "pmf_similarity"):
                out[key] = np.array([none_to_nan(x) for x in col], dtype=np.float32)
            else:
                out[key] = np.array([int(x) for x in col], dtype=np.int32)
        except (KeyError, TypeError, ValueError) as exc:
            raise BadInputError(f"{where}.{key}: invalid value ({exc})") from exc
    return out
