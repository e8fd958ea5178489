"""Jobs: add videos (upload or a path inside the workspace), the job list with badges and
full messages, cancel / resume / retry, and the one-second refresh of progress and of
the view after a job added frames."""
from __future__ import annotations

import functools
import html
from pathlib import Path
from typing import Any

import gradio as gr

from app import handlers, views
from app.areas.viewer import video_choices
from app.shell import VIEW_OUT, Context, config_of, message_of, on, view_values
from app.state import AppController, ViewState
from uvis.config import ASSETS_DIR
from uvis.errors import BadInputError


def build(ctx: Context) -> None:
    ctx.add("upload", gr.File(label="upload a video (mp4, avi, webm, mkv, mov)",
                              file_types=list(handlers.VIDEO_EXTENSIONS), elem_id="upload"))
    with gr.Row(equal_height=True):
        ctx.add("path", gr.Textbox(label="…or a path inside the workspace (Enter adds it)", scale=3,
                                   elem_id="video-path", max_lines=1))
        ctx.add("add_path", gr.Button("add", size="sm", scale=1, elem_id="add-path"))
    ctx.add("jobs_list", gr.HTML("", elem_id="jobs-list"))
    with gr.Row(equal_height=True):
        ctx.add("job_id", gr.Number(label="job id (empty: the running job)", precision=0, scale=1,
                                    elem_id="job-id"))
        ctx.add("cancel", gr.Button("cancel", size="sm", scale=1, elem_id="cancel-job"))
        ctx.add("retry", gr.Button("resume / retry", size="sm", scale=1, elem_id="retry-job"))
    ctx.add("jobs_sig", gr.State(""))


def jobs_html(ctrl: AppController) -> str:
    """Videos with their status badge, then jobs (newest first) with their full message."""
    vids = "".join(f"<li>{html.escape(r.name)} <span class='uv-badge uv-badge-{r.status}'>{r.status}</span> "
                   f"{r.num_frames or 0} frames</li>" for r in ctrl.videos())
    jobs = ctrl.jobs.jobs() if ctrl.jobs is not None else []
    rows = "".join(
        f"<li id='job-{j.id}'>job {j.id}: <b>{html.escape(j.name)}</b> <span class='uv-badge uv-badge-{j.state}'>"
        f"{j.state}</span> {j.done}/{j.total or '?'} frames<div class='uv-hint' style='white-space:pre-wrap'>"
        f"{html.escape(j.message)}</div></li>" for j in jobs)
    return (f"<div><b>videos</b><ul>{vids or '<li><i>none yet</i></li>'}</ul><b>jobs</b>"
            f"<ul>{rows or '<li><i>none</i></li>'}</ul></div>")


def job_status(ctrl: AppController) -> str:
    if ctrl.jobs is None:
        return ""
    active = ctrl.jobs.active()
    if not active:
        return ""
    j = active[0]
    bar = "▓" * int(20 * j.fraction) + "░" * (20 - int(20 * j.fraction))
    more = f" (+{len(active) - 1} queued)" if len(active) > 1 else ""
    return (f"**labelling {j.name}**: {bar} {j.done}/{j.total or '?'} frames {j.message}{more} — job {j.id} "
            "(Jobs tab: cancel)")


def _submit(ctrl: AppController, path: Path, name: str) -> str:
    from uvis.video import open_video

    with open_video(path, max_frames=1):  # quick probe: decodable at all?
        pass
    job = ctrl.add_video(path, name)
    return f"queued job {job.id}: {name} ({path.name})"


def on_upload(ctrl: AppController, max_bytes: int, file: Any) -> Any:
    if file is None:
        return gr.skip(), None
    src = Path(file if isinstance(file, str) else getattr(file, "name", str(file)))
    try:
        handlers.check_upload(src, max_bytes)
        from uvis.video import open_video

        with open_video(src, max_frames=1):
            pass
        stored = handlers.store_upload(src, ctrl.ws.uploads_dir)
        name, note = ctrl.ws.claim_video_name(stored)  # never another video's name and cache
        return jobs_html(ctrl), _submit(ctrl, stored, name) + (f" — {note}" if note else "")
    except Exception as exc:  # noqa: BLE001 - never show server paths of an upload
        raise BadInputError(message_of(exc).replace(str(src), src.name)) from exc


