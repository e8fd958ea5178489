"""The Train tab: train the VIS model on the workspace's curated pseudo-labels, watch the loss,
list checkpoints, predict the next self-training round, and read the round table.

A thin shell over :mod:`uvis.vis.train_job` (the background training thread) and
:mod:`uvis.vis.rounds` (predict a round, the round table). Runs live in
``<workspace>/runs/<name>``. The model's predictions become the videos ``<video>-r<k>`` of the
workspace, shown like any video (pick them in the video list, beside the pseudo-labels).
Plugs into the page as ``("Train", "train", train_tab.build, train_tab.wire)``.
"""
from __future__ import annotations

import functools
import html
import threading
from pathlib import Path
from typing import Any

import gradio as gr

from uvis.errors import BadInputError

TAB = ("Train", "train")
RUNS_DIR = "runs"


class TrainArea:
    """The tab's process-wide state: the current training job and prediction thread (kept
    outside ``gr.State``; one training job at a time)."""

    def __init__(self, workspace: Path, on_round: Any = None) -> None:
        self.workspace = Path(workspace)
        self.on_round = on_round  # called after a round's videos were imported (the controller's reload)
        self.job: Any = None
        self.run_name = ""
        self.predict_state = ""
        self._predict: threading.Thread | None = None
        self._lock = threading.Lock()

    def run_dir(self, name: str) -> Path:
        name = (name or "").strip()
        if not name or any(c in name for c in "/\\\0") or name.startswith("."):
            raise BadInputError(f"run name {name!r}: use a plain folder name such as run1")
        return self.workspace / RUNS_DIR / name

    def runs(self) -> list[str]:
        root = self.workspace / RUNS_DIR
        return sorted(p.name for p in root.iterdir() if (p / "train_config.json").is_file()) if root.is_dir() else []


def _config(preset_name: str, max_iter: float | None) -> Any:
    from uvis.vis.train_config import TrainConfig, preset

    cfg = preset(preset_name)
    if max_iter:
        cfg = TrainConfig.from_dict({"max_iter": int(max_iter), "num_workers": 0}, base=cfg)
    return cfg


def on_start(area: TrainArea, name: str, preset_name: str, max_iter: float | None, device: str,
             resume: bool = False) -> Any:
    from uvis.vis.train_job import TrainJob

    with area._lock:
        if area.job is not None and not area.job.status().finished:
            raise BadInputError(f"run {area.run_name} is still training; cancel it first")
        run = area.run_dir(name)
        area.job = TrainJob(area.workspace, run, _config(preset_name, max_iter), device=device or "cpu",
                            resume=resume).start()
        area.run_name = run.name
    verb = "resuming" if resume else "started"
    return status_md(area), f"{verb} training run {run.name} ({preset_name})"


def on_cancel(area: TrainArea) -> Any:
    if area.job is None or area.job.status().finished:
        raise BadInputError("no training run is in progress")
    area.job.cancel()
    return status_md(area), f"cancelling {area.run_name} after the current iteration (a checkpoint is written)"


def on_predict(area: TrainArea, name: str, device: str) -> Any:
    """Predict the next round with the run's model in a thread (imported as ``<video>-r<k>``)."""
    from uvis.vis.rounds import latest_round, make_round, round_args

    run = area.run_dir(name)
    if not (run / "model_final.pth").is_file() and not (run / "last_checkpoint").is_file():
        raise BadInputError(f"run {run.name} has no model yet; train it first")
    if area._predict is not None and area._predict.is_alive():
        raise BadInputError("a prediction round is already running")
    k = latest_round(area.workspace) + 1

    def work() -> None:
        try:
            make_round(round_args(area.workspace, run, k, device=device or "cpu"))
            if area.on_round is not None:
                area.on_round()
            area.predict_state = f"round {k} done: its videos are in the video list (suffix -r{k})"
        except Exception as exc:  # noqa: BLE001 - shown in the tab, the app stays up
            area.predict_state = f"round {k} failed: {exc}"

    area.predict_state = f"predicting round {k} with {run.name}…"
    area._predict = threading.Thread(target=work, name=f"predict-r{k}", daemon=True)
    area._predict.start()
    return status_md(area), area.predict_state


def status_md(area: TrainArea) -> str:
    parts = []
    if area.job is not None:
        s = area.job.status()
        pct = int(100 * s.iteration / max(s.max_iter, 1))
        parts.append(f"**{html.escape(area.run_name)}**: {s.state}, iteration {s.iteration}/{s.max_iter} "
                     f"({pct} %) — {html.escape(s.message)}")
    if area.predict_state:
        parts.append(html.escape(area.predict_state))
    return "\n\n".join(parts) or "no training run yet"


def loss_frame(area: TrainArea, name: str) -> Any:
    """Long-form DataFrame (iter, value, term) of the run's total and final-layer losses."""
    import pandas as pd

    from uvis.vis.trainer import read_metrics

    rows = []
    try:
        run = area.run_dir(name or area.run_name)
    except BadInputError:
        return pd.DataFrame({"iter": [], "value": [], "term": []})
    for m in read_metrics(run):
        for term in ("loss", "loss_ce", "loss_mask", "loss_dice"):
            if term in m:
                rows.append((int(m["iter"]), float(m[term]), term))
    return pd.DataFrame(rows, columns=["iter", "value", "term"])


