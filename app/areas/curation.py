"""Curation: the selected instance's card, accept / reject / relabel (of the instance or,
in whole-track mode, of its track), merge / split, undo / redo, label-by-example
proposals and the history of curation actions in words (jump to, revert)."""
from __future__ import annotations

import functools
import html
from dataclasses import replace
from typing import Any

import gradio as gr

from app import handlers, views
from app.shell import Context, config_of, on, parse_command, view_values
from app.state import AppController, ViewState
from uvis.batch import SimilarProposal
from uvis.errors import BadInputError


def build(ctx: Context) -> None:
    cfg = ctx.options["init_cfg"]
    ctx.add("card", gr.HTML("", elem_id="instance-card-box", container=False, padding=False))
    with gr.Row(equal_height=True, elem_id="curation-row"):
        ctx.add("relabel", gr.Dropdown(choices=list(cfg.labeler.vocabulary), value=None, show_label=False,
                                       container=False, allow_custom_value=True, elem_id="relabel-choice", scale=3,
                                       min_width=120))
        ctx.add("relabel_btn", gr.Button("relabel as", size="sm", variant="primary", elem_id="relabel", scale=1,
                                         min_width=80))
        ctx.add("accept_btn", gr.Button("✔ accept", size="sm", elem_id="accept", scale=1, min_width=80))
        ctx.add("reject_btn", gr.Button("✖ reject", size="sm", elem_id="reject", scale=1, min_width=80))
    with gr.Row(equal_height=True, elem_id="track-row"):
        ctx.add("track_mode", gr.Checkbox(False, label="whole track", elem_id="track-mode", scale=0,
                                          min_width=150, container=False))
        ctx.add("mark_btn", gr.Button("mark", size="sm", elem_id="mark-merge", min_width=60))
        ctx.add("merge_btn", gr.Button("merge", size="sm", elem_id="merge", min_width=50))
        ctx.add("split_btn", gr.Button("split", size="sm", elem_id="split", min_width=60))
        ctx.add("undo_btn", gr.Button("↶", size="sm", elem_id="undo", min_width=36))
        ctx.add("redo_btn", gr.Button("↷", size="sm", elem_id="redo", min_width=36))


def build_similar(ctx: Context) -> None:
    with gr.Accordion("Label by example: instances similar to the selected one", open=False, elem_id="similar-box"):
        ctx.add("similar_md", gr.Markdown("Relabel or accept an instance to see similar instances here.",
                                          elem_id="similar-msg"))
        ctx.add("similar_tbl", gr.Dataframe(headers=["frame", "#", "similarity", "label", "decision"],
                                            interactive=False, elem_id="similar-table", max_height=240))
        with gr.Row(equal_height=False):
            ctx.add("similar_thr", gr.Slider(0.0, 1.0, value=0.8, step=0.01, label="minimum similarity", scale=3,
                                             info=ctx.options["tips"]["similar"]))
            ctx.add("apply_similar", gr.Button("apply the label to these", size="sm", scale=1,
                                               elem_id="apply-similar"))
        ctx.add("similar_state", gr.State([]))


def build_history(ctx: Context) -> None:
    ctx.add("history", gr.HTML("<i>no curation yet</i>", elem_id="history-list"))


# ----------------------------------------------------------------------------- words
def _where(payload: dict[str, Any]) -> tuple[int | None, str]:
    if "frame" in payload:
        return int(payload["frame"]), f"instance {payload.get('index', '?')} of frame {payload['frame']}"
    if "items" in payload:
        items = payload["items"]
        first = items[0] if items else [None, None]
        if len(items) == 1:
            return int(first[0]), f"instance {first[1]} of frame {first[0]}"
        return int(first[0]), f"{len(items)} instances ({payload.get('scope', 'batch')}, from frame {first[0]})"
    if "a" in payload:
        return int(payload["a"][0]), (f"the tracks of frame {payload['a'][0]} #{payload['a'][1]} and frame "
                                      f"{payload['b'][0]} #{payload['b'][1]}")
    if "at" in payload:
        return int(payload["at"][0]), f"the track before frame {payload['at'][0]} (#{payload['at'][1]})"
    return None, ""