def on_add_path(ctrl: AppController, text_: str) -> Any:
    p = handlers.resolve_inside(text_, [ctrl.ws.root, ASSETS_DIR / "examples"])
    name, note = ctrl.ws.claim_video_name(p)  # a clashing name gets its own: clip_2
    return jobs_html(ctrl), _submit(ctrl, p, name) + (f" — {note}" if note else "")


def _job(ctrl: AppController, jid: float | None, want_active: bool) -> Any:
    if ctrl.jobs is None:
        raise BadInputError("background jobs are disabled in this process")
    if not jid:
        pool = ctrl.jobs.active() if want_active else [j for j in ctrl.jobs.jobs() if j.finished and j.state != "done"]
        if not pool:
            raise BadInputError("no job is running" if want_active else "no failed or cancelled job to retry")
        return pool[0]
    job = ctrl.jobs.get(int(jid))
    if job is None:
        raise BadInputError(f"there is no job {int(jid)}")
    return job


def on_cancel(ctrl: AppController, jid: float | None) -> Any:
    job = _job(ctrl, jid, True)
    ok = ctrl.jobs.cancel(job.id)  # type: ignore[union-attr]
    return jobs_html(ctrl), (f"cancelling job {job.id}…" if ok else f"job {job.id} is not running")


def on_retry(ctrl: AppController, jid: float | None) -> Any:
    """Resume a cancelled job or retry a failed one: labelling continues at the first frame
    not cached yet."""
    job = _job(ctrl, jid, False)
    if not job.finished:
        raise BadInputError(f"job {job.id} is still {job.state}")
    new = ctrl.add_video(job.path, job.name)
    return jobs_html(ctrl), f"job {new.id} resumes {job.name} at its first missing frame"


def on_tick(ctrl: AppController, st: ViewState, sig: str, *vals: Any) -> Any:
    """Every second: job progress (only when it changed) and, after a job added or
    extended a video, a fresh view and video list."""
    status, listing = job_status(ctrl), jobs_html(ctrl)
    new_sig = repr((status, listing))
    job_out = (gr.skip(), gr.skip(), gr.skip()) if new_sig == sig else (status, listing, new_sig)
    ctrl.refresh_running()
    skip_view = (gr.skip(), *[gr.skip()] * len(VIEW_OUT))
    if st.generation < 0 or st.generation == ctrl.generation:  # (< 0: the page load renders)
        return (*job_out, *skip_view)
    fv = views.frame_view(ctrl, st, config_of(ctrl, vals))
    return (*job_out, gr.Dropdown(choices=video_choices(ctrl), value=fv.state.video), *view_values(fv))


def wire(ctx: Context) -> None:
    ctrl = ctx.ctrl
    on(ctx, ctx["upload"].upload, functools.partial(on_upload, ctrl, ctx.options["max_upload_bytes"]), ["upload"],
       ["jobs_list"])
    for ev in (ctx["add_path"].click, ctx["path"].submit):
        on(ctx, ev, functools.partial(on_add_path, ctrl), ["path"], ["jobs_list"])
    on(ctx, ctx["cancel"].click, functools.partial(on_cancel, ctrl), ["job_id"], ["jobs_list"])
    on(ctx, ctx["retry"].click, functools.partial(on_retry, ctrl), ["job_id"], ["jobs_list"])
    timer = ctx.add("timer", gr.Timer(1.0))
    on(ctx, timer.tick, functools.partial(on_tick, ctrl), ["state", "jobs_sig", *ctx.settings],
       ["job_line", "jobs_list", "jobs_sig", "video", *ctx.view], touch_notice=False)
