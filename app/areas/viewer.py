"""Viewer: video and frame controls, the canvas (2×2, focus or one canvas with layer
toggles), counts and legend; page commands (clicks on the canvas and the timeline,
keys 1-9, Esc) and the first render of a session."""
from __future__ import annotations

import functools
from dataclasses import replace
from typing import Any

import gradio as gr

from app import render, text, views
from app.shell import VIEW_OUT, Context, config_of, on, parse_command, session_start, view_values
from app.state import AppController, ViewState
from uvis.errors import BadInputError


def build_toolbar(ctx: Context) -> None:
    ctrl = ctx.ctrl
    names = ctrl.video_names()
    with gr.Row(equal_height=True, elem_id="toolbar"):
        ctx.add("video", gr.Dropdown(choices=video_choices(ctrl), value=names[0] if names else None,
                                     show_label=False, container=False, elem_id="video-select", scale=2,
                                     min_width=150))
        ctx.add("frame", gr.Slider(0, max(1, ctrl.num_frames(names[0]) - 1 if names else 1), value=0, step=1,
                                   label="frame", show_label=False, container=False, elem_id="frame-slider",
                                   scale=6))
        ctx.add("prev", gr.Button("◀", size="sm", elem_id="prev-frame", scale=0, min_width=40))
        ctx.add("play", gr.Button("▶ play", size="sm", elem_id="play", scale=0, min_width=70))
        ctx.add("next", gr.Button("▶", size="sm", elem_id="next-frame", scale=0, min_width=40))
        ctx.add("layout", gr.Dropdown(list(views.LAYOUTS), value="2×2", show_label=False, container=False,
                                      elem_id="view-mode", scale=1, min_width=110))
        ctx.add("keys_btn", gr.Button("? keys", size="sm", elem_id="keys-button", scale=0, min_width=60))


def build_canvas(ctx: Context) -> None:
    ctx.add("canvas", gr.HTML("", elem_id="canvas", container=False, padding=False))
    ctx.add("layers", gr.CheckboxGroup(list(render.LAYERS), value=list(render.LAYERS), label="layers (one canvas)",
                                       elem_id="layers", visible=False))
    ctx.add("counts", gr.Markdown("", elem_id="counts"))
    gr.HTML(text.legend_html(ctx.options["has_text"]), elem_id="legend", container=False, padding=False)


def build_commands(ctx: Context) -> None:
    """The hidden command channel the page script writes to (see :data:`app.text.PAGE_JS`)."""
    ctx.add("cmd", gr.Textbox("", elem_id="cmd-box", elem_classes="uv-hidden", show_label=False, container=False))
    ctx.add("cmd_run", gr.Button("run", elem_id="cmd-run", elem_classes="uv-hidden"))
    gr.HTML(text.keys_html(), container=False, padding=False)


def video_choices(ctrl: AppController) -> list[tuple[str, str]]:
    """Video dropdown entries: the name, with a badge when its labelling is not complete."""
    out = []
    for rec in ctrl.videos():
        badge = "" if rec.status == "done" else f" · {rec.status}"
        out.append((f"{rec.name}{badge}", rec.name))
    return out


# ----------------------------------------------------------------------------- callbacks
def on_frame(ctrl: AppController, st: ViewState, t: float, *vals: Any) -> Any:
    fv = views.move_to_frame(ctrl, st, config_of(ctrl, vals), int(t))
    ctrl.remember_view(fv.state.video or "", fv.state.frame)
    return view_values(fv)


def on_step(ctrl: AppController, delta: int, st: ViewState, *vals: Any) -> Any:
    n = ctrl.num_frames(st.video) if st.video else 0
    return on_frame(ctrl, st, (st.frame + delta) % n if n else 0, *vals)


def on_play(label: str) -> Any:
    playing = label.startswith("▶")
    return gr.Timer(active=playing), gr.Button("⏸ pause" if playing else "▶ play")


def on_video(ctrl: AppController, st: ViewState, name: str, *vals: Any) -> Any:
    fv = views.frame_view(ctrl, replace(ViewState(video=name, frame=-1, generation=st.generation), layout=st.layout,
                                        focus=st.focus, layers=st.layers, timeline=st.timeline, recent=st.recent),
                          config_of(ctrl, vals))
    ctrl.remember_view(fv.state.video or "", fv.state.frame)
    from app.areas.curation import history_html

    return (*view_values(fv), history_html(ctrl, fv.state.video))


def on_layout(ctrl: AppController, st: ViewState, mode: str, layers: list[str], *vals: Any) -> Any:
    layout, focus = views.LAYOUTS.get(mode, ("grid", 0))
    fv = views.frame_view(ctrl, replace(st, layout=layout, focus=focus, layers=tuple(layers or ())),
                          config_of(ctrl, vals))
    return (*view_values(fv), gr.CheckboxGroup(visible=layout == "canvas"))


