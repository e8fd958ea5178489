"""Pure functions between widget values and the library: parsing, config, picking,
tables, curation payloads, upload checks. No Gradio, no controller: unit-testable.

Instances of a frame are addressed as in the curation log: (frame t, index i within
the frame); ``rows`` is the frame's slice of the video's instance table, so the row
of (t, i) is ``rows.start + i``.
"""
from __future__ import annotations

import html
import math
import re
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from uvis import masks as mask_ops
from uvis.config import Config, template_problem
from uvis.decide import VideoResult
from uvis.errors import BadInputError, ConfigError
from uvis.types import Reason
from uvis.video import VIDEO_EXTENSIONS  # noqa: F401 - the one list of accepted video files (also used by main)
DEFAULT_MAX_UPLOAD_MB = 512
REASON_NAMES: dict[int, str] = {Reason.KEPT: "kept", Reason.OBJECTNESS: "objectness",
                                Reason.CLIP_SCORE: "CLIP score", Reason.PMF: "PMF",
                                Reason.USER_REJECT: "user reject"}
TABLE_HEADERS: list[str] = ["#", "objectness", "label", "score", "decision", "similarity", "track",
                            "top-5 classes", "closest prompt"]


# ----------------------------------------------------------------------------- parsing
def parse_vocabulary(text: str) -> list[str]:
    """Class names from free text: comma- or newline-separated, trimmed, duplicates dropped.

    Raises:
        ConfigError: no class name at all.
    """
    names: list[str] = []
    for part in re.split(r"[,\n]", text or ""):
        name = part.strip()
        if name and name not in names:
            names.append(name)
    if not names:
        raise ConfigError("the vocabulary is empty: enter class names separated by commas or new lines")
    return names


def format_vocabulary(names: Sequence[str]) -> str:
    return ", ".join(names)


def parse_templates(text: str) -> list[str]:
    """Prompt templates, one per line, each with ``{}`` exactly once and otherwise literal text
    (:func:`uvis.config.template_problem`).

    Raises:
        ConfigError: no template, or a line without exactly one ``{}`` (named in the message).
    """
    lines = [ln.strip() for ln in (text or "").splitlines() if ln.strip()]
    if not lines:
        raise ConfigError("no prompt templates: enter one per line, with {} where the class name goes")
    for ln in lines:
        problem = template_problem(ln)
        if problem:
            raise ConfigError(f"template {ln!r} {problem}")
    out: list[str] = []
    for ln in lines:
        if ln not in out:
            out.append(ln)
    return out


def parse_per_class(text: str) -> dict[str, float]:
    """Per-class CLIP thresholds from ``class: value`` (or ``class=value``) entries,
    separated by new lines or commas.

    Raises:
        ConfigError: an entry without a separator or with a non-numeric value.
    """
    out: dict[str, float] = {}
    for part in re.split(r"[,\n]", text or ""):
        part = part.strip()
        if not part:
            continue
        m = re.fullmatch(r"(.+?)\s*[:=]\s*([-+0-9.eE]+)", part)
        if not m:
            raise ConfigError(f"per-class threshold {part!r} must look like 'class: 0.5'")
        try:
            out[m.group(1).strip()] = float(m.group(2))
        except ValueError as exc:
            raise ConfigError(f"per-class threshold {part!r}: {m.group(2)!r} is not a number") from exc
    return out


def format_per_class(values: dict[str, float]) -> str:
    return "\n".join(f"{k}: {v:g}" for k, v in values.items())


@dataclass(frozen=True)
class DecisionSettings:
    """The editable decision settings as the widgets hold them."""

    vocabulary: str
    templates: str
    prompt_pooling: str
    objectness_threshold: float
    clip_threshold: float
    clip_per_class: str
    pmf_enabled: bool
    pmf_threshold: float
    pmf_k: int
    memory_lambda: float
    embedding_weight: float
    max_cost: float

    @classmethod
    def from_config(cls, cfg: Config) -> "DecisionSettings":
        return cls(
            vocabulary=format_vocabulary(cfg.labeler.vocabulary),
            templates="\n".join(cfg.labeler.templates),
            prompt_pooling=cfg.labeler.prompt_pooling,
            objectness_threshold=cfg.filters.objectness_threshold,
            clip_threshold=cfg.filters.clip_threshold,
            clip_per_class=format_per_class(cfg.filters.clip_threshold_per_class),
            pmf_enabled=cfg.filters.pmf_enabled,
            pmf_threshold=cfg.filters.pmf_threshold,
            pmf_k=cfg.filters.pmf_k,
            memory_lambda=cfg.tracker.memory_lambda,
            embedding_weight=cfg.tracker.embedding_weight,
            max_cost=cfg.tracker.max_cost,
        )

    def values(self) -> list[Any]:
        """Widget values in the order of :data:`DecisionSettings` fields."""
        return [getattr(self, f) for f in self.__dataclass_fields__]


