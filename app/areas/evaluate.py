"""Evaluate: per-class F1 of the paper's Table 1 against a YouTube-VIS ground truth."""
from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import gradio as gr

from app import exports, handlers
from app.shell import Context, config_of, on
from app.state import AppController
from uvis.errors import BadInputError


def build(ctx: Context) -> None:
    ctx.add("gt_path", gr.Textbox(label="YouTube-VIS ground-truth JSON (path inside the workspace)",
                                  elem_id="gt-path", max_lines=1))
    ctx.add("gt_upload", gr.File(label="…or upload it", file_types=[".json"], elem_id="gt-upload"))
    ctx.add("eval_btn", gr.Button("compute per-class F1 (Table 1)", elem_id="run-eval"))
    ctx.add("eval_md", gr.Markdown("", elem_id="eval-table"))


def on_eval(ctrl: AppController, path_text: str, file: Any, *vals: Any) -> Any:
    if file is not None:
        src = Path(file if isinstance(file, str) else file.name)
        if src.suffix.lower() != ".json":
            raise BadInputError(f"{src.name}: ground truth must be a YouTube-VIS .json file")
        gt = handlers.store_upload(src, ctrl.ws.uploads_dir)
    elif not (path_text or "").strip():
        raise BadInputError("enter the path of a YouTube-VIS ground-truth .json inside the workspace, or upload one")
    else:
        gt = handlers.resolve_inside(path_text, [ctrl.ws.root])
    cfg = config_of(ctrl, vals)
    if ctrl.project() is None:
        raise BadInputError("no labelled video to evaluate")
    return exports.table1_markdown(ctrl.ws.root, gt, cfg, ctrl.decide_all)


def wire(ctx: Context) -> None:
    on(ctx, ctx["eval_btn"].click, functools.partial(on_eval, ctx.ctrl), ["gt_path", "gt_upload", *ctx.settings],
       ["eval_md"])