def on_command(ctrl: AppController, text_: str, st: ViewState, *vals: Any) -> Any:
    """Page commands: ``pick`` (index), ``jump`` (frame, track), ``goto`` (video, frame,
    index), ``clear``; other areas' commands are left to them."""
    cmd = parse_command(text_)
    cfg = config_of(ctrl, vals)
    op = cmd["op"]
    if op == "pick":
        return view_values(views.select(ctrl, st, cfg, int(cmd["index"])))
    if op == "clear":
        return view_values(views.select(ctrl, st, cfg, None))
    if op == "cycle":
        if not st.video:
            raise BadInputError("no video")
        rows = ctrl.frame_rows(st.video, st.frame)
        n = rows.stop - rows.start
        if not n:
            raise BadInputError(f"frame {st.frame} has no instance")
        step = int(cmd.get("step", 1))
        index = (step if step < 0 else 0) % n if st.selected is None else (st.selected + step) % n
        return view_values(views.select(ctrl, st, cfg, index))
    if op == "jump":
        track = int(cmd.get("track", -1))
        frame = int(cmd.get("frame", -1))
        if not st.video:
            raise BadInputError("no video")
        res = ctrl.result(st.video, cfg)
        if frame < 0 and track >= 0:  # a click on the lane's name: the track's first frame
            frame = next((tr.first_frame for tr in res.tracks if tr.track_id == track), st.frame)
        frame = max(0, frame)
        rows = ctrl.frame_rows(st.video, min(frame, ctrl.num_frames(st.video) - 1))
        from app.handlers import follow_track

        index = follow_track(res, rows, track) if track >= 0 else None
        if track >= 0 and index is None:  # between two pieces of the track: its nearest frame
            frames = res.instances.frame[res.instances.track_id == track]  # type: ignore[index]
            if len(frames):
                frame = int(frames[abs(frames - frame).argmin()])
                rows = ctrl.frame_rows(st.video, frame)
                index = follow_track(res, rows, track)
        fv = views.frame_view(ctrl, replace(st, frame=frame, selected=index,
                                            track=track if track >= 0 else None), cfg)
        ctrl.remember_view(st.video, fv.state.frame)
        return view_values(fv)
    if op == "goto":
        video = str(cmd.get("video") or st.video)
        new = st if video == st.video else replace(st, video=video)
        fv = views.frame_view(ctrl, replace(new, frame=int(cmd["frame"]), selected=None), cfg)
        fv = views.select(ctrl, fv.state, cfg, int(cmd["index"]))
        return view_values(fv)
    return (*[gr.skip()] * len(VIEW_OUT), None)  # another area's command (curation, history)


def on_load(ctrl: AppController, st: ViewState) -> Any:
    """A new session: the workspace's latest saved settings, remembered video and frame."""
    from app.handlers import DecisionSettings

    cfg = ctrl.initial_config()
    values = DecisionSettings.from_config(cfg).values()
    fv = views.frame_view(ctrl, session_start(ctrl, st), cfg)
    return (gr.Dropdown(choices=video_choices(ctrl), value=fv.state.video), *values,
            gr.Dropdown(choices=list(cfg.labeler.vocabulary)), *view_values(fv))


# ----------------------------------------------------------------------------- wiring
def wire(ctx: Context, play_interval: float) -> None:
    ctrl = ctx.ctrl
    S = ctx.settings
    play_timer = ctx.add("play_timer", gr.Timer(play_interval, active=False))
    on(ctx, ctx["frame"].release, functools.partial(on_frame, ctrl), ["state", "frame", *S], ctx.view,
       trigger_mode="always_last")
    on(ctx, ctx["frame"].input, functools.partial(on_frame, ctrl), ["state", "frame", *S], ctx.view,
       trigger_mode="always_last")
    on(ctx, ctx["prev"].click, functools.partial(on_step, ctrl, -1), ["state", *S], ctx.view)
    on(ctx, ctx["next"].click, functools.partial(on_step, ctrl, 1), ["state", *S], ctx.view)
    on(ctx, play_timer.tick, functools.partial(on_step, ctrl, 1), ["state", *S], ctx.view, touch_notice=False)
    on(ctx, ctx["play"].click, on_play, ["play"], [play_timer, "play"])
    on(ctx, ctx["video"].input, functools.partial(on_video, ctrl), ["state", "video", *S], [*ctx.view, "history"])
    for comp in ("layout", "layers"):
        on(ctx, ctx[comp].input, functools.partial(on_layout, ctrl), ["state", "layout", "layers", *S],
           [*ctx.view, "layers"])
    on(ctx, ctx["cmd_run"].click, functools.partial(on_command, ctrl), ["cmd", "state", *S], ctx.view)
    ctx["keys_btn"].click(None, None, None,
                          js="() => { const o = document.getElementById('keys-overlay'); o.hidden = !o.hidden; }")


def wire_load(ctx: Context, demo: Any) -> Any:
    return on(ctx, demo.load, functools.partial(on_load, ctx.ctrl), ["state"],
              ["video", *ctx.settings, "relabel", *ctx.view])


__all__ = ["build_toolbar", "build_canvas", "build_commands", "wire", "wire_load", "video_choices"]