def checkpoints_html(area: TrainArea, name: str) -> str:
    from uvis.vis.trainer import list_checkpoints

    try:
        run = area.run_dir(name or area.run_name)
    except BadInputError:
        return ""
    items = "".join(f"<li>{html.escape(c['name'])} ({c['bytes'] / 2 ** 20:.1f} MB)</li>" for c in list_checkpoints(run))
    return f"<div id='train-checkpoints'><b>checkpoints of {html.escape(run.name)}</b><ul>{items or '<li><i>none yet</i></li>'}</ul></div>"


def round_rows(area: TrainArea) -> list[list[Any]]:
    from uvis.vis.rounds import round_table

    def num(x: float | None) -> str:
        return "-" if x is None else f"{x:.3f}"

    try:
        rows = round_table(area.workspace)
    except BadInputError:
        return []
    return [[r.round, r.videos, r.kept, r.tracks, num(r.mf1), num(r.ap), Path(r.model).name] for r in rows]


def on_tick(area: TrainArea, name: str, sig: str) -> Any:
    """Every two seconds: status, loss plot and checkpoints when something changed."""
    status = status_md(area)
    frame = loss_frame(area, name)
    new_sig = repr((status, len(frame), name))
    if new_sig == sig:
        return gr.skip(), gr.skip(), gr.skip(), gr.skip()
    return status, frame, checkpoints_html(area, name), new_sig


def on_refresh_rounds(area: TrainArea) -> Any:
    return round_rows(area)


def build(ctx: Any) -> None:
    area = TrainArea(ctx.ctrl.ws.root, on_round=ctx.ctrl.reload)
    ctx.options["train_area"] = area
    gr.Markdown("Train the VIS model (MinVIS) on this workspace's curated pseudo-labels; then predict the next "
                "round's proposals with it. CPU: use the *tiny* preset.", elem_classes="uv-hint")
    with gr.Row(equal_height=True):
        ctx.add("train_run", gr.Textbox(value="run1", label="run name", max_lines=1, elem_id="train-run", scale=2))
        ctx.add("train_preset", gr.Dropdown(["tiny", "default"], value="tiny", label="preset", elem_id="train-preset",
                                            scale=1))
        ctx.add("train_iters", gr.Number(value=None, precision=0, label="iterations (empty: preset)",
                                         elem_id="train-iters", scale=1))
        ctx.add("train_device", gr.Dropdown(["cpu", "cuda"], value="cpu", label="device", elem_id="train-device",
                                            scale=1))
    with gr.Row(equal_height=True):
        ctx.add("train_start", gr.Button("start training", size="sm", elem_id="train-start"))
        ctx.add("train_resume", gr.Button("resume", size="sm", elem_id="train-resume"))
        ctx.add("train_cancel", gr.Button("cancel", size="sm", elem_id="train-cancel"))
        ctx.add("train_predict", gr.Button("predict next round", size="sm", elem_id="train-predict"))
    ctx.add("train_status", gr.Markdown("no training run yet", elem_id="train-status"))
    ctx.add("train_plot", gr.LinePlot(x="iter", y="value", color="term", label="loss", elem_id="train-plot",
                                      height=220))
    ctx.add("train_ckpts", gr.HTML("", elem_id="train-ckpts"))
    ctx.add("train_rounds", gr.Dataframe(headers=["round", "videos", "kept", "tracks", "mF1", "AP", "model"],
                                         interactive=False, elem_id="train-rounds", label="self-training rounds"))
    ctx.add("train_rounds_refresh", gr.Button("refresh round table", size="sm", elem_id="train-rounds-refresh"))
    ctx.add("train_sig", gr.State(""))


def wire(ctx: Any) -> None:
    from app.shell import on

    area: TrainArea = ctx.options["train_area"]
    on(ctx, ctx["train_start"].click, functools.partial(on_start, area),
       ["train_run", "train_preset", "train_iters", "train_device"], ["train_status"])
    on(ctx, ctx["train_resume"].click, functools.partial(on_start, area, resume=True),
       ["train_run", "train_preset", "train_iters", "train_device"], ["train_status"])
    on(ctx, ctx["train_cancel"].click, functools.partial(on_cancel, area), [], ["train_status"])
    on(ctx, ctx["train_predict"].click, functools.partial(on_predict, area), ["train_run", "train_device"],
       ["train_status"])
    on(ctx, ctx["train_rounds_refresh"].click, functools.partial(on_refresh_rounds, area), [], ["train_rounds"])
    timer = ctx.add("train_timer", gr.Timer(2.0))
    on(ctx, timer.tick, functools.partial(on_tick, area), ["train_run", "train_sig"],
       ["train_status", "train_plot", "train_ckpts", "train_sig"], touch_notice=False)