def build_config(base: Config, s: DecisionSettings) -> Config:
    """``base`` with the labeler, filter and tracker settings of ``s``; validated.

    Raises:
        ConfigError: any bad value (message names the field).
    """
    vocab = parse_vocabulary(s.vocabulary)
    per_class = parse_per_class(s.clip_per_class)
    unknown = [c for c in per_class if c not in vocab]
    if unknown:
        raise ConfigError(f"per-class CLIP threshold for {', '.join(unknown)}: not in the vocabulary")
    return base.replace(
        labeler__vocabulary=vocab,
        labeler__templates=parse_templates(s.templates),
        labeler__prompt_pooling=s.prompt_pooling,
        filters__objectness_threshold=float(s.objectness_threshold),
        filters__clip_threshold=float(s.clip_threshold),
        filters__clip_threshold_per_class=per_class,
        filters__pmf_enabled=bool(s.pmf_enabled),
        filters__pmf_threshold=float(s.pmf_threshold),
        filters__pmf_k=int(s.pmf_k),
        tracker__memory_lambda=float(s.memory_lambda),
        tracker__embedding_weight=float(s.embedding_weight),
        tracker__max_cost=float(s.max_cost),
    )


# ----------------------------------------------------------------------------- picking
def instance_at(result: VideoResult, rows: slice, x: float, y: float, *, kept_only: bool = False) -> int | None:
    """Index (within the frame) of the instance under frame pixel (x, y), or None.

    The smallest mask containing the point wins; if no mask contains it, the smallest box.
    """
    inst = result.instances
    best: tuple[int, float] | None = None
    box_best: tuple[int, float] | None = None
    xi, yi = int(x), int(y)
    h, w = inst.image_size
    for i, r in enumerate(range(rows.start, rows.stop)):
        if kept_only and int(inst.decision[r]) != Reason.KEPT:  # type: ignore[index]
            continue
        x0, y0, x1, y1 = inst.boxes[r]
        if not (x0 <= x <= x1 and y0 <= y <= y1):
            continue
        area = float((x1 - x0) * (y1 - y0))
        if box_best is None or area < box_best[1]:
            box_best = (i, area)
        if 0 <= yi < h and 0 <= xi < w:
            m = mask_ops.decode(inst.masks[r])
            if m[yi, xi]:
                marea = float(m.sum())
                if best is None or marea < best[1]:
                    best = (i, marea)
    if best is not None:
        return best[0]
    return box_best[0] if box_best is not None else None


def follow_track(result: VideoResult, rows: slice, track: int | None) -> int | None:
    """Index within the frame of the instance of ``track`` (None if absent or no track)."""
    if track is None or track < 0:
        return None
    tid = result.instances.track_id
    assert tid is not None
    hits = np.flatnonzero(tid[rows] == track)
    return int(hits[0]) if len(hits) else None


# ----------------------------------------------------------------------------- views
def class_name(result: VideoResult, label: int) -> str:
    return result.vocabulary[label] if 0 <= label < len(result.vocabulary) else "unlabelled"


def closest_prompt(result: VideoResult, row: int) -> str:
    p = int(result.instances.best_prompt[row])  # type: ignore[index]
    if 0 <= p < len(result.prompts):
        return result.prompts[p]
    return "(by example)" if int(result.instances.label[row]) >= 0 else "—"  # type: ignore[index]


def _fmt(x: float) -> str:
    return "—" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.2f}"


def top5_text(result: VideoResult, row: int) -> str:
    parts = [f"{class_name(result, int(c))} {p:.2f}" for c, p in zip(result.top_classes[row], result.top_probs[row])
             if p > 0]
    return " · ".join(parts) or "—"