_VERBS = {"accept": "accepted", "reject": "rejected", "relabel": "relabelled", "merge": "merged", "split": "split",
          "draw": "drew"}


def action_words(action: str, payload: dict[str, Any]) -> str:
    """One curation action in words, e.g. "rejected instance 3 of frame 57"."""
    _, where = _where(payload)
    verb = _VERBS.get(action, action)
    if action == "relabel":
        return f"{verb} {where} as {payload.get('label')}"
    if action == "draw":
        return f"drew an instance on frame {payload.get('frame')} ({payload.get('label') or 'no class'})"
    return f"{verb} {where}"


def history_html(ctrl: AppController, video: str | None) -> str:
    """The video's curation actions, newest first, in words, each with jump-to and revert
    (undone ones struck through)."""
    if not video:
        return "<i>no video</i>"
    log = ctrl.curation_log(video)
    active = {a.id for a in ctrl.ws.db.active(video)}
    items = []
    for a in reversed([a for a in log if a.action not in ("undo", "redo")]):
        frame, _ = _where(a.payload)
        undone = a.id not in active
        cls = " class='uv-undone'" if undone else ""
        jump = (f" <a href='javascript:void(0)' data-history='{a.id}' data-op='hjump'>go to frame {frame}</a>"
                if frame is not None else "")
        rev = "" if undone else f" · <a href='javascript:void(0)' data-history='{a.id}' data-op='revert'>revert</a>"
        items.append(f"<li{cls} id='history-{a.id}'>{html.escape(action_words(a.action, a.payload))}{jump}{rev}</li>")
    if not items:
        return "<i>no curation yet: accept (A), reject (X) or relabel (R) an instance</i>"
    return f"<div class='uv-hint'>{len(active)} active action(s), newest first</div><ol>{''.join(items)}</ol>"


# ----------------------------------------------------------------------------- callbacks
def similar_outputs(ctrl: AppController, st: ViewState, cfg: Any, label: str | None) -> tuple[str, list, list]:
    video, t, i = views.selected_ref(st)
    proposal = ctrl.propose_similar(video, cfg, t, i, label, k=12)
    res = ctrl.result(video, cfg)
    items = [(ctrl.frame_rows(video, f).start + j, f, j, s) for f, j, s in proposal.items]
    what = f"label **{label}**" if label else "the selected instance's label"
    msg = (f"Proposed: {what} for the {len(items)} most similar instances (cosine similarity of "
           f"embeddings). Choose a minimum similarity and apply, or click a row to inspect it.")
    return msg, handlers.similar_table(res, items), proposal


def _remember(st: ViewState, label: str) -> ViewState:
    recent = (label, *[c for c in st.recent if c != label])[:9]
    return replace(st, recent=recent)


def on_curate(ctrl: AppController, action: str, st: ViewState, label: str | None, track_mode: bool,
              *vals: Any) -> Any:
    """accept / reject / relabel the selection (or its whole track in track mode)."""
    cfg = config_of(ctrl, vals)
    video, t, i = views.selected_ref(st)
    vocab_update: Any = gr.skip()
    if track_mode:
        if st.track is None:
            raise BadInputError("the selected instance is not in a track (whole-track mode needs a kept, tracked "
                                "instance)")
        msg = ctrl.curate_track(video, cfg, t, i, action, (label or "").strip() or None).message  # type: ignore[union-attr]
        if action == "relabel" and label and label.strip() not in cfg.labeler.vocabulary:
            vocab_update = handlers.format_vocabulary([*cfg.labeler.vocabulary, label.strip()])
            cfg = config_of(ctrl, (vocab_update, *vals[1:]))
    elif action == "relabel":
        new_cfg = ctrl.relabel(video, t, i, label or "", cfg)
        if new_cfg is not cfg:
            vocab_update = handlers.format_vocabulary(new_cfg.labeler.vocabulary)
            cfg = new_cfg
        msg = f"relabelled instance {i} of frame {t} as {label.strip()}"  # type: ignore[union-attr]
    else:
        ctrl.curate(video, action, handlers.instance_payload(t, i))
        msg = f"{'accepted' if action == 'accept' else 'rejected'} instance {i} of frame {t}"
    if action == "relabel" and label:
        st = _remember(st, label.strip())
    fv = views.frame_view(ctrl, st, cfg)
    sim: tuple[Any, ...] = (gr.skip(), gr.skip(), gr.skip())
    if action in ("relabel", "accept") and not track_mode and fv.state.selected is not None:
        res = ctrl.result(video, cfg)
        lbl = label.strip() if action == "relabel" and label else handlers.class_name(
            res, int(res.instances.label[ctrl.frame_rows(video, t).start + i]))  # type: ignore[index]
        sim = similar_outputs(ctrl, fv.state, cfg, lbl)
    return (*view_values(fv), vocab_update, *sim, history_html(ctrl, video), msg)


