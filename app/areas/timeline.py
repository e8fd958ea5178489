"""Timeline: the per-track swimlane (see :mod:`app.timeline`) and its filters (class,
drop reason, curated only, minimum length). A click on a lane jumps to that frame and
selects the track (the page command ``jump``, handled by the viewer)."""
from __future__ import annotations

import functools
from dataclasses import replace
from typing import Any

import gradio as gr

from app import views
from app.shell import Context, config_of, on, view_values
from app.state import AppController, ViewState
from app.timeline import TimelineFilter
from uvis.types import Reason


def build(ctx: Context) -> None:
    ctx.add("timeline", gr.HTML("", elem_id="timeline-box", container=False, padding=False))
    with gr.Row(equal_height=True, elem_id="timeline-filters"):
        ctx.add("tl_class", gr.Dropdown(["(all classes)", *ctx.options["init_cfg"].labeler.vocabulary],
                                        value="(all classes)", label="class", elem_id="tl-class", scale=2,
                                        allow_custom_value=True))
        ctx.add("tl_reason", gr.Dropdown(["(all reasons)", *[r.key for r in Reason if r != Reason.KEPT]],
                                         value="(all reasons)", label="dropped lane: reason", elem_id="tl-reason",
                                         scale=2))
        ctx.add("tl_curated", gr.Checkbox(False, label="curated tracks only", elem_id="tl-curated", scale=1))
        ctx.add("tl_min", gr.Slider(1, 50, value=1, step=1, label="minimum length (frames)", elem_id="tl-min",
                                    scale=2))


def on_filter(ctrl: AppController, st: ViewState, cls: str, reason: str, curated: bool, min_len: float,
              *vals: Any) -> Any:
    flt = TimelineFilter(cls=None if not cls or cls.startswith("(") else cls,
                         curated_only=bool(curated), min_length=int(min_len or 1),
                         reason=None if not reason or reason.startswith("(") else reason)
    return view_values(views.frame_view(ctrl, replace(st, timeline=flt), config_of(ctrl, vals)))


def wire(ctx: Context) -> None:
    fn = functools.partial(on_filter, ctx.ctrl)
    inputs = ["state", "tl_class", "tl_reason", "tl_curated", "tl_min", *ctx.settings]
    for name in ("tl_class", "tl_reason", "tl_curated", "tl_min"):
        on(ctx, ctx[name].change, fn, inputs, ctx.view, trigger_mode="always_last")