def frame_table(result: VideoResult, rows: slice) -> list[list[Any]]:
    """One row per instance of the frame, columns :data:`TABLE_HEADERS`."""
    inst = result.instances
    out: list[list[Any]] = []
    for i, r in enumerate(range(rows.start, rows.stop)):
        tid = int(inst.track_id[r])  # type: ignore[index]
        decision = REASON_NAMES[int(inst.decision[r])] + (" (user)" if result.user[r] else "")  # type: ignore[index]
        out.append([i, round(float(inst.objectness[r]), 3), class_name(result, int(inst.label[r])),  # type: ignore[index]
                    round(float(inst.clip_score[r]), 3), decision, _fmt(float(inst.similarity[r])),  # type: ignore[index]
                    tid if tid >= 0 else "", top5_text(result, r), closest_prompt(result, r)])
    return out


@dataclass(frozen=True)
class Counts:
    """Kept/dropped counts of a set of instances."""

    total: int
    kept: int
    by_reason: dict[str, int]
    tracks: int

    @property
    def dropped(self) -> int:
        return self.total - self.kept


def counts(result: VideoResult, rows: slice | None = None) -> Counts:
    """Counts over the whole video (``rows`` None) or one frame."""
    dec = result.instances.decision
    assert dec is not None
    sel = dec if rows is None else dec[rows]
    by_reason = {REASON_NAMES[r]: int((sel == r).sum()) for r in Reason if r != Reason.KEPT}
    return Counts(len(sel), int((sel == Reason.KEPT).sum()), by_reason, len(result.tracks))


def counts_markdown(result: VideoResult, rows: slice | None, t: int) -> str:
    """The counts line shown above the panels (video totals and this frame)."""
    v = counts(result)
    reasons = " · ".join(f"{k} {n}" for k, n in v.by_reason.items())
    line = (f"**{result.info.name}** — <span id='kept-count'>kept {v.kept}</span> / "
            f"<span id='dropped-count'>dropped {v.dropped}</span> of {v.total} proposals "
            f"(dropped by {reasons}) · {v.tracks} tracks")
    if rows is not None:
        f = counts(result, rows)
        line += f"  \nframe {t}: kept {f.kept} / dropped {f.dropped}"
    inst = result.instances
    if len(inst) and inst.label is not None and (inst.label < 0).all():
        line += ("  \n*No instance has a label yet (no CLIP text encoder): select an instance and "
                 "'relabel as' a class — similar instances follow (label by example).*")
    return line


def instance_card(result: VideoResult, row: int, index: int, frame: int) -> str:
    """HTML card of one instance: decision, top-5 classes as bars, closest prompt."""
    inst = result.instances
    reason = Reason(int(inst.decision[row]))  # type: ignore[index]
    bars = []
    for c, p in zip(result.top_classes[row], result.top_probs[row]):
        if p < 5e-4:  # classes without any evidence (e.g. no example of them yet)
            continue
        pct = max(0.0, min(100.0, 100.0 * float(p)))
        bars.append(f"<div class='uv-bar'><span class='uv-bar-name'>{html.escape(class_name(result, int(c)))}</span>"
                    f"<span class='uv-bar-track'><span class='uv-bar-fill' style='width:{pct:.1f}%'></span></span>"
                    f"<span class='uv-bar-val'>{float(p):.2f}</span></div>")
    tid = int(inst.track_id[row])  # type: ignore[index]
    sim = float(inst.similarity[row])  # type: ignore[index]
    pmf = float(inst.pmf_similarity[row])  # type: ignore[index]
    user = " · curated by you" if result.user[row] else ""
    return (
        f"<div class='uv-card' id='instance-card'><div class='uv-card-title'>frame {frame} · instance #{index}"
        f"{' · track T' + str(tid) if tid >= 0 else ''}</div>"
        f"<div>label <b id='selected-label'>{html.escape(class_name(result, int(inst.label[row])))}</b> "  # type: ignore[index]
        f"(score {float(inst.clip_score[row]):.2f}) · objectness {float(inst.objectness[row]):.2f}</div>"  # type: ignore[index]
        f"<div>decision <b class='uv-reason uv-{reason.key}'>{REASON_NAMES[reason]}</b>"
        f" (deciding similarity {_fmt(sim)}; PMF similarity {_fmt(pmf)}){user}</div>"
        f"<div class='uv-bars'>{''.join(bars) or '<i>no class scores (label an example first)</i>'}</div>"
        f"<div class='uv-prompt'>closest prompt: <i>{html.escape(closest_prompt(result, row))}</i></div></div>"
    )


