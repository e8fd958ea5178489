"""Statistics plots of one video's decisions (matplotlib, Agg; no pyplot global state).

One figure, five axes: per-class counts stacked by reason (kept and each drop reason),
histograms of objectness, CLIP score and PMF similarity (kept vs dropped), and the
distribution of track lengths.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from uvis.decide import VideoResult
from uvis.types import Reason

if TYPE_CHECKING:
    from matplotlib.figure import Figure



def class_reason_counts(result: VideoResult, max_classes: int = 12) -> tuple[list[str], dict[Reason, np.ndarray]]:
    """Classes (most instances first, at most ``max_classes``) and per-reason counts (C,)."""
    inst = result.instances
    assert inst.label is not None and inst.decision is not None
    labels = inst.label
    uniq, n = np.unique(labels, return_counts=True)
    order = uniq[np.argsort(-n, kind="stable")][:max_classes]
    names = [result.vocabulary[c] if c >= 0 else "unlabelled" for c in order]
    table = {r: np.array([int(((labels == c) & (inst.decision == r)).sum()) for c in order]) for r in Reason}
    return names, table


def stats_figure(result: VideoResult) -> "Figure":
    """The statistics figure of one video's decisions."""
    from uvis.errors import require

    require("matplotlib", "pip install matplotlib")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from app.render import has_text

    text = has_text(result)
    inst = result.instances
    assert inst.decision is not None and inst.clip_score is not None and inst.pmf_similarity is not None
    fig = Figure(figsize=(9.0, 7.2), dpi=90)
    FigureCanvasAgg(fig)
    grid = fig.add_gridspec(3, 2, height_ratios=[1.25, 1, 1])
    ax = fig.add_subplot(grid[0, :])
    names, table = class_reason_counts(result)
    x = np.arange(len(names))
    bottom = np.zeros(len(names))
    for r in Reason:
        vals = table[r]
        if vals.sum() == 0 and r != Reason.KEPT:
            continue
        ax.bar(x, vals, bottom=bottom, color=r.hex, label=r.words(text), width=0.7)
        bottom += vals
    ax.set_xticks(x)
    ax.set_xticklabels(names, rotation=25, ha="right", fontsize=8)
    ax.set_ylabel("instances")
    ax.set_title("instances per class, by decision", fontsize=10)
    ax.legend(fontsize=8, ncols=5, loc="upper right")
    ax.grid(axis="y", alpha=0.3)

    kept = inst.decision == Reason.KEPT
    bins = np.linspace(0, 1, 21)
    for pos, (values, title) in zip(((1, 0), (1, 1), (2, 0)), (
            (inst.objectness, "objectness"),
            (inst.clip_score, "CLIP score (label probability)" if text else "similarity to the closest example"),
            (inst.pmf_similarity, "PMF similarity"))):
        a = fig.add_subplot(grid[pos])
        v = np.asarray(values, np.float32)
        ok = ~np.isnan(v)
        a.hist([np.clip(v[ok & kept], 0, 1), np.clip(v[ok & ~kept], 0, 1)], bins=bins, stacked=True,
               color=[Reason.KEPT.hex, "#bdc3c7"], label=["kept", "dropped"])
        a.set_title(title, fontsize=10)
        a.tick_params(labelsize=8)
        if not ok.any():
            a.text(0.5, 0.5, "no values", ha="center", va="center", transform=a.transAxes, color="grey")
        a.legend(fontsize=7)
    a = fig.add_subplot(grid[2, 1])
    lengths = [t.length for t in result.tracks]
    if lengths:
        a.hist(lengths, bins=min(20, max(1, len(set(lengths)))), color="#3498db")
    else:
        a.text(0.5, 0.5, "no tracks", ha="center", va="center", transform=a.transAxes, color="grey")
    a.set_title(f"track lengths (frames), {len(lengths)} tracks", fontsize=10)
    a.tick_params(labelsize=8)
    fig.tight_layout()
    return fig
