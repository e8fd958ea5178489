"""The track timeline: one swimlane per track over the frames, as an SVG.

Lanes: the first shows, per frame, the dropped proposals coloured by their main reason
(darker = more); then one lane per track (kept instances, the track's colour; a frame
with a curated member is marked with a dark tick). The current frame is a vertical
line and the selected track's lane is outlined. Every lane carries ``data-track`` (and
the SVG ``data-frames``): a click jumps to the clicked frame and selects the track
(see :data:`app.text.PAGE_JS`).
"""
from __future__ import annotations

import html
from dataclasses import dataclass

import numpy as np

from app.render import class_name, colour_for, has_text
from uvis.decide import VideoResult
from uvis.types import Reason

LANE_H = 14
LABEL_W = 150
WIDTH = 1000
MAX_LANES = 60


@dataclass(frozen=True)
class TimelineFilter:
    """Which tracks the timeline lists: by class name, curated only, minimum length
    (frames), and which drop reason the first lane shows (None: all)."""

    cls: str | None = None
    curated_only: bool = False
    min_length: int = 1
    reason: str | None = None


def _runs(frames: np.ndarray) -> list[tuple[int, int]]:
    """Maximal runs of consecutive frame indices as (first, last)."""
    if not len(frames):
        return []
    f = np.unique(frames)
    breaks = np.flatnonzero(np.diff(f) > 1)
    starts = np.r_[0, breaks + 1]
    ends = np.r_[breaks, len(f) - 1]
    return [(int(f[s]), int(f[e])) for s, e in zip(starts, ends)]


def track_rows(result: VideoResult, flt: TimelineFilter) -> list[tuple[int, int, str, np.ndarray, np.ndarray]]:
    """Tracks passing ``flt``: (track id, length, class name, member frames, curated member frames),
    longest first."""
    inst = result.instances
    assert inst.track_id is not None and inst.frame is not None
    labels = result.track_labels()
    out = []
    tid = inst.track_id
    for tr in result.tracks:
        name = class_name(result, tr.label)
        if flt.cls and name != flt.cls:
            continue
        if tr.length < flt.min_length:
            continue
        members = np.flatnonzero(tid == tr.track_id)
        cur = inst.frame[members[result.user[members]]]
        if flt.curated_only and not len(cur):
            continue
        out.append((tr.track_id, tr.length, class_name(result, labels.get(tr.track_id, tr.label)),
                    inst.frame[members], cur))
    out.sort(key=lambda r: (-r[1], r[0]))
    return out


def timeline_html(result: VideoResult, num_frames: int, frame: int, selected_track: int | None,
                  flt: TimelineFilter = TimelineFilter()) -> str:
    """The timeline SVG (plus a one-line summary) of one video's decisions."""
    inst = result.instances
    assert inst.decision is not None and inst.frame is not None
    n = max(1, num_frames)
    rows = track_rows(result, flt)
    shown = rows[:MAX_LANES]
    fw = (WIDTH - LABEL_W) / n
    height = LANE_H * (len(shown) + 1) + 4
    x = lambda t: LABEL_W + t * fw  # noqa: E731
    text = has_text(result)
    parts = [f"<svg class='uv-timeline' id='timeline-svg' data-frames='{n}' data-x0='{LABEL_W}' "
             f"data-width='{WIDTH}' viewBox='0 0 {WIDTH} {height}' width='100%' preserveAspectRatio='none' "
             f"style='height:{height}px'>"]
    # lane 0: dropped per frame, coloured by the main reason
    dropped = inst.decision != Reason.KEPT
    if flt.reason:
        dropped &= np.array([Reason(int(d)).key == flt.reason for d in inst.decision])
    parts.append(f"<g data-track='-1'><rect x='0' y='0' width='{WIDTH}' height='{LANE_H}' fill='transparent'/>"
                 f"<text x='3' y='{LANE_H - 3}' class='uv-tl-name'>dropped"
                 f"{' (' + html.escape(flt.reason) + ')' if flt.reason else ''}</text>")
    if dropped.any():
        per = np.zeros((len(Reason), n), np.int32)
        np.add.at(per, (inst.decision[dropped].astype(int), np.minimum(inst.frame[dropped], n - 1)), 1)
        total = per.sum(axis=0)
        peak = max(1, int(total.max()))
        for t in np.flatnonzero(total):
            main = Reason(int(per[:, t].argmax()))
            op = 0.25 + 0.75 * total[t] / peak
            parts.append(f"<rect x='{x(t):.2f}' y='1' width='{max(fw, 0.8):.2f}' height='{LANE_H - 2}' "
                         f"fill='{main.hex}' fill-opacity='{op:.2f}'><title>frame {t}: {int(total[t])} dropped, "
                         f"mostly {html.escape(main.words(text))}</title></rect>")
    parts.append("</g>")
    for k, (tid, length, name, frames, cur) in enumerate(shown, start=1):
        y = k * LANE_H
        r, g, b = colour_for(tid)
        sel = " uv-tl-selected" if tid == selected_track else ""
        parts.append(f"<g class='uv-lane{sel}' data-track='{tid}'>"
                     f"<rect x='0' y='{y}' width='{WIDTH}' height='{LANE_H}' class='uv-lane-bg'/>"
                     f"<text x='3' y='{y + LANE_H - 3}' class='uv-tl-name'>T{tid} {html.escape(name[:14])} "
                     f"({length})</text>")
        for a, z in _runs(frames):
            parts.append(f"<rect x='{x(a):.2f}' y='{y + 2}' width='{max(fw * (z - a + 1), 1.0):.2f}' "
                         f"height='{LANE_H - 4}' rx='2' fill='rgb({r},{g},{b})'><title>T{tid} {html.escape(name)}: "
                         f"frames {a}-{z}</title></rect>")
        for t in np.unique(cur):
            parts.append(f"<rect x='{x(int(t)):.2f}' y='{y}' width='{max(fw, 1.5):.2f}' height='{LANE_H}' "
                         "fill='#222'><title>curated by you</title></rect>")
        parts.append("</g>")
    parts.append(f"<line x1='{x(frame) + fw / 2:.2f}' x2='{x(frame) + fw / 2:.2f}' y1='0' y2='{height}' "
                 "class='uv-tl-cursor'/></svg>")
    more = f", {len(rows) - len(shown)} more not shown (filter by class or length)" if len(rows) > len(shown) else ""
    head = (f"<div class='uv-tl-head' id='timeline-summary'>{len(rows)} of {len(result.tracks)} tracks"
            f"{more} · click a lane to jump to that frame and select the track</div>")
    return f"<div class='uv-tl' id='timeline'>{head}{''.join(parts)}</div>"
