"""What one session sees, computed from the controller: panels, counts, instance table.

These functions combine :class:`~app.state.AppController` (cached decisions, frames)
with :mod:`app.handlers` and :mod:`app.render`; they return plain values (numpy
images, strings, lists) so they are testable without Gradio. After a setting changes
only the current frame is rendered (the decisions come from the cache in memory).
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from app import handlers, render
from app.state import AppController, ViewState
from uvis.config import Config
from uvis.decide import VideoResult
from uvis.errors import BadInputError

PANEL_WIDTH = 640
PANEL_TITLES = ("(a) proposals · objectness", "(b) label scores · top-5 + closest prompt",
                "(c) decisions · reason + deciding similarity", "(d) pseudo-labels · track id")


@dataclass
class FrameView:
    """Everything the main view shows for one frame."""

    panels: list[np.ndarray]
    counts: str
    table: list[list[Any]]
    card: str
    state: ViewState
    num_frames: int
    scale: float = 1.0
    result: VideoResult | None = field(default=None, repr=False)


def _empty(state: ViewState, message: str) -> FrameView:
    ph = render.placeholder(PANEL_WIDTH, 480, message)
    return FrameView([ph] * 4, message.replace("\n", " "), [], "", state, 0)


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
    prepared = ctrl.prepared_frame(video, t, PANEL_WIDTH)
    panels = render.render_panels(prepared, res, t, selected)
    scale = prepared.scale
    state = replace(state, video=video, frame=t, selected=selected, generation=ctrl.generation, scale=scale)
    card = ""
    if selected is not None:
        card = handlers.instance_card(res, rows.start + selected, selected, t)
    elif rows.stop > rows.start:
        card = "<div class='uv-card uv-hint'>Click an instance in any panel or in the table to select it.</div>"
    return FrameView(panels, handlers.counts_markdown(res, rows, t), handlers.frame_table(res, rows), card,
                     state, n, scale, res)


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
