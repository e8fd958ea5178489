"""Summary statistics of decisions: per-class counts by reason, track counts."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from uvis.decide import VideoResult
from uvis.types import Reason


@dataclass
class ClassCounts:
    """Counts of one class: kept, dropped per reason, tracks."""

    name: str
    kept: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    tracks: int = 0


def class_counts(results: dict[str, VideoResult]) -> list[ClassCounts]:
    """Per-class counts over the given videos (classes with any instance), plus an
    ``(unlabelled)`` row for instances without a label. An instance counts under its class
    as shown and exported (``VideoResult.classes``: the person's class, else its track's)."""
    rows: dict[int, ClassCounts] = {}
    vocab: list[str] = []
    for res in results.values():
        vocab = res.vocabulary
        inst = res.instances
        assert inst.decision is not None
        classes = res.classes
        for lbl in np.unique(classes):
            name = vocab[lbl] if lbl >= 0 else "(unlabelled)"
            row = rows.setdefault(int(lbl), ClassCounts(name, dropped={r.key: 0 for r in Reason if r != Reason.KEPT}))
            sel = classes == lbl
            dec = inst.decision[sel]
            row.kept += int((dec == Reason.KEPT).sum())
            for r in Reason:
                if r != Reason.KEPT:
                    row.dropped[r.key] += int((dec == r).sum())
        for tr in res.tracks:
            rows.setdefault(tr.label, ClassCounts(vocab[tr.label] if tr.label >= 0 else "(unlabelled)",
                                                  dropped={r.key: 0 for r in Reason if r != Reason.KEPT}))
            rows[tr.label].tracks += 1
    return sorted(rows.values(), key=lambda r: (-r.kept, r.name))


def format_counts(results: dict[str, VideoResult]) -> str:
    """A fixed-width text table of :func:`class_counts` with totals."""
    rows = class_counts(results)
    reasons = [r.key for r in Reason if r != Reason.KEPT]
    header = ["class", "kept", *reasons, "tracks"]
    body = [[r.name, str(r.kept), *(str(r.dropped.get(k, 0)) for k in reasons), str(r.tracks)] for r in rows]
    total = ["TOTAL", str(sum(r.kept for r in rows)),
             *(str(sum(r.dropped.get(k, 0) for r in rows)) for k in reasons), str(sum(r.tracks for r in rows))]
    table = [header, *body, total]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths)))
             for row in table]
    lines.insert(1, "-" * len(lines[0]))
    lines.insert(len(lines) - 1, "-" * len(lines[0]))
    return "\n".join(lines)
