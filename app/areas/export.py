"""Export: FiftyOne (new, overwrite or append), YouTube-VIS and COCO JSON — always of the
config the view shows (a settings change not applied yet makes export wait)."""
from __future__ import annotations

import functools
from typing import Any

import gradio as gr

from app import exports
from app.shell import Context, config_of, on
from app.state import AppController, ViewState
from uvis.config import Config
from uvis.errors import BadInputError
from uvis.types import Reason


def build(ctx: Context) -> None:
    ctrl = ctx.ctrl
    ctx.add("ds_name", gr.Textbox(f"uvis-{ctrl.ws.root.name}", label="FiftyOne dataset name", elem_id="dataset-name",
                                  max_lines=1))
    ctx.add("ds_mode", gr.Radio(["new", "overwrite", "append"], value="new", label="if the dataset exists",
                                elem_id="dataset-mode",
                                info="new: refuse to touch an existing dataset (default); overwrite: replace it; "
                                     "append: add these videos to it"))
    with gr.Row():
        ctx.add("fo_btn", gr.Button("export to FiftyOne", variant="primary", elem_id="export-fiftyone"))
        ctx.add("open_btn", gr.Button("open in FiftyOne", elem_id="open-fiftyone"))
    with gr.Row():
        ctx.add("ytvis_btn", gr.Button("YouTube-VIS JSON", elem_id="export-ytvis"))
        ctx.add("coco_btn", gr.Button("COCO JSON", elem_id="export-coco"))
    ctx.add("export_msg", gr.Markdown("", elem_id="export-msg"))
    ctx.add("export_file", gr.File(label="download", interactive=False, elem_id="export-file"))


def shown_config(ctrl: AppController, st: ViewState, vals: tuple[Any, ...]) -> Config:
    """The config the view shows; refuses while the settings boxes hold another one.

    Raises:
        BadInputError: settings pending (changed but not applied to the view yet).
    """
    cfg = config_of(ctrl, vals)
    if st.shown_config and st.shown_config != cfg.to_json():
        raise BadInputError("settings pending: the page shows other settings than the boxes hold; press Enter "
                            "or 'apply text settings' first, then export")
    return cfg


def on_export_fo(ctrl: AppController, st: ViewState, name: str, mode: str, *vals: Any,
                 progress: gr.Progress = gr.Progress()) -> Any:
    def report(p: Any) -> None:
        total = getattr(p, "total", 0) or 0
        done = getattr(p, "done", 0) or 0
        progress((done, total) if total else None,
                 desc=f"{getattr(p, 'stage', 'export')} {getattr(p, 'video', '')}".strip())

    results = ctrl.decide_all(shown_config(ctrl, st, vals))
    kept = sum(int((r.instances.decision == Reason.KEPT).sum()) for r in results.values())
    try:
        ds = exports.export_fiftyone(results, name, overwrite=mode == "overwrite", append=mode == "append",
                                     exports_dir=ctrl.ws.exports_dir, progress=report)
    except BadInputError as exc:
        if "exist" in str(exc) and mode == "new":
            raise BadInputError(f"a FiftyOne dataset named '{name}' already exists: choose 'overwrite' to replace "
                                "it, 'append' to add these videos to it, or another name") from exc
        raise
    return (f"exported {len(results)} video(s), {kept} kept instances to FiftyOne dataset **{ds}** "
            "(dropped instances in a second field)"), gr.skip()


def on_open_fo(ctrl: AppController, port: int, name: str) -> Any:
    handle = exports.open_in_fiftyone(name, port)
    ctrl.keep_external(f"fiftyone:{port}", handle)
    url = handle.url
    return f"FiftyOne App: <a href='{url}' target='_blank' id='fiftyone-link'>{url}</a> (this machine only)"


def on_export_file(ctrl: AppController, kind: str, st: ViewState, *vals: Any) -> Any:
    results = ctrl.decide_all(shown_config(ctrl, st, vals))
    fn = exports.export_ytvis if kind == "ytvis" else exports.export_coco
    path = fn(results, ctrl.ws.exports_dir)
    return f"wrote {path.name} ({path.stat().st_size / 1024:.0f} KiB)", str(path)


def wire(ctx: Context) -> None:
    ctrl, S = ctx.ctrl, ctx.settings
    out = ["export_msg", "export_file"]
    on(ctx, ctx["fo_btn"].click, functools.partial(on_export_fo, ctrl), ["state", "ds_name", "ds_mode", *S], out)
    on(ctx, ctx["open_btn"].click, functools.partial(on_open_fo, ctrl, ctx.options["fiftyone_port"]), ["ds_name"],
       ["export_msg"])
    on(ctx, ctx["ytvis_btn"].click, functools.partial(on_export_file, ctrl, "ytvis"), ["state", *S], out)
    on(ctx, ctx["coco_btn"].click, functools.partial(on_export_file, ctrl, "coco"), ["state", *S], out)