def similar_instances(result: VideoResult, row: int, k: int = 10) -> list[tuple[int, int, int, float]]:
    """The ``k`` instances most similar to ``row`` (cosine of embeddings), excluding itself.

    Returns:
        ``(row, frame, index_within_frame, similarity)``, most similar first.
    """
    inst = result.instances
    emb = inst.embeddings
    assert emb is not None and inst.frame is not None
    if len(inst) < 2:
        return []
    sims = emb @ emb[row]
    sims[row] = -np.inf
    k = min(k, len(inst) - 1)
    top = np.argpartition(-sims, k - 1)[:k]
    top = top[np.argsort(-sims[top], kind="stable")]
    frames = inst.frame
    starts = np.searchsorted(frames, frames[top], side="left")
    return [(int(r), int(frames[r]), int(r - s), float(sims[r])) for r, s in zip(top, starts)]


def similar_table(result: VideoResult, items: list[tuple[int, int, int, float]]) -> list[list[Any]]:
    inst = result.instances
    return [[f, i, round(s, 3), class_name(result, int(inst.label[r])),  # type: ignore[index]
             REASON_NAMES[int(inst.decision[r])]] for r, f, i, s in items]  # type: ignore[index]


# ----------------------------------------------------------------------------- curation
def instance_payload(t: int, index: int, label: str | None = None) -> dict[str, Any]:
    """Payload of accept/reject (and relabel with ``label``) in the curation log format."""
    payload: dict[str, Any] = {"frame": int(t), "index": int(index)}
    if label is not None:
        payload["label"] = label
    return payload


def merge_payload(a: tuple[int, int], b: tuple[int, int]) -> dict[str, Any]:
    if tuple(a) == tuple(b):
        raise BadInputError("select an instance of another track to merge with the marked one")
    return {"a": [int(a[0]), int(a[1])], "b": [int(b[0]), int(b[1])]}


def split_payload(t: int, index: int) -> dict[str, Any]:
    return {"at": [int(t), int(index)]}


# ----------------------------------------------------------------------------- uploads
def check_upload(path: str | Path, max_bytes: int) -> Path:
    """Type and size check of an uploaded file (before it is decoded).

    Raises:
        BadInputError: missing, empty, too large, or not a video extension.
    """
    p = Path(path)
    if not p.is_file():
        raise BadInputError(f"upload {p.name}: the file did not arrive")
    if p.suffix.lower() not in VIDEO_EXTENSIONS:
        raise BadInputError(f"upload {p.name}: '{p.suffix or '(none)'}' is not a video type "
                            f"({', '.join(VIDEO_EXTENSIONS)})")
    size = p.stat().st_size
    if size == 0:
        raise BadInputError(f"upload {p.name}: the file is empty")
    if size > max_bytes:
        raise BadInputError(f"upload {p.name}: {size / 2**20:.1f} MiB is over the {max_bytes / 2**20:.0f} MiB limit")
    return p


def store_upload(src: Path, uploads_dir: Path) -> Path:
    """Copy an uploaded file into the workspace's uploads folder under a safe unique name."""
    from uvis.workspace import video_name_for

    uploads_dir.mkdir(parents=True, exist_ok=True)
    stem = video_name_for(src.name)
    dest = uploads_dir / f"{stem}{src.suffix.lower()}"
    if dest.exists():
        dest = uploads_dir / f"{stem}_{uuid.uuid4().hex[:6]}{src.suffix.lower()}"
    tmp = dest.with_name(f".{dest.name}.part")
    shutil.copyfile(src, tmp)
    tmp.replace(dest)
    return dest


def resolve_inside(text: str, roots: Sequence[Path]) -> Path:
    """A user-typed path, accepted only if it resolves inside one of ``roots``.

    Relative paths are taken relative to the first root (the workspace).

    Raises:
        BadInputError: empty, missing, or outside every root.
    """
    raw = (text or "").strip()
    if not raw:
        raise BadInputError("enter a path of a video inside the workspace")
    p = Path(raw).expanduser()
    if not p.is_absolute():
        p = roots[0] / p
    p = p.resolve()
    if not any(p == r.resolve() or r.resolve() in p.parents for r in roots):
        raise BadInputError(f"{raw}: only videos inside the workspace ({roots[0]}) can be added by path")
    if not p.exists():
        raise BadInputError(f"{raw}: no such file or folder")
    return p

