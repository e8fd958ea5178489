"""Settings: vocabulary, templates, thresholds, PMF and tracker, each with a tooltip
(what it does, its default). Every change re-decides at once (drag, click, arrow keys,
typed value); text boxes apply on Enter (vocabulary) or when left, and until then the
page says "settings pending" (export refuses to run on settings the view does not show)."""
from __future__ import annotations

import functools
from typing import Any

import gradio as gr

from app import handlers, views
from app.shell import Context, config_of, on, view_values
from app.state import AppController, ViewState
from uvis.config import vocabulary_presets

PRESET_NAMES = {"ytvis2019": "YouTube-VIS 2019", "ytvis2021": "YouTube-VIS 2021", "ovis": "OVIS"}


def build(ctx: Context) -> None:
    cfg, tips, has_text = ctx.options["init_cfg"], ctx.options["tips"], ctx.options["has_text"]
    s0 = handlers.DecisionSettings.from_config(cfg)
    presets = vocabulary_presets()
    ctx.add("settings_msg", gr.HTML("", elem_id="settings-msg", container=False, padding=False))
    ctx.add("preset", gr.Dropdown(choices=[(PRESET_NAMES.get(k, k), k) for k in presets],
                                  value=next((k for k, v in presets.items() if v == list(cfg.labeler.vocabulary)),
                                             None), label="vocabulary preset", elem_id="preset", info=tips["preset"]))
    vocab = ctx.add("vocabulary", gr.Textbox(s0.vocabulary, label="vocabulary (comma-separated)", lines=1,
                                             max_lines=1, elem_id="vocabulary", info=tips["vocabulary"]))
    templates = ctx.add("templates", gr.Textbox(s0.templates, label="prompt templates (one per line, {} = class)",
                                                lines=3, max_lines=10, elem_id="templates", info=tips["templates"],
                                                visible=has_text))
    pooling = ctx.add("pooling", gr.Radio(["max", "mean"], value=s0.prompt_pooling, label="prompt pooling",
                                          info=tips["pooling"], visible=has_text, elem_id="pooling"))
    obj = ctx.add("objectness", gr.Slider(0, 1, value=s0.objectness_threshold, step=0.01,
                                          label="objectness threshold", elem_id="objectness-threshold",
                                          info=tips["objectness"]))
    clip = ctx.add("clip", gr.Slider(0, 1, value=s0.clip_threshold, step=0.01,
                                     label="CLIP score threshold" if has_text else
                                     "threshold on the similarity to the closest example",
                                     elem_id="clip-threshold", info=tips["clip"]))
    per_class = ctx.add("per_class", gr.Textbox(s0.clip_per_class, label="per-class thresholds (class: value)",
                                                lines=2, elem_id="per-class", info=tips["per_class"]))
    pmf_on = ctx.add("pmf_on", gr.Checkbox(s0.pmf_enabled, label="PMF on", elem_id="pmf-on", info=tips["pmf_on"]))
    pmf_tau = ctx.add("pmf_tau", gr.Slider(0, 1, value=s0.pmf_threshold, step=0.01, label="PMF threshold τ",
                                           elem_id="pmf-threshold", info=tips["pmf_tau"]))
    pmf_k = ctx.add("pmf_k", gr.Slider(1, 32, value=s0.pmf_k, step=1, label="PMF K", elem_id="pmf-k",
                                       info=tips["pmf_k"]))
    lam = ctx.add("lambda", gr.Slider(0, 1, value=s0.memory_lambda, step=0.05, label="tracking λ", elem_id="lambda",
                                      info=tips["lambda"]))
    w = ctx.add("w", gr.Slider(0, 1, value=s0.embedding_weight, step=0.05, label="tracking w", elem_id="weight-w",
                               info=tips["w"]))
    cost = ctx.add("max_cost", gr.Slider(0, 2, value=s0.max_cost, step=0.05, label="max cost", elem_id="max-cost",
                                         info=tips["max_cost"]))
    ctx.add("apply", gr.Button("apply text settings", size="sm", elem_id="apply-settings"))
    ctx.settings[:] = [vocab, templates, pooling, obj, clip, per_class, pmf_on, pmf_tau, pmf_k, lam, w, cost]


# ----------------------------------------------------------------------------- callbacks
def on_settings(ctrl: AppController, st: ViewState, *vals: Any) -> Any:
    cfg = config_of(ctrl, vals)
    fv = views.frame_view(ctrl, st, cfg)
    ctrl.save_config(cfg)
    return (*view_values(fv), gr.Dropdown(choices=list(cfg.labeler.vocabulary)), "")


def on_pending(st: ViewState) -> Any:
    return ("<div class='uv-warn' id='settings-pending'>settings pending: press Enter or leave the box to apply "
            "(export waits until they apply)</div>")


def on_preset(ctrl: AppController, st: ViewState, preset: str | None, *vals: Any) -> Any:
    if not preset:
        return (*[gr.skip()] * 10, None)
    text = handlers.format_vocabulary(vocabulary_presets()[preset])
    cfg = config_of(ctrl, (text, *vals[1:]))
    fv = views.frame_view(ctrl, st, cfg)
    ctrl.save_config(cfg)
    return (*view_values(fv), text, gr.Dropdown(choices=list(cfg.labeler.vocabulary)), "",
            f"vocabulary: {PRESET_NAMES.get(preset, preset)} ({len(cfg.labeler.vocabulary)} classes)")


def wire(ctx: Context, after: Any) -> None:
    ctrl, S = ctx.ctrl, ctx.settings
    out = [*ctx.view, "relabel", "settings_msg"]
    fn = functools.partial(on_settings, ctrl)
    for name in ("objectness", "clip", "pmf_tau", "pmf_k", "lambda", "w", "max_cost", "pooling", "pmf_on"):
        # change: drag, click, arrow keys and typed values alike (release alone misses the keyboard)
        after(on(ctx, ctx[name].change, fn, ["state", *S], out, trigger_mode="always_last"))
    for name in ("vocabulary", "per_class"):
        after(on(ctx, ctx[name].submit, fn, ["state", *S], out))
    for name in ("vocabulary", "templates", "per_class"):
        after(on(ctx, ctx[name].blur, fn, ["state", *S], out, trigger_mode="always_last"))
        on(ctx, ctx[name].input, on_pending, ["state"], ["settings_msg"], touch_notice=False,
           trigger_mode="always_last")
    after(on(ctx, ctx["apply"].click, fn, ["state", *S], out))
    after(on(ctx, ctx["preset"].input, functools.partial(on_preset, ctrl), ["state", "preset", *S],
             [*ctx.view, "vocabulary", "relabel", "settings_msg"]))
