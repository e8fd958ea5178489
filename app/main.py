"""The Gradio Blocks of UVIS Studio: the page layout from per-area builders, and launch.

Each area (``app/areas/``: viewer, curation, timeline, review, mask fixes, settings,
statistics, jobs, export, evaluate) builds its components into a shared :class:`~app.shell.Context`
and wires its events through the one error wrapper :func:`app.shell.on`. Callbacks are
module-level functions over the process-wide :class:`~app.state.AppController` (decisions
memoised, from the cache in memory); models never run in a callback — labelling is a
background job (``app.jobs``).

Layout at 1280×720: a one-line header, the notice area, the toolbar (video, frame,
step/play, view mode); the canvas on the left (2×2 panels, a focus panel or one canvas)
with counts, legend, the track timeline and the instance table below it; on the right
the selected instance's card and the curation controls, then the tabs.
"""
from __future__ import annotations

from typing import Any, Callable

import gradio as gr

from app import handlers, text, train_tab
from app.areas import curation, evaluate, export, jobs, masks, review, settings, stats, timeline, viewer
from app.backends import banner_markdown
from app.shell import Context
from app.state import AppController, ViewState
from uvis.config import ASSETS_DIR

TabBuilder = Callable[[Context], None]


def tab_builders() -> list[tuple[str, str, TabBuilder, Callable[[Context], None] | None]]:
    """The right-hand tabs: (title, id, build, wire). A new area plugs in here (e.g. the
    Train tab: ``("Train", "train", train_tab.build, train_tab.wire)``)."""
    return [
        ("Settings", "settings", settings.build, None),
        ("Review", "review", review.build, review.wire),
        ("Fix masks", "masks", masks.build, masks.wire),
        ("History", "history", curation.build_history, None),
        ("Statistics", "stats", stats.build, None),
        ("Jobs", "jobs", jobs.build, jobs.wire),
        ("Export", "export", export.build, export.wire),
        ("Evaluate", "evaluate", evaluate.build, evaluate.wire),
        ("Train", "train", train_tab.build, train_tab.wire),
    ]


def _has_text(ctrl: AppController) -> bool:
    return ctrl.run_config.embedder.backend == "clip"


def build_app(ctrl: AppController, *, fiftyone_port: int = 5151, max_upload_bytes: int = 512 * 2**20,
              play_interval: float = 0.25) -> Any:
    """The Blocks of the app (call ``.launch`` via :func:`launch`)."""
    has_text = _has_text(ctrl)
    init_cfg = ctrl.initial_config()
    ctx = Context(ctrl, options={"init_cfg": init_cfg, "has_text": has_text, "tips": text.tooltips(has_text),
                                 "fiftyone_port": fiftyone_port, "max_upload_bytes": max_upload_bytes})
    tabs = tab_builders()
    # rendered files land in Gradio's cache (inside the workspace): drop files older than an hour
    with gr.Blocks(title="UVIS Studio", delete_cache=(900, 3600), fill_width=True) as demo:
        ctx.add("state", gr.State(ViewState()))
        with gr.Row(equal_height=True, elem_id="header"):
            with gr.Column(scale=0, min_width=110):
                gr.Markdown("**UVIS Studio**", elem_id="title", container=False)
            with gr.Column(scale=3, min_width=300):
                gr.Markdown(banner_markdown(ctrl.backends), elem_classes="uv-banner", elem_id="backend-banner",
                            container=False)
            with gr.Column(scale=3, min_width=260, elem_id="status-col"):
                ctx.add("job_line", gr.Markdown("", elem_id="job-status", container=False))
                ctx.add("notice", gr.HTML("", elem_id="notice", container=False, padding=False))
        viewer.build_toolbar(ctx)
        with gr.Row(equal_height=False, elem_id="main-row"):
            with gr.Column(scale=7, min_width=560, elem_id="left-col"):
                viewer.build_canvas(ctx)
                timeline.build(ctx)
                ctx.add("table", gr.Dataframe(headers=handlers.TABLE_HEADERS, interactive=False,
                                              elem_id="instance-table", max_height=300, wrap=True,
                                              label="instances of this frame (click a row to select)"))
                curation.build_similar(ctx)
            with gr.Column(scale=5, min_width=380, elem_id="right-col"):
                curation.build(ctx)
                tab_objs = {}
                with gr.Tabs(elem_id="tabs"):
                    for title, tab_id, build, _ in tabs:
                        with gr.Tab(title, id=tab_id) as tab:
                            build(ctx)
                        tab_objs[tab_id] = tab
        viewer.build_commands(ctx)

        after = stats.after(ctx)
        viewer.wire(ctx, play_interval)
        settings.wire(ctx, after)
        curation.wire(ctx, after)
        timeline.wire(ctx)
        for _, _, _, wire in tabs:
            if wire is not None:
                wire(ctx)
        stats.wire_tab(ctx, tab_objs["stats"], list(tab_objs.values()))
        viewer.wire_load(ctx, demo)
    return demo


def launch(ctrl: AppController, *, host: str = "127.0.0.1", port: int = 7860, fiftyone_port: int = 5151,
           max_upload_mb: int = handlers.DEFAULT_MAX_UPLOAD_MB, quiet: bool = False) -> None:
    """Build and serve the app (blocking); share off.

    Files served: Gradio's own cache (kept inside the workspace by ``launch.py``), the
    workspace's ``exports/`` folder and ``assets/``; nothing else (not the database).
    """
    demo = build_app(ctrl, fiftyone_port=fiftyone_port, max_upload_bytes=max_upload_mb * 2**20)
    demo.queue(default_concurrency_limit=4)
    demo.launch(server_name=host, server_port=port, share=False, inbrowser=False, show_error=False,
                allowed_paths=[str(ctrl.ws.exports_dir), str(ASSETS_DIR)], max_file_size=f"{max_upload_mb}mb",
                theme=gr.themes.Soft(primary_hue="indigo", neutral_hue="slate"), css=text.CSS + LAYOUT_CSS,
                js=text.PAGE_JS, quiet=quiet, footer_links=["gradio"])


LAYOUT_CSS = """
.gradio-container {padding: 4px 10px !important}
#header {gap:12px; align-items:center; min-height:0; max-height:46px; overflow:hidden}
#header:hover {max-height:none; overflow:visible}
#status-col {gap:0} #job-status p {margin:0; font-size:0.8em}
.gradio-container .column {gap:6px}
.gradio-container main, .gradio-container .main {padding-top:0 !important; margin-top:0 !important}
.gradio-container .contain {gap:4px !important}
#title p {font-size:1.05em; margin:0; white-space:nowrap}
#backend-banner p {margin:0; font-size:0.72em; line-height:1.25}
#backend-banner code {font-size:0.95em; padding:0 2px}
#toolbar {gap:6px; align-items:center}
#main-row {gap:8px}
#left-col, #right-col {gap:4px}
#curation-row, #track-row {gap:4px; align-items:center}
#curation-row button, #track-row button {white-space:nowrap; padding-left:6px; padding-right:6px}
#track-mode label {white-space:nowrap}
"""