def on_recent(ctrl: AppController, text_: str, st: ViewState, track_mode: bool, *vals: Any) -> Any:
    """Keys 1-9: relabel the selection as the k-th most recent class."""
    cmd = parse_command(text_)
    if cmd["op"] != "recent":
        return (*[gr.skip()] * 12, None)
    k = int(cmd.get("k", 0))
    if not 1 <= k <= len(st.recent):
        raise BadInputError(f"no recent class {k}: relabel with the class box first (R), then 1-9 repeat it"
                            f" ({len(st.recent)} recent)")
    return on_curate(ctrl, "relabel", st, st.recent[k - 1], track_mode, *vals)


def on_track_edit(ctrl: AppController, action: str, st: ViewState, *vals: Any) -> Any:
    cfg = config_of(ctrl, vals)
    video, t, i = views.selected_ref(st)
    if action == "mark":
        fv = views.frame_view(ctrl, replace(st, merge_mark=(t, i)), cfg)
        return (*view_values(fv), gr.skip(), f"marked instance {i} of frame {t}; select an instance of the other "
                "track, then 'merge'")
    if action == "merge":
        if st.merge_mark is None:
            raise BadInputError("mark an instance of the first track first ('mark for merge')")
        ctrl.curate(video, "merge", handlers.merge_payload(st.merge_mark, (t, i)))
        msg = f"merged the track of frame {st.merge_mark[0]} #{st.merge_mark[1]} with frame {t} #{i}"
        st = replace(st, merge_mark=None)
    else:
        ctrl.curate(video, "split", handlers.split_payload(t, i))
        msg = f"split the track before frame {t} (#{i} starts a new track)"
    return (*view_values(views.frame_view(ctrl, st, cfg)), history_html(ctrl, video), msg)


def on_undo(ctrl: AppController, redo: bool, st: ViewState, *vals: Any) -> Any:
    """Undo / redo, then show the frame the action changed."""
    if not st.video:
        raise BadInputError("no video")
    target = ctrl.redo_action(st.video) if redo else ctrl.undo_action(st.video)
    if target is None:
        return (*[gr.skip()] * 8, "nothing to redo" if redo else "nothing to undo")
    frame, _ = _where(target.payload)
    if frame is not None:
        st = replace(st, frame=frame)
    fv = views.frame_view(ctrl, st, config_of(ctrl, vals))
    verb = "redid" if redo else "undid"
    return (*view_values(fv), history_html(ctrl, st.video), f"{verb}: {action_words(target.action, target.payload)}")


