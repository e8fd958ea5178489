"""The Gradio Blocks of UVIS Studio: layout and event wiring only.

Every callback maps widget values to a :class:`~uvis.config.Config` (``app.handlers``),
asks the process-wide :class:`~app.state.AppController` for decisions (memoised, from
the cache in memory) and renders the current frame (``app.views``). Models never run
in a callback: labelling is a background job (``app.jobs``).
"""
import functools
import traceback
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

import gradio as gr

from app import exports, handlers, views
from app.backends import banner_markdown
from app.handlers import DecisionSettings
from app.state import AppController, ViewState
from uvis.config import ASSETS_DIR, Config, vocabulary_presets
from uvis.errors import MissingDependencyError, UvisError
from uvis.types import Reason

CSS = """
.uv-banner {font-size: 0.92em}
.uv-banner p {margin: 0.15em 0}
#counts {font-size: 1.02em}
.uv-panel img {object-fit: contain}
.uv-panel-title {font-weight:600; font-size:0.95em; margin:0 0 2px 2px}
.uv-legend {display:flex; gap:14px; flex-wrap:wrap; font-size:0.88em; margin:2px 0 6px 0}
.uv-legend span {display:inline-flex; align-items:center; gap:5px}
.uv-legend i {display:inline-block; width:12px; height:12px; border-radius:3px}
.uv-card {border:1px solid var(--border-color-primary); border-radius:8px; padding:8px 12px; font-size:0.92em}
.uv-card-title {font-weight:600; margin-bottom:4px}
.uv-hint {color: var(--body-text-color-subdued)}
.uv-bars {margin:6px 0}
.uv-bar {display:flex; align-items:center; gap:8px; margin:2px 0}
.uv-bar-name {width:130px; overflow:hidden; text-overflow:ellipsis; white-space:nowrap}
.uv-bar-track {flex:1; height:10px; background:var(--neutral-200); border-radius:5px; overflow:hidden}
.uv-bar-fill {display:block; height:100%; background:#4f6bed}
.uv-bar-val {width:40px; text-align:right; font-variant-numeric:tabular-nums}
.uv-prompt {color: var(--body-text-color-subdued)}
.uv-reason {padding:0 6px; border-radius:4px; color:white}
.uv-kept {background:#2ecc71} .uv-objectness {background:#95a5a6} .uv-clip_score {background:#f39c12}
.uv-pmf {background:#9b59b6} .uv-user_reject {background:#e74c3c}
"""

LEGEND_HTML = "<div class='uv-legend'>" + "".join(
    f"<span><i style='background:rgb{c}'></i>{n}</span>" for n, c in (
        ("kept", (46, 204, 113)), ("dropped: objectness", (149, 165, 166)), ("dropped: CLIP score", (243, 156, 18)),
        ("dropped: PMF", (155, 89, 182)), ("dropped: user reject", (231, 76, 60)),
        ("selected", (255, 221, 0)))) + (
    "<span>· tags: instance index, then objectness / label + score / reason + deciding similarity / "
    "track; * = curated by you</span></div>")


def _message(exc: BaseException) -> str:
    if isinstance(exc, (UvisError, MissingDependencyError)):
        return str(exc)
    if isinstance(exc, ModuleNotFoundError):
        return f"this feature needs a module that is not installed here: {exc.name}"
    return f"internal error: {exc!r}"


