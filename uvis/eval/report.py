"""The Table-1 report: per-class frame-level F1 of several filter settings.

The paper's supplementary Table 1 compares pseudo-labels with no filtering, the score
filter, and the score filter with PMF by per-class F1 and mF1. :func:`table1` turns
one :class:`~uvis.eval.frame_f1.F1Result` per setting (row) into that table, as
Markdown (classes down, settings across, best value in bold, F1 in percent), CSV (one
line per setting and class, F1 in [0, 1]) and a grouped bar chart (PNG).
"""
from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from uvis.errors import BadInputError
from uvis.eval.frame_f1 import F1Result
from uvis.fsutil import atomic_path, atomic_write_text

MF1 = "mF1"


@dataclass(frozen=True)
class Table1:
    """Per-class F1 of several settings over the same ground truth.

    Attributes:
        rows: setting name -> result, in display order.
        class_names: class id -> name.
        classes: the class ids shown (present in the ground truth), sorted.
        notes: free-form facts about the run (videos matched, frames evaluated, ...).
    """

    rows: dict[str, F1Result]
    class_names: dict[int, str]
    classes: list[int]
    notes: dict[str, Any] = field(default_factory=dict)

    def f1(self, row: str, class_id: int) -> float:
        """F1 in [0, 1] of one class in one row (NaN if the class is absent from that row)."""
        counts = self.rows[row].per_class.get(class_id)
        return counts.f1 if counts is not None else math.nan

    def mf1(self, row: str) -> float:
        return self.rows[row].mF1

    def name(self, class_id: int) -> str:
        return self.class_names.get(class_id, str(class_id))

    # ------------------------------------------------------------------ renderers
    def to_markdown(self) -> str:
        """Markdown table: one line per class plus mF1; F1 in percent, best in bold."""
        names = list(self.rows)
        lines = [
            "| class | " + " | ".join(names) + " |",
            "|---|" + "---:|" * len(names),
        ]
        for cid in self.classes:
            vals = [self.f1(r, cid) for r in names]
            lines.append(f"| {self.name(cid)} | " + " | ".join(_cells(vals)) + " |")
        vals = [self.mf1(r) for r in names]
        lines.append(f"| **{MF1}** | " + " | ".join(_cells(vals)) + " |")
        return "\n".join(lines) + "\n"

    def to_csv(self) -> str:
        """CSV, one line per (row, class) with counts and F1 in [0, 1], then one mF1 line per row."""
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(["row", "class_id", "class", "tp", "fp", "fn", "precision", "recall", "f1"])
        for r, res in self.rows.items():
            for cid in self.classes:
                n = res.per_class.get(cid)
                if n is None:
                    w.writerow([r, cid, self.name(cid), "", "", "", "", "", ""])
                    continue
                w.writerow([r, cid, self.name(cid), n.tp, n.fp, n.fn, _fmt(n.precision), _fmt(n.recall), _fmt(n.f1)])
        for r, res in self.rows.items():
            w.writerow([r, "", MF1, "", "", "", "", "", _fmt(res.mF1)])
        return buf.getvalue()

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: ``{"classes": [...], "rows": {name: F1Result.to_dict()}, "notes": {...}}``."""
        return {
            "classes": [{"id": c, "name": self.name(c)} for c in self.classes],
            "rows": {r: res.to_dict(self.class_names) for r, res in self.rows.items()},
            "notes": dict(self.notes),
        }

    def plot(self, path: str | Path) -> Path:
        """Grouped bar chart of per-class F1 (%) and mF1, one colour per row, saved as PNG."""
        from uvis.errors import require

        require("matplotlib", "pip install matplotlib")
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        path = Path(path)
        labels = [self.name(c) for c in self.classes] + [MF1]
        names = list(self.rows)
        n_groups, n_rows = len(labels), max(len(names), 1)
        fig = Figure(figsize=(min(40.0, max(6.0, 0.12 * n_groups * n_rows + 1.5)), 5.0), dpi=100)
        FigureCanvasAgg(fig)
        ax = fig.add_subplot(1, 1, 1)
        width = 0.8 / n_rows
        x = np.arange(n_groups)
        for i, r in enumerate(names):
            vals = [self.f1(r, c) for c in self.classes] + [self.mf1(r)]
            heights = [0.0 if math.isnan(v) else 100.0 * v for v in vals]
            ax.bar(x - 0.4 + width * (i + 0.5), heights, width, label=r)
        ax.set_xticks(x)
        ax.set_xticklabels(labels, rotation=60, ha="right", fontsize=8)
        ax.set_ylabel("F1 (%)")
        ax.set_ylim(0, 100)
        ax.set_xlim(-0.6, n_groups - 0.4)
        ax.axvline(n_groups - 1.5, color="grey", linewidth=0.8, linestyle=":")
        ax.set_title("Frame-level F1 per class (Table 1)")
        ax.legend(fontsize=8)
        ax.grid(axis="y", alpha=0.3)
        fig.tight_layout()
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png")
        return path

    def save(self, out_dir: str | Path, stem: str = "table1") -> dict[str, Path]:
        """Write ``<stem>.md``, ``.csv``, ``.json`` and ``.png`` into ``out_dir``; returns the paths."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        paths = {
            "markdown": out / f"{stem}.md", "csv": out / f"{stem}.csv",
            "json": out / f"{stem}.json", "png": out / f"{stem}.png",
        }
        atomic_write_text(paths["markdown"], self.to_markdown())
        atomic_write_text(paths["csv"], self.to_csv())
        atomic_write_text(paths["json"], json.dumps(self.to_dict(), indent=2))
        self.plot(paths["png"])
        return paths


def table1(
    rows: Mapping[str, F1Result], class_names: Mapping[int, str], notes: Mapping[str, Any] | None = None
) -> Table1:
    """Build :class:`Table1` from one frame-level F1 result per setting.

    Args:
        rows: setting name -> :class:`F1Result` (e.g. ``none``, ``score``, ``score+pmf``),
            all over the same ground truth and all class-aware.
        class_names: class id -> name (ids not named are shown by number).
        notes: optional facts stored with the table.
    Raises:
        BadInputError: no rows, or a class-agnostic row.
    """
    if not rows:
        raise BadInputError("table1 needs at least one row")
    agnostic = [r for r, res in rows.items() if res.class_agnostic]
    if agnostic:
        raise BadInputError(f"table1 rows must be class-aware; class-agnostic: {', '.join(agnostic)}")
    classes = sorted({c for res in rows.values() for c in res.gt_classes})
    return Table1(rows=dict(rows), class_names=dict(class_names), classes=classes, notes=dict(notes or {}))


def _cells(vals: list[float]) -> list[str]:
    """Percent with one decimal; the best value(s) in bold; NaN as an en dash."""
    finite = [round(100 * v, 1) for v in vals if not math.isnan(v)]
    best = max(finite) if finite else None
    out = []
    for v in vals:
        if math.isnan(v):
            out.append("–")
            continue
        s = f"{100 * v:.1f}"
        out.append(f"**{s}**" if len(vals) > 1 and round(100 * v, 1) == best else s)
    return out


def _fmt(x: float) -> str:
    return "" if math.isnan(x) else f"{x:.6f}"
