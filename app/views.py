"""What one session sees, computed from the controller: panels, counts, instance table.

These functions combine :class:`~app.state.AppController` (cached decisions, frames)
with :mod:`app.handlers` and :mod:`app.render`; they return plain values (numpy
images, strings, lists) so they are testable without Gradio. After a setting changes
only the current frame is rendered (the decisions come from the cache in memory).
"""
from __future__ import annotations

import hashlib
import html
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from app import canvas, handlers, render, timeline
from app.state import AppController, ViewState
from uvis.config import Config
from uvis.decide import VideoResult
from uvis.errors import BadInputError
from uvis.types import Reason

PANEL_WIDTH = 640
LARGE_WIDTH = 960
PANEL_TITLES = ("(a) proposals · objectness", "(b) label scores · label + score",
                "(c) decisions · reason + deciding similarity", "(d) pseudo-labels · track id")
LAYOUTS = {"2×2": ("grid", 0), "focus (a)": ("focus", 0), "focus (b)": ("focus", 1), "focus (c)": ("focus", 2),
           "focus (d)": ("focus", 3), "one canvas": ("canvas", 0)}
"""View-mode choices of the page -> (layout, focused panel)."""


@dataclass
class FrameView:
    """Everything the main view shows for one frame (``canvas`` and ``timeline`` are HTML)."""

    canvas: str
    counts: str
    table: list[list[Any]]
    card: str
    state: ViewState
    num_frames: int
    timeline: str = ""
    scale: float = 1.0
    result: VideoResult | None = field(default=None, repr=False)
    panels: list[np.ndarray] = field(default_factory=list, repr=False)
    """The drawn images (four panels, or the one canvas), without text."""


def _empty(state: ViewState, message: str) -> FrameView:
    ph = render.Panel(render.placeholder(PANEL_WIDTH, 480, message), [], "")
    html_ = canvas.grid_html([ph] * 4, PANEL_TITLES, {}, frame=0)
    return FrameView(html_, message.replace("\n", " "), [], "", state, 0)


def hover_details(result: VideoResult, rows: slice) -> dict[int, str]:
    """Per instance of the frame: label, top-5, objectness, reason, similarity, track (HTML)."""
    inst = result.instances
    text = render.has_text(result)
    score_name = "score" if text else "similarity to the closest example"
    out: dict[int, str] = {}
    for i, r in enumerate(range(rows.start, rows.stop)):
        reason = Reason(int(inst.decision[r]))  # type: ignore[index]
        tid = int(inst.track_id[r])  # type: ignore[index]
        sim = float(inst.similarity[r])  # type: ignore[index]
        out[i] = (f"<b>#{i} {html.escape(handlers.class_name(result, int(inst.label[r])))}</b> "  # type: ignore[index]
                  f"({score_name} {float(inst.clip_score[r]):.2f})<br>"  # type: ignore[index]
                  f"top-5: {html.escape(handlers.top5_text(result, r))}<br>"
                  f"objectness {float(inst.objectness[r]):.2f} · {html.escape(reason.words(text))}"
                  f"{'' if np.isnan(sim) else f' {sim:.2f}'}<br>"
                  f"{'track T' + str(tid) if tid >= 0 else 'not tracked'}{' · curated by you' if result.user[r] else ''}")
    return out


def _canvas_html(ctrl: AppController, state: ViewState, res: VideoResult, video: str, t: int, rows: slice,
                 selected: int | None) -> tuple[str, float, list[np.ndarray]]:
    details = hover_details(res, rows)
    stamp = hashlib.sha1(res.config.to_json().encode()).hexdigest()[:12]
    small = ctrl.prepared_frame(video, t, PANEL_WIDTH)
    large = max(LARGE_WIDTH, int(round(small.image.shape[1] / small.scale)))  # full resolution, at least 960 px
    if state.layout == "canvas":
        big = ctrl.prepared_frame(video, t, large)
        layers = render.FrameLayers(big, res, t)
        panel = render.canvas_panel(layers, selected, set(state.layers))
        return canvas.grid_html([panel], ["one canvas · " + (", ".join(state.layers) or "no layer")], details,
                                layout="canvas", selected=selected, frame=t, stamp=stamp), big.scale, [panel.image]
    panels = render.render_panels(small, res, t, selected)
    if state.layout == "focus":
        big = ctrl.prepared_frame(video, t, large)
        panels[state.focus] = render.render_panels(big, res, t, selected)[state.focus]
        return canvas.grid_html(panels, PANEL_TITLES, details, layout="focus", focus=state.focus, selected=selected,
                                frame=t, stamp=stamp), small.scale, [p.image for p in panels]
    return (canvas.grid_html(panels, PANEL_TITLES, details, selected=selected, frame=t, stamp=stamp), small.scale,
            [p.image for p in panels])