def build_app(ctrl: AppController, *, fiftyone_port: int = 5151, max_upload_bytes: int = 512 * 2**20,
              play_interval: float = 0.25) -> Any:
    """The Blocks of the app (call ``.launch`` via :func:`launch`)."""
    init_cfg = ctrl.initial_config()
    s0 = DecisionSettings.from_config(init_cfg)
    presets = vocabulary_presets()
    preset_names = {"ytvis2019": "YouTube-VIS 2019", "ytvis2021": "YouTube-VIS 2021", "ovis": "OVIS"}
    names = ctrl.video_names()

    def config_of(values: tuple[Any, ...]) -> Config:
        return handlers.build_config(ctrl.run_config, DecisionSettings(*values))

    # rendered panels land in Gradio's cache (inside the workspace): drop files older than an hour
    with gr.Blocks(title="UVIS Studio", delete_cache=(900, 3600)) as demo:
        state = gr.State(ViewState())
        with gr.Row():
            gr.Markdown("## UVIS Studio — unsupervised video instance segmentation pseudo-labels")
        gr.Markdown(banner_markdown(ctrl.backends), elem_classes="uv-banner", elem_id="backend-banner")
        job_line = gr.Markdown("", elem_id="job-status")
        with gr.Row(equal_height=False):
            video_dd = gr.Dropdown(choices=names, value=names[0] if names else None, label="video",
                                   elem_id="video-select", scale=2, min_width=160)
            frame_slider = gr.Slider(0, max(1, ctrl.num_frames(names[0]) - 1 if names else 1), value=0, step=1,
                                     label="frame", elem_id="frame-slider", scale=8)
            prev_btn = gr.Button("◀ step", size="sm", elem_id="prev-frame", scale=1, min_width=70)
            play_btn = gr.Button("▶ play", size="sm", elem_id="play", scale=1, min_width=70)
            next_btn = gr.Button("step ▶", size="sm", elem_id="next-frame", scale=1, min_width=70)
        counts_md = gr.Markdown("", elem_id="counts")
        with gr.Row(equal_height=True):
            panels = []
            for k, title in zip("abcd", views.PANEL_TITLES):
                with gr.Column(min_width=200):
                    gr.HTML(f"<div class='uv-panel-title'>{title}</div>")
                    panels.append(gr.Image(show_label=False, interactive=False, format="jpeg", elem_id=f"panel-{k}",
                                           elem_classes="uv-panel", buttons=["fullscreen"], container=False))
        gr.HTML(LEGEND_HTML)
        with gr.Row():
            with gr.Column(scale=3):
                card = gr.HTML("", elem_id="instance-card-box")
                with gr.Row(equal_height=True):
                    relabel_dd = gr.Dropdown(choices=list(init_cfg.labeler.vocabulary), value=None,
                                             show_label=False, container=False, allow_custom_value=True,
                                             elem_id="relabel-choice", scale=2, min_width=140)
                    relabel_btn = gr.Button("relabel as ◀", size="sm", variant="primary", elem_id="relabel",
                                            scale=1, min_width=90)
                    accept_btn = gr.Button("✔ accept", size="sm", elem_id="accept", scale=1, min_width=80)
                    reject_btn = gr.Button("✖ reject", size="sm", elem_id="reject", scale=1, min_width=80)
                with gr.Row():
                    mark_btn = gr.Button("mark track for merge", size="sm", elem_id="mark-merge")
                    merge_btn = gr.Button("merge with marked", size="sm", elem_id="merge")
                    split_btn = gr.Button("split track here", size="sm", elem_id="split")
                    undo_btn = gr.Button("↶ undo", size="sm", elem_id="undo")
                    redo_btn = gr.Button("↷ redo", size="sm", elem_id="redo")
                curation_msg = gr.Markdown("", elem_id="curation-msg")
                table = gr.Dataframe(headers=handlers.TABLE_HEADERS, interactive=False, elem_id="instance-table",
                                     label="instances of this frame (click a row to select)", max_height=320,
                                     wrap=True, column_widths=["36px", "84px", "96px", "64px", "118px", "84px",
                                                               "56px", "300px", "190px"])
                with gr.Accordion("Label by example: instances similar to the selected one", open=True):
                    similar_md = gr.Markdown("Relabel or accept an instance to see similar instances here.",
                                             elem_id="similar-msg")
                    similar_tbl = gr.Dataframe(headers=["frame", "#", "similarity", "label", "decision"],
                                               interactive=False, elem_id="similar-table", max_height=240)
                    with gr.Row(equal_height=False):
                        similar_thr = gr.Slider(0.0, 1.0, value=0.8, step=0.01, label="minimum similarity",
                                                scale=3)
                        apply_similar_btn = gr.Button("apply the label to these", size="sm", scale=1,
                                                      elem_id="apply-similar")
                similar_state = gr.State([])
            with gr.Column(scale=2):
                with gr.Tabs():
                    with gr.Tab("Settings", id="settings"):
                        preset_dd = gr.Dropdown(choices=[(preset_names.get(k, k), k) for k in presets],
                                                value=next((k for k, v in presets.items()
                                                            if v == list(init_cfg.labeler.vocabulary)), None),
                                                label="vocabulary preset", elem_id="preset")
                        vocab_tb = gr.Textbox(s0.vocabulary, label="vocabulary (comma-separated; Enter applies)",
                                              lines=3, max_lines=8, elem_id="vocabulary")
                        templates_tb = gr.Textbox(s0.templates, label="prompt templates (one per line, {} = class)",
                                                  lines=4, max_lines=10, elem_id="templates")
                        pooling = gr.Radio(["max", "mean"], value=s0.prompt_pooling, label="prompt pooling")
                        obj_s = gr.Slider(0, 1, value=s0.objectness_threshold, step=0.01,
                                          label="objectness threshold", elem_id="objectness-threshold")
                        clip_label = ("CLIP score threshold" if ctrl.run_config.embedder.backend == "clip" else
                                      "score threshold (no CLIP: similarity to the closest example)")
                        clip_s = gr.Slider(0, 1, value=s0.clip_threshold, step=0.01, label=clip_label,
                                           elem_id="clip-threshold")
                        per_class_tb = gr.Textbox(s0.clip_per_class, label="per-class CLIP thresholds "
                                                  "(class: value, one per line)", lines=2, elem_id="per-class")
                        with gr.Row():
                            pmf_on = gr.Checkbox(s0.pmf_enabled, label="PMF on", elem_id="pmf-on")
                            pmf_k = gr.Slider(1, 32, value=s0.pmf_k, step=1, label="PMF K", elem_id="pmf-k")
                        pmf_s = gr.Slider(0, 1, value=s0.pmf_threshold, step=0.01, label="PMF threshold τ",
                                          elem_id="pmf-threshold")
                        with gr.Row():
                            lam_s = gr.Slider(0, 1, value=s0.memory_lambda, step=0.05, label="tracking λ")
                            w_s = gr.Slider(0, 1, value=s0.embedding_weight, step=0.05, label="tracking w")
                            cost_s = gr.Slider(0, 2, value=s0.max_cost, step=0.05, label="max cost")
                        apply_btn = gr.Button("apply text settings", size="sm", elem_id="apply-settings")
                        settings_msg = gr.Markdown("", elem_id="settings-msg")
                    with gr.Tab("Statistics", id="stats"):
                        stats_plot = gr.Plot(show_label=False, elem_id="stats-plot")
                    with gr.Tab("Jobs", id="jobs"):
                        upload = gr.File(label="upload a video (mp4, avi, webm, mkv, mov)",
                                         file_types=list(handlers.VIDEO_EXTENSIONS), elem_id="upload")
                        with gr.Row(equal_height=False):
                            path_tb = gr.Textbox(label="…or a path inside the workspace", scale=3,
                                                 elem_id="video-path")
                            add_path_btn = gr.Button("add", size="sm", scale=1, elem_id="add-path")
                        jobs_msg = gr.Markdown("", elem_id="jobs-msg")
                        jobs_tbl = gr.Dataframe(headers=["job", "video", "state", "frames", "message"],
                                                interactive=False, elem_id="jobs-table")
                        with gr.Row(equal_height=False):
                            job_id = gr.Number(label="job id (empty: the running job)", precision=0, scale=1)
                            cancel_btn = gr.Button("cancel job", size="sm", scale=1, elem_id="cancel-job")
                    with gr.Tab("Export", id="export"):
                        ds_name = gr.Textbox(f"uvis-{ctrl.ws.root.name}", label="FiftyOne dataset name",
                                             elem_id="dataset-name")
                        overwrite = gr.Checkbox(False, label="overwrite if the dataset exists", elem_id="overwrite")
                        with gr.Row():
                            fo_btn = gr.Button("export to FiftyOne", variant="primary", elem_id="export-fiftyone")
                            open_btn = gr.Button("open in FiftyOne", elem_id="open-fiftyone")
                        with gr.Row():
                            ytvis_btn = gr.Button("YouTube-VIS JSON", elem_id="export-ytvis")
                            coco_btn = gr.Button("COCO JSON", elem_id="export-coco")
                        export_msg = gr.Markdown("", elem_id="export-msg")
                        export_file = gr.File(label="download", interactive=False, elem_id="export-file")
                    with gr.Tab("Evaluate", id="evaluate"):
                        gt_path = gr.Textbox(label="YouTube-VIS ground-truth JSON (path inside the workspace)",
                                             elem_id="gt-path")
                        gt_upload = gr.File(label="…or upload it", file_types=[".json"])
                        eval_btn = gr.Button("compute per-class F1 (Table 1)", elem_id="run-eval")
                        eval_md = gr.Markdown("", elem_id="eval-table")
        timer = gr.Timer(1.0)
        play_timer = gr.Timer(play_interval, active=False)

        settings = [vocab_tb, templates_tb, pooling, obj_s, clip_s, per_class_tb, pmf_on, pmf_s, pmf_k,
                    lam_s, w_s, cost_s]
        view_out = [*panels, counts_md, table, card, state, frame_slider]
        n_view = len(view_out)

        def out_view(fv: views.FrameView) -> list[Any]:
            slider = gr.Slider(maximum=max(1, fv.num_frames - 1), value=fv.state.frame)
            return [*fv.panels, fv.counts, fv.table, fv.card, fv.state, slider]

        def guarded(n_out: int, msg_last: bool = True) -> Callable:
            """Turn exceptions into a warning toast (and message in the last output) without
            touching the other outputs."""
            def deco(fn: Callable) -> Callable:
                @functools.wraps(fn)
                def wrapper(*args: Any) -> Any:
                    try:
                        return fn(*args)
                    except Exception as exc:  # noqa: BLE001 - the app must keep working
                        if not isinstance(exc, (UvisError, MissingDependencyError, ModuleNotFoundError)):
                            traceback.print_exc()
                        text = _message(exc)
                        gr.Warning(text)
                        skips: list[Any] = [gr.skip()] * n_out
                        if msg_last:
                            skips[-1] = f"⚠️ {text}"
                        return skips[0] if n_out == 1 else tuple(skips)
                return wrapper
            return deco

        # ------------------------------------------------------------ view events
        @guarded(n_view + 2)
        def on_settings(st: ViewState, *vals: Any) -> Any:
            cfg = config_of(vals)
            fv = views.frame_view(ctrl, st, cfg)
            ctrl.save_config(cfg)
            return (*out_view(fv), gr.Dropdown(choices=list(cfg.labeler.vocabulary)), "")

        settings_out = [*view_out, relabel_dd, settings_msg]
        for comp in (obj_s, clip_s, pmf_s, pmf_k, lam_s, w_s, cost_s):
            comp.release(on_settings, [state, *settings], settings_out, trigger_mode="always_last")
        for comp in (pooling, pmf_on):
            comp.input(on_settings, [state, *settings], settings_out, trigger_mode="always_last")
        for comp in (vocab_tb, per_class_tb):
            comp.submit(on_settings, [state, *settings], settings_out)
        for comp in (vocab_tb, templates_tb, per_class_tb):
            comp.blur(on_settings, [state, *settings], settings_out, trigger_mode="always_last")
        apply_btn.click(on_settings, [state, *settings], settings_out)

        @guarded(n_view + 3)
        def on_preset(st: ViewState, preset: str | None, *vals: Any) -> Any:
            if not preset:
                return (*[gr.skip()] * n_view, gr.skip(), gr.skip(), "")
            text = handlers.format_vocabulary(presets[preset])
            vals = (text, *vals[1:])
            cfg = config_of(vals)
            fv = views.frame_view(ctrl, st, cfg)
            ctrl.save_config(cfg)
            return (*out_view(fv), text, gr.Dropdown(choices=list(cfg.labeler.vocabulary)),
                    f"vocabulary: {preset_names.get(preset, preset)} ({len(cfg.labeler.vocabulary)} classes)")

        preset_dd.input(on_preset, [state, preset_dd, *settings], [*view_out, vocab_tb, relabel_dd, settings_msg])

        @guarded(n_view)
        def on_frame(st: ViewState, t: float, *vals: Any) -> Any:
            return out_view(views.move_to_frame(ctrl, st, config_of(vals), int(t)))

        frame_slider.release(on_frame, [state, frame_slider, *settings], view_out, trigger_mode="always_last")
        frame_slider.input(on_frame, [state, frame_slider, *settings], view_out, trigger_mode="always_last")

        @guarded(n_view)
        def on_step(st: ViewState, delta: int, *vals: Any) -> Any:
            cfg = config_of(vals)
            n = ctrl.num_frames(st.video) if st.video else 0
            t = (st.frame + delta) % n if n else 0
            return out_view(views.move_to_frame(ctrl, st, cfg, t))

        prev_btn.click(lambda st, *v: on_step(st, -1, *v), [state, *settings], view_out)
        next_btn.click(lambda st, *v: on_step(st, 1, *v), [state, *settings], view_out)
        play_timer.tick(lambda st, *v: on_step(st, 1, *v), [state, *settings], view_out)

        def on_play(label: str) -> Any:
            playing = label.startswith("▶")
            return gr.Timer(active=playing), gr.Button("⏸ pause" if playing else "▶ play")

        play_btn.click(on_play, [play_btn], [play_timer, play_btn])

        @guarded(n_view + 1)
        def on_video(st: ViewState, name: str, *vals: Any) -> Any:
            fv = views.frame_view(ctrl, ViewState(video=name, frame=-1, generation=st.generation), config_of(vals))
            return (*out_view(fv), "")

        # ------------------------------------------------------------ selection
        @guarded(n_view)
        def on_panel_select(evt: gr.SelectData, st: ViewState, *vals: Any) -> Any:
            x, y = evt.index if isinstance(evt.index, (list, tuple)) else (0, 0)
            return out_view(views.pick(ctrl, st, config_of(vals), float(x), float(y)))

        for p in panels:
            p.select(on_panel_select, [state, *settings], view_out)

        @guarded(n_view)
        def on_table_select(evt: gr.SelectData, st: ViewState, *vals: Any) -> Any:
            row = evt.index[0] if isinstance(evt.index, (list, tuple)) else evt.index
            return out_view(views.select(ctrl, st, config_of(vals), int(row)))

        table.select(on_table_select, [state, *settings], view_out)

        # ------------------------------------------------------------ statistics
        def on_stats(st: ViewState, *vals: Any) -> Any:
            try:
                if not st.video:
                    return gr.skip()
                from app.plots import stats_figure

                return stats_figure(ctrl.result(st.video, config_of(vals)))
            except Exception as exc:  # noqa: BLE001
                gr.Warning(f"statistics: {_message(exc)}")
                return gr.skip()

        # ------------------------------------------------------------ curation
        def similar_outputs(st: ViewState, cfg: Config, label: str | None) -> tuple[str, list, list]:
            items = views.similar_to_selection(ctrl, st, cfg, k=12)
            res = ctrl.result(st.video, cfg)  # type: ignore[arg-type]
            what = f"label **{label}**" if label else "the selected instance's label"
            msg = (f"Proposed: {what} for the {len(items)} most similar instances (cosine similarity of "
                   f"embeddings, {ctrl.backends[1].live}). Choose a minimum similarity and apply, or click a "
                   "row to inspect it.")
            return msg, handlers.similar_table(res, items), [[f, i, s, label] for _, f, i, s in items]

        @guarded(n_view + 4)
        def on_curate(st: ViewState, action: str, label: str | None, *vals: Any) -> Any:
            cfg = config_of(vals)
            video, t, i = views.selected_ref(st)
            vocab_update: Any = gr.skip()
            if action == "relabel":
                label = (label or "").strip()
                if not label:
                    raise UvisError("choose a class in 'relabel as' first")
                if label not in cfg.labeler.vocabulary:
                    vocab = [*cfg.labeler.vocabulary, label]
                    vals = (handlers.format_vocabulary(vocab), *vals[1:])
                    cfg = config_of(vals)
                    vocab_update = vals[0]
                    ctrl.save_config(cfg)
                ctrl.curate(video, "relabel", handlers.instance_payload(t, i, label))
            else:
                ctrl.curate(video, action, handlers.instance_payload(t, i))
            fv = views.frame_view(ctrl, st, cfg)
            msg = f"{action} of frame {t} #{i} saved" + (f" as **{label}**" if action == "relabel" else "")
            if action in ("relabel", "accept"):
                res = ctrl.result(video, cfg)
                lbl = label if action == "relabel" else handlers.class_name(
                    res, int(res.instances.label[ctrl.frame_rows(video, t).start + i]))  # type: ignore[index]
                sim_msg, sim_rows, sim_state = similar_outputs(fv.state, cfg, lbl)
            else:
                sim_msg, sim_rows, sim_state = gr.skip(), gr.skip(), gr.skip()
            return (*out_view(fv), vocab_update, sim_msg, sim_rows, sim_state, msg)

        cur_out = [*view_out, vocab_tb, similar_md, similar_tbl, similar_state, curation_msg]
        for btn, action in ((accept_btn, "accept"), (reject_btn, "reject"), (relabel_btn, "relabel")):
            btn.click(functools.partial(lambda a, st, lbl, *v: on_curate(st, a, lbl, *v), action),
                      [state, relabel_dd, *settings], cur_out).then(on_stats, [state, *settings], stats_plot)

        @guarded(n_view + 1)
        def on_track_edit(st: ViewState, action: str, *vals: Any) -> Any:
            cfg = config_of(vals)
            video, t, i = views.selected_ref(st)
            if action == "mark":
                fv = views.frame_view(ctrl, replace(st, merge_mark=(t, i)), cfg)
                return (*out_view(fv), f"marked frame {t} #{i}; select an instance of the other track, then "
                        "'merge with marked'")
            if action == "merge":
                if st.merge_mark is None:
                    raise UvisError("mark an instance of the first track first ('mark track for merge')")
                ctrl.curate(video, "merge", handlers.merge_payload(st.merge_mark, (t, i)))
                msg = f"merged the track of frame {st.merge_mark[0]} #{st.merge_mark[1]} with frame {t} #{i}"
                st = replace(st, merge_mark=None)
            else:
                ctrl.curate(video, "split", handlers.split_payload(t, i))
                msg = f"split the track before frame {t} (#{i} starts a new track)"
            return (*out_view(views.frame_view(ctrl, st, cfg)), msg)

        for btn, action in ((mark_btn, "mark"), (merge_btn, "merge"), (split_btn, "split")):
            btn.click(functools.partial(lambda a, st, *v: on_track_edit(st, a, *v), action),
                      [state, *settings], [*view_out, curation_msg]).then(on_stats, [state, *settings], stats_plot)

        @guarded(n_view + 1)
        def on_undo(st: ViewState, redo: bool, *vals: Any) -> Any:
            if not st.video:
                raise UvisError("no video")
            msg = ctrl.redo(st.video) if redo else ctrl.undo(st.video)
            return (*out_view(views.frame_view(ctrl, st, config_of(vals))), msg)

        undo_btn.click(lambda st, *v: on_undo(st, False, *v), [state, *settings],
                       [*view_out, curation_msg]).then(on_stats, [state, *settings], stats_plot)
        redo_btn.click(lambda st, *v: on_undo(st, True, *v), [state, *settings],
                       [*view_out, curation_msg]).then(on_stats, [state, *settings], stats_plot)

        @guarded(n_view + 1)
        def on_apply_similar(st: ViewState, items: list, thr: float, *vals: Any) -> Any:
            if not items or not st.video:
                raise UvisError("no proposals: relabel or accept an instance first")
            chosen = [(f, i, lbl) for f, i, s, lbl in items if s >= thr and lbl]
            for f, i, lbl in chosen:
                ctrl.curate(st.video, "relabel", handlers.instance_payload(f, i, lbl))
            fv = views.frame_view(ctrl, st, config_of(vals))
            return (*out_view(fv), f"labelled {len(chosen)} similar instances (similarity ≥ {thr:.2f})")

        apply_similar_btn.click(on_apply_similar, [state, similar_state, similar_thr, *settings],
                                [*view_out, curation_msg]).then(on_stats, [state, *settings], stats_plot)

        @guarded(n_view)
        def on_similar_select(evt: gr.SelectData, st: ViewState, items: list, *vals: Any) -> Any:
            row = evt.index[0] if isinstance(evt.index, (list, tuple)) else evt.index
            f, i = int(items[row][0]), int(items[row][1])
            cfg = config_of(vals)
            return out_view(views.select(ctrl, replace(st, frame=f, selected=i), cfg, i))

        similar_tbl.select(on_similar_select, [state, similar_state, *settings], view_out)

        # ------------------------------------------------------------ jobs
        def jobs_rows() -> list[list[Any]]:
            if ctrl.jobs is None:
                return []
            return [[j.id, j.name, j.state, f"{j.done}/{j.total}" if j.total else "", j.message]
                    for j in ctrl.jobs.jobs()]

        def job_status() -> str:
            if ctrl.jobs is None:
                return ""
            active = ctrl.jobs.active()
            if not active:
                return ""
            j = active[0]
            bar = "▓" * int(20 * j.fraction) + "░" * (20 - int(20 * j.fraction))
            more = f" (+{len(active) - 1} queued)" if len(active) > 1 else ""
            return (f"**labelling {j.name}**: {bar} {j.done}/{j.total or '?'} frames "
                    f"{j.message}{more} — job {j.id}, cancel it in the Jobs tab")

        def submit_video(path: Path, name: str) -> str:
            from uvis.video import open_video

            with open_video(path, max_frames=1):  # quick probe: decodable at all?
                pass
            job = ctrl.add_video(path, name)
            return f"queued job {job.id}: **{name}** ({path.name})"

        def on_upload(file: Any) -> tuple[Any, ...]:
            if file is None:
                return gr.skip(), gr.skip()
            src = Path(file if isinstance(file, str) else getattr(file, "name", str(file)))
            try:
                handlers.check_upload(src, max_upload_bytes)
                from uvis.video import open_video

                with open_video(src, max_frames=1):
                    pass
                stored = handlers.store_upload(src, ctrl.ws.uploads_dir)
                name, note = ctrl.ws.claim_video_name(stored)  # never another video's name and cache
                msg = submit_video(stored, name) + (f" — {note}" if note else "")
            except Exception as exc:  # noqa: BLE001 - any bad upload is a message, never a crash
                msg = f"⚠️ {_message(exc).replace(str(src), src.name)}"
                gr.Warning(msg)
            return msg, jobs_rows()

        upload.upload(on_upload, [upload], [jobs_msg, jobs_tbl])

        def on_add_path(text: str) -> tuple[Any, ...]:
            try:
                p = handlers.resolve_inside(text, [ctrl.ws.root, ASSETS_DIR / "examples"])
                name, note = ctrl.ws.claim_video_name(p)  # a clashing name gets its own: clip_2
                msg = submit_video(p, name) + (f" — {note}" if note else "")
            except Exception as exc:  # noqa: BLE001
                msg = f"⚠️ {_message(exc)}"
                gr.Warning(msg)
            return msg, jobs_rows()

        add_path_btn.click(on_add_path, [path_tb], [jobs_msg, jobs_tbl])
        path_tb.submit(on_add_path, [path_tb], [jobs_msg, jobs_tbl])

        def on_cancel(jid: float | None) -> tuple[Any, ...]:
            if ctrl.jobs is None:
                return "no job queue", jobs_rows()
            if not jid:  # no id given: the running (or next) job
                active = ctrl.jobs.active()
                if not active:
                    return "no job is running", jobs_rows()
                jid = active[0].id
            ok = ctrl.jobs.cancel(int(jid))
            return (f"cancelling job {int(jid)}…" if ok else f"job {int(jid)} is not running"), jobs_rows()

        cancel_btn.click(on_cancel, [job_id], [jobs_msg, jobs_tbl])

        jobs_sig = gr.State("")

        def on_tick(st: ViewState, sig: str, *vals: Any) -> Any:
            """Every second: job progress (only when it changed) and, after a job added or
            extended a video, a fresh view and statistics."""
            status, rows = job_status(), jobs_rows()
            new_sig = repr((status, rows))
            job_out = (gr.skip(), gr.skip(), gr.skip()) if new_sig == sig else (status, rows, new_sig)
            ctrl.refresh_running()
            skip_view = (gr.skip(), *[gr.skip()] * n_view, gr.skip())
            if st.generation < 0 or st.generation == ctrl.generation:  # (< 0: the page load renders)
                return (*job_out, *skip_view)
            try:
                cfg = config_of(vals)
                fv = views.frame_view(ctrl, st, cfg)
                stats: Any = gr.skip()
                if fv.result is not None:
                    from app.plots import stats_figure

                    stats = stats_figure(fv.result)
            except Exception as exc:  # noqa: BLE001
                gr.Warning(_message(exc))
                return (*job_out, *skip_view)
            dd = gr.Dropdown(choices=ctrl.video_names(), value=fv.state.video)
            return (*job_out, dd, *out_view(fv), stats)

        timer.tick(on_tick, [state, jobs_sig, *settings],
                   [job_line, jobs_tbl, jobs_sig, video_dd, *view_out, stats_plot])
        video_dd.input(on_video, [state, video_dd, *settings], [*view_out, curation_msg]) \
            .then(on_stats, [state, *settings], stats_plot)

        # ------------------------------------------------------------ export
        def all_results(vals: tuple[Any, ...]) -> dict:
            project = ctrl.project()
            if project is None:
                raise UvisError("nothing to export yet: no labelled video")
            with ctrl._lock:  # noqa: SLF001 - decide all videos consistently with the view
                return project.decide(config_of(vals))

        def on_export_fo(name: str, ow: bool, progress: gr.Progress = gr.Progress(), *vals: Any) -> tuple[Any, ...]:
            def report(p: Any) -> None:
                total = getattr(p, "total", 0) or 0
                done = getattr(p, "done", 0) or 0
                progress((done, total) if total else None,
                         desc=f"{getattr(p, 'stage', 'export')} {getattr(p, 'video', '')}".strip())

            try:
                results = all_results(vals)
                kept = sum(int((r.instances.decision == Reason.KEPT).sum()) for r in results.values())
                ds = exports.export_fiftyone(results, name, overwrite=bool(ow), exports_dir=ctrl.ws.exports_dir,
                                             progress=report)
                return (f"exported {len(results)} video(s), {kept} kept instances to FiftyOne dataset "
                        f"**{ds}** (dropped instances in a second field)"), gr.skip()
            except Exception as exc:  # noqa: BLE001
                text = _message(exc)
                if "exist" in text and not ow:
                    text += " — tick 'overwrite if the dataset exists' to replace it, or choose another name"
                gr.Warning(text)
                return f"⚠️ {text}", gr.skip()

        fo_btn.click(on_export_fo, [ds_name, overwrite, *settings], [export_msg, export_file])

        def on_open_fo(name: str) -> str:
            try:
                handle = exports.open_in_fiftyone(name, fiftyone_port)
                ctrl.keep_external(f"fiftyone:{fiftyone_port}", handle)
                url = handle.url
                return f"FiftyOne App: <a href='{url}' target='_blank' id='fiftyone-link'>{url}</a> (this machine only)"
            except Exception as exc:  # noqa: BLE001
                gr.Warning(_message(exc))
                return f"⚠️ {_message(exc)}"

        open_btn.click(on_open_fo, [ds_name], [export_msg])

        def on_export_file(kind: str, *vals: Any) -> tuple[Any, ...]:
            try:
                results = all_results(vals)
                fn = exports.export_ytvis if kind == "ytvis" else exports.export_coco
                path = fn(results, ctrl.ws.exports_dir)
                return f"wrote {path.name} ({path.stat().st_size / 1024:.0f} KiB)", str(path)
            except Exception as exc:  # noqa: BLE001
                gr.Warning(_message(exc))
                return f"⚠️ {_message(exc)}", gr.skip()

        ytvis_btn.click(lambda *v: on_export_file("ytvis", *v), settings, [export_msg, export_file])
        coco_btn.click(lambda *v: on_export_file("coco", *v), settings, [export_msg, export_file])

        # ------------------------------------------------------------ evaluation
        def on_eval(path_text: str, file: Any, *vals: Any) -> str:
            try:
                if file is not None:
                    src = Path(file if isinstance(file, str) else file.name)
                    if src.suffix.lower() != ".json":
                        raise UvisError(f"{src.name}: ground truth must be a YouTube-VIS .json file")
                    gt = handlers.store_upload(src, ctrl.ws.uploads_dir)
                else:
                    gt = handlers.resolve_inside(path_text, [ctrl.ws.root])
                cfg = config_of(vals)
                project = ctrl.project()
                if project is None:
                    raise UvisError("no labelled video to evaluate")

                def decide(c: Config) -> dict:
                    with ctrl._lock:  # noqa: SLF001
                        return project.decide(c)

                return exports.table1_markdown(ctrl.ws.root, gt, cfg, decide)
            except Exception as exc:  # noqa: BLE001
                gr.Warning(_message(exc))
                return f"⚠️ {_message(exc)}"

        eval_btn.click(on_eval, [gt_path, gt_upload, *settings], [eval_md])

        # ------------------------------------------------------------ first render
        def on_load(st: ViewState) -> Any:
            """A new session starts from the workspace's latest saved settings."""
            cfg = ctrl.initial_config()
            values = DecisionSettings.from_config(cfg).values()
            n_out = 2 + len(settings) + 1 + n_view
            try:
                fv = views.frame_view(ctrl, st, cfg)
            except Exception as exc:  # noqa: BLE001
                traceback.print_exc()
                gr.Warning(_message(exc))
                return tuple([gr.skip()] * n_out)
            names_now = ctrl.video_names()
            return (job_status(), gr.Dropdown(choices=names_now, value=fv.state.video), *values,
                    gr.Dropdown(choices=list(cfg.labeler.vocabulary)), *out_view(fv))

        demo.load(on_load, [state], [job_line, video_dd, *settings, relabel_dd, *view_out]) \
            .then(on_stats, [state, *settings], stats_plot)
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
                theme=gr.themes.Soft(primary_hue="indigo", neutral_hue="slate"), css=CSS, quiet=quiet,
                footer_links=["gradio"])
