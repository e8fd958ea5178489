"""Statistics: per-class counts by decision, score histograms, track lengths. Drawn when
its tab opens, and after each change while it is open (a closed tab costs nothing)."""
from __future__ import annotations

import functools
from typing import Any

import gradio as gr

from app.shell import Context, config_of, on
from app.state import AppController, ViewState


def build(ctx: Context) -> None:
    ctx.add("stats", gr.Plot(show_label=False, elem_id="stats-plot"))
    ctx.add("stats_open", gr.State(False))


def on_stats(ctrl: AppController, st: ViewState, is_open: bool, *vals: Any) -> Any:
    if not st.video or not is_open:
        return gr.skip()
    from app.plots import stats_figure

    return stats_figure(ctrl.result(st.video, config_of(ctrl, vals)))


def wire_tab(ctx: Context, tab: Any, tabs: list[Any]) -> None:
    """Opening the statistics tab draws it; opening another tab stops the refreshes."""
    fn = functools.partial(on_stats, ctx.ctrl)
    ev = tab.select(lambda: True, None, ctx["stats_open"])
    on(ctx, ev.then, fn, ["state", "stats_open", *ctx.settings], ["stats"], touch_notice=False)
    for other in tabs:
        if other is not tab:
            other.select(lambda: False, None, ctx["stats_open"])


def after(ctx: Context) -> Any:
    """``after(event)``: refresh the statistics (if open) once ``event`` finished."""
    fn = functools.partial(on_stats, ctx.ctrl)

    def chain(event: Any) -> Any:
        return on(ctx, event.then, fn, ["state", "stats_open", *ctx.settings], ["stats"], touch_notice=False)
    return chain