def on_history_command(ctrl: AppController, text_: str, st: ViewState, *vals: Any) -> Any:
    """History links: ``hjump`` (go to the action's frame), ``revert`` (undo that action alone)."""
    cmd = parse_command(text_)
    if cmd["op"] not in ("hjump", "revert"):
        return (*[gr.skip()] * 8, None)
    if not st.video:
        raise BadInputError("no video")
    action = next((a for a in ctrl.curation_log(st.video) if a.id == int(cmd["id"])), None)
    if action is None:
        raise BadInputError(f"curation action {cmd['id']} is not in this video's history")
    msg = None
    if cmd["op"] == "revert":
        ctrl.revert(st.video, action.id)
        msg = f"reverted: {action_words(action.action, action.payload)}"
    frame, _ = _where(action.payload)
    fv = views.frame_view(ctrl, replace(st, frame=frame if frame is not None else st.frame, selected=None),
                          config_of(ctrl, vals))
    return (*view_values(fv), history_html(ctrl, st.video), msg)


def on_apply_similar(ctrl: AppController, st: ViewState, proposal: Any, thr: float, *vals: Any) -> Any:
    """Relabel the proposals at or above ``thr`` as ONE action (refused when stale)."""
    if not isinstance(proposal, SimilarProposal) or not st.video:
        raise BadInputError("no proposals: relabel or accept an instance first")
    cfg = config_of(ctrl, vals)
    msg = ctrl.apply_similar(st.video, cfg, proposal, float(thr)).message  # type: ignore[union-attr]
    fv = views.frame_view(ctrl, st, cfg)
    return (*view_values(fv), history_html(ctrl, st.video), f"{msg} (similarity ≥ {thr:.2f})")


def on_similar_select(ctrl: AppController, evt: gr.SelectData, st: ViewState, items: list, *vals: Any) -> Any:
    row = evt.index[0] if isinstance(evt.index, (list, tuple)) else evt.index
    f, i = int(items[row][0]), int(items[row][1])
    return view_values(views.select(ctrl, replace(st, frame=f, selected=i), config_of(ctrl, vals), i))


def on_table_select(ctrl: AppController, evt: gr.SelectData, st: ViewState, *vals: Any) -> Any:
    row = evt.index[0] if isinstance(evt.index, (list, tuple)) else evt.index
    return view_values(views.select(ctrl, st, config_of(ctrl, vals), int(row)))


# ----------------------------------------------------------------------------- wiring
def wire(ctx: Context, after: Any) -> None:
    """``after(event)`` chains the statistics refresh after a curation change."""
    ctrl, S = ctx.ctrl, ctx.settings
    cur_out = [*ctx.view, "vocabulary", "similar_md", "similar_tbl", "similar_state", "history"]
    for btn, action in (("accept_btn", "accept"), ("reject_btn", "reject"), ("relabel_btn", "relabel")):
        after(on(ctx, ctx[btn].click, functools.partial(on_curate, ctrl, action),
                 ["state", "relabel", "track_mode", *S], cur_out))
    after(on(ctx, ctx["cmd_run"].click, functools.partial(on_recent, ctrl), ["cmd", "state", "track_mode", *S],
             cur_out))
    track_out = [*ctx.view, "history"]
    for btn, action in (("mark_btn", "mark"), ("merge_btn", "merge"), ("split_btn", "split")):
        after(on(ctx, ctx[btn].click, functools.partial(on_track_edit, ctrl, action), ["state", *S], track_out))
    after(on(ctx, ctx["undo_btn"].click, functools.partial(on_undo, ctrl, False), ["state", *S], track_out))
    after(on(ctx, ctx["redo_btn"].click, functools.partial(on_undo, ctrl, True), ["state", *S], track_out))
    after(on(ctx, ctx["cmd_run"].click, functools.partial(on_history_command, ctrl), ["cmd", "state", *S],
             track_out))
    after(on(ctx, ctx["apply_similar"].click, functools.partial(on_apply_similar, ctrl),
             ["state", "similar_state", "similar_thr", *S], track_out))
    on(ctx, ctx["similar_tbl"].select, functools.partial(on_similar_select, ctrl), ["state", "similar_state", *S],
       ctx.view)
    on(ctx, ctx["table"].select, functools.partial(on_table_select, ctrl), ["state", *S], ctx.view)


__all__ = ["build", "build_similar", "build_history", "wire", "history_html", "action_words"]