def frame_view(ctrl: AppController, state: ViewState, config: Config) -> FrameView:
    """Render the current frame of ``state.video`` under ``config``.

    The frame index is clamped to the cached frames; the selection is validated (and
    follows ``state.track`` when the frame changed). Returns placeholders with a message
    while there is no labelled video.
    """
    names = ctrl.video_names()
    if not names:
        active = ctrl.jobs.active() if ctrl.jobs else []
        msg = "no labelled video yet\nadd one in the Jobs tab"
        if active:
            j = active[0]
            msg = f"labelling {j.name}…\n{j.done}/{j.total or '?'} frames"
        return _empty(replace(state, generation=ctrl.generation), msg)
    video = state.video if state.video in names else names[0]
    try:
        res = ctrl.result(video, config)
    except BadInputError as exc:
        return _empty(replace(state, video=video, generation=ctrl.generation), str(exc))
    n = ctrl.num_frames(video)
    if n == 0:
        return _empty(replace(state, video=video, generation=ctrl.generation), f"{video}: no cached frame yet")
    if state.video != video or state.frame < 0:  # a video opened: start on its most telling frame
        state = replace(state, frame=interesting_frame(res), selected=None, track=None)
    t = int(min(max(0, state.frame), n - 1))
    rows = ctrl.frame_rows(video, t)
    selected = state.selected
    if selected is not None and not 0 <= selected < rows.stop - rows.start:
        selected = None
    html_, scale, images = _canvas_html(ctrl, state, res, video, t, rows, selected)
    state = replace(state, video=video, frame=t, selected=selected, generation=ctrl.generation, scale=scale,
                    shown_config=config.to_json())
    card = ""
    if selected is not None:
        card = handlers.instance_card(res, rows.start + selected, selected, t)
    elif rows.stop > rows.start:
        card = ("<div class='uv-card uv-hint' id='instance-card-empty'>Click an instance in any panel, in the "
                "timeline or in the table to select it (keys: ←/→ frames, A accept, X reject, R relabel, "
                "? all keys).</div>")
    flt = state.timeline if isinstance(state.timeline, timeline.TimelineFilter) else timeline.TimelineFilter()
    tl = timeline.timeline_html(res, n, t, state.track, flt)
    return FrameView(html_, handlers.counts_markdown(res, rows, t, ctrl.video_status(video)),
                     handlers.frame_table(res, rows), card, state, n, tl, scale, res, images)


def interesting_frame(result: VideoResult) -> int:
    """The frame with the most kept instances (else the most proposals); 0 if none."""
    inst = result.instances
    assert inst.frame is not None and inst.decision is not None
    if not len(inst):
        return 0
    n = int(inst.frame.max()) + 1
    kept = np.bincount(inst.frame[inst.decision == 0], minlength=n)
    if kept.max() > 0:
        return int(kept.argmax())
    return int(np.bincount(inst.frame, minlength=n).argmax())


def move_to_frame(ctrl: AppController, state: ViewState, config: Config, t: int) -> FrameView:
    """Go to frame ``t``; a selected instance's track stays selected if it is in the new frame."""
    new = replace(state, frame=int(t), selected=None)
    if state.video and state.track is not None and state.track >= 0:
        try:
            res = ctrl.result(state.video, config)
            n = ctrl.num_frames(state.video)
            rows = ctrl.frame_rows(state.video, int(min(max(0, t), n - 1)))
            new = replace(new, selected=handlers.follow_track(res, rows, state.track))
        except BadInputError:
            pass
    return frame_view(ctrl, new, config)


def select(ctrl: AppController, state: ViewState, config: Config, index: int | None) -> FrameView:
    """Select instance ``index`` of the current frame (None clears the selection)."""
    track = None
    if index is not None and state.video:
        res = ctrl.result(state.video, config)
        rows = ctrl.frame_rows(state.video, state.frame)
        if 0 <= index < rows.stop - rows.start:
            tid = int(res.instances.track_id[rows.start + index])  # type: ignore[index]
            track = tid if tid >= 0 else None
        else:
            index = None
    return frame_view(ctrl, replace(state, selected=index, track=track), config)


def pick(ctrl: AppController, state: ViewState, config: Config, x: float, y: float,
         kept_only: bool = False) -> FrameView:
    """Select the instance under a click at panel pixel (x, y) (``state.scale`` maps to frame pixels)."""
    if not state.video:
        return frame_view(ctrl, state, config)
    res = ctrl.result(state.video, config)
    rows = ctrl.frame_rows(state.video, state.frame)
    s = state.scale if state.scale > 0 else 1.0
    index = handlers.instance_at(res, rows, x / s, y / s, kept_only=kept_only)
    return select(ctrl, state, config, index)


def selected_ref(state: ViewState) -> tuple[str, int, int]:
    """(video, frame, index) of the selection.

    Raises:
        BadInputError: nothing selected.
    """
    if not state.video or state.selected is None:
        raise BadInputError("select an instance first (click it in a panel or in the table)")
    return state.video, state.frame, state.selected


def similar_to_selection(ctrl: AppController, state: ViewState, config: Config, k: int = 10
                         ) -> list[tuple[int, int, int, float]]:
    """Instances most similar to the selected one (label-by-example proposals)."""
    video, t, i = selected_ref(state)
    res = ctrl.result(video, config)
    row = ctrl.frame_rows(video, t).start + i
    return handlers.similar_instances(res, row, k)
