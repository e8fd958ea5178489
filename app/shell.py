"""The thin shell's plumbing: the shared :class:`Context` of the area builders and the one
error wrapper every callback runs under.

Every event is wired with :func:`on`: the callback returns a value per output (and may
add a message as one extra value); the wrapper appends the page's one notice area
(``#notice``) to the outputs. When the callback raises, every output is left as it is
(``gr.skip()``) and the notice shows the reason — no toast, no red error badge, no
output-count mismatch, and nothing else on the page is disturbed.
"""
from __future__ import annotations

import functools
import html
import json
import traceback
import typing
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import gradio as gr

from app import handlers, views
from app.handlers import DecisionSettings
from app.state import AppController, ViewState
from uvis.config import Config
from uvis.errors import MissingDependencyError, UvisError

VIEW_OUT: tuple[str, ...] = ("canvas", "counts", "table", "card", "state", "frame", "timeline")
"""Components every view update writes, in the order :func:`view_values` returns them."""


def message_of(exc: BaseException) -> str:
    """What a person reads for an exception (no traceback; internal errors say so)."""
    if isinstance(exc, (UvisError, MissingDependencyError)):
        return str(exc)
    if isinstance(exc, ModuleNotFoundError):
        return f"this feature needs a module that is not installed here: {exc.name}"
    return f"internal error: {exc!r} (details in the server log)"


def notice_html(text: str, warning: bool = False) -> str:
    """The notice area's HTML: a warning box or a plain info line ('' clears it)."""
    if not text:
        return ""
    cls, icon = ("uv-warn", "⚠️ ") if warning else ("uv-info", "")
    return f"<div class='{cls}' id='notice-text'>{icon}{html.escape(text)}</div>"


@dataclass
class Context:
    """What the area builders share: the controller, every named component, and the
    ordered decision-setting widgets (:class:`~app.handlers.DecisionSettings` order)."""

    ctrl: AppController
    c: dict[str, Any] = field(default_factory=dict)
    settings: list[Any] = field(default_factory=list)
    options: dict[str, Any] = field(default_factory=dict)

    def __getitem__(self, name: str) -> Any:
        return self.c[name]

    def add(self, name: str, component: Any) -> Any:
        self.c[name] = component
        return component

    def outs(self, names: Sequence[Any]) -> list[Any]:
        return [self.c[n] if isinstance(n, str) else n for n in names]

    @property
    def view(self) -> list[Any]:
        return self.outs(VIEW_OUT)


def on(ctx: Context, trigger: Callable[..., Any], fn: Callable[..., Any], inputs: Sequence[Any],
       outputs: Sequence[Any], *, touch_notice: bool = True, **kwargs: Any) -> Any:
    """Wire ``fn`` to ``trigger`` (e.g. ``button.click``) under the one error wrapper.

    Args:
        fn: returns one value per output, optionally followed by a notice message (str).
        inputs/outputs: components or names registered in ``ctx``.
        touch_notice: False for background refreshes (a tick never clears a warning).
    """
    outs = ctx.outs(outputs)
    n = len(outs)
    notice = ctx.c["notice"]

    @functools.wraps(fn)
    def run(*args: Any, **kw: Any) -> Any:
        try:
            values = fn(*args, **kw)
            if n == 1 and not isinstance(values, tuple):
                values = (values,)
            values = tuple(values)
            if len(values) == n + 1:
                msg = values[-1]
                values = values[:-1]
                note = gr.skip() if msg is None else notice_html(str(msg))
            elif len(values) == n:
                note = notice_html("") if touch_notice else gr.skip()
            else:
                raise RuntimeError(f"{getattr(fn, '__name__', fn)} returned {len(values)} values for {n} outputs")
        except Exception as exc:  # noqa: BLE001 - the page keeps working; the notice says why
            if not isinstance(exc, (UvisError, MissingDependencyError, ModuleNotFoundError)):
                traceback.print_exc()
            return (*[gr.skip()] * n, notice_html(message_of(exc), warning=True))
        return (*values, note)

    run.__name__ = getattr(base := fn.func if isinstance(fn, functools.partial) else fn, "__name__", "callback")
    # Gradio finds event-data parameters (gr.SelectData, gr.KeyUpData) by their resolved type hints
    try:
        run.__annotations__ = typing.get_type_hints(base)
    except (NameError, TypeError):
        run.__annotations__ = {}
    return trigger(run, ctx.outs(inputs), [*outs, notice], **kwargs)


def config_of(ctrl: AppController, values: Sequence[Any]) -> Config:
    """The decision config of the settings widgets' values (validated)."""
    return handlers.build_config(ctrl.run_config, DecisionSettings(*values))


def view_values(fv: views.FrameView) -> tuple[Any, ...]:
    """The values of :data:`VIEW_OUT` for a frame view."""
    slider = gr.Slider(maximum=max(1, fv.num_frames - 1), value=fv.state.frame)
    return (fv.canvas, fv.counts, fv.table, fv.card, fv.state, slider, fv.timeline)


def parse_command(text: str) -> dict[str, Any]:
    """A page command (JSON written by the page script into the hidden command box)."""
    try:
        cmd = json.loads(text or "{}")
    except ValueError as exc:
        raise UvisError(f"unreadable page command {text[:80]!r}") from exc
    if not isinstance(cmd, dict) or "op" not in cmd:
        raise UvisError("page command without an 'op'")
    return cmd


def session_start(ctrl: AppController, st: ViewState) -> ViewState:
    """A new session opens the workspace's remembered video and frame."""
    video, frame = ctrl.remembered_view()
    if video and video in ctrl.video_names() and st.video is None:
        return ViewState(video=video, frame=frame, generation=st.generation)
    return st
