"""Review queues: pick a queue (dropped by PMF, dropped by score but high objectness,
low-confidence kept, short tracks, curated by me, unlabelled) over this video or the
whole project, see its instances as a gallery of crops, select several (click) and
accept / reject / relabel them as one action (one undo step); ↗ on a crop goes to its
frame. The queues' rules live in :mod:`uvis.review`."""
from __future__ import annotations

import functools
import html
from typing import Any

import cv2
import gradio as gr
import numpy as np

from app import views
from app.canvas import jpeg_data_uri
from app.render import class_name
from app.shell import Context, config_of, on, view_values
from app.state import AppController, ViewState
from uvis import masks as mask_ops
from uvis.errors import BadInputError
from uvis.review import QUEUES, ReviewItem, review_items

THUMB = (112, 84)


def build(ctx: Context) -> None:
    with gr.Row(equal_height=True):
        ctx.add("rv_queue", gr.Dropdown([(v, k) for k, v in QUEUES.items()], value="dropped_pmf", label="queue",
                                        elem_id="review-queue", scale=3))
        ctx.add("rv_scope", gr.Radio(["this video", "whole project"], value="this video", label="over",
                                     elem_id="review-scope", scale=2))
    ctx.add("rv_load", gr.Button("show the queue", size="sm", elem_id="review-load"))
    ctx.add("rv_gallery", gr.HTML("<i>choose a queue</i>", elem_id="review-gallery"))
    ctx.add("rv_sel", gr.Textbox("", elem_id="review-selection", elem_classes="uv-hidden", show_label=False,
                                 container=False))
    with gr.Row(equal_height=True):
        ctx.add("rv_accept", gr.Button("accept selected", size="sm", elem_id="review-accept"))
        ctx.add("rv_reject", gr.Button("reject selected", size="sm", elem_id="review-reject"))
        ctx.add("rv_relabel", gr.Button("relabel selected as the class above", size="sm", elem_id="review-relabel"))


def thumbnail(image: np.ndarray, box: np.ndarray, rle: Any) -> np.ndarray:
    """A crop around ``box`` (xyxy, frame pixels) with the mask outlined, fitted to :data:`THUMB`."""
    h, w = image.shape[:2]
    x0, y0, x1, y1 = (float(v) for v in box)
    pad = 0.15 * max(x1 - x0, y1 - y0) + 4
    a, b = int(max(0, x0 - pad)), int(max(0, y0 - pad))
    c, d = int(min(w, x1 + pad + 1)), int(min(h, y1 + pad + 1))
    crop = np.ascontiguousarray(image[b:d, a:c])
    m = mask_ops.decode(rle)
    if m.shape == (h, w):
        contours, _ = cv2.findContours(np.ascontiguousarray(m[b:d, a:c]).astype(np.uint8), cv2.RETR_EXTERNAL,
                                       cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(crop, contours, -1, (255, 221, 0), 1, cv2.LINE_AA)
    s = min(THUMB[0] / max(1, crop.shape[1]), THUMB[1] / max(1, crop.shape[0]))
    return cv2.resize(crop, (max(1, int(crop.shape[1] * s)), max(1, int(crop.shape[0] * s))),
                      interpolation=cv2.INTER_AREA)


def gallery_html(ctrl: AppController, items: list[ReviewItem], total: int, results: dict, queue: str) -> str:
    cells = []
    for it in items:
        res = results[it.video]
        inst = res.instances
        img = thumbnail(ctrl.frame_image(it.video, it.frame), inst.boxes[it.row], inst.masks[it.row])
        label = class_name(res, int(inst.label[it.row]))  # type: ignore[index]
        cells.append(f"<div class='uv-crop' data-key='{html.escape(it.key)}' data-video='{html.escape(it.video)}' "
                     f"data-frame='{it.frame}' data-index='{it.index}'><img src='{jpeg_data_uri(img)}'>"
                     f"<span class='uv-go' title='go to its frame'>↗</span><div>{html.escape(label)} "
                     f"{float(inst.clip_score[it.row]):.2f}</div><div class='uv-hint'>f{it.frame} #{it.index}"  # type: ignore[index]
                     f"</div></div>")
    head = (f"<div id='review-summary'>{QUEUES[queue]}: {total} instance{'s' if total != 1 else ''}"
            f"{f', first {len(items)} shown' if total > len(items) else ''} · click crops to select, ↗ to go to "
            f"the frame · <span id='review-count'>0 selected</span></div>")
    return head + f"<div class='uv-crops'>{''.join(cells) or '<i>nothing in this queue</i>'}</div>"


def _results(ctrl: AppController, st: ViewState, scope: str, cfg: Any) -> dict:
    if scope == "whole project":
        return ctrl.decide_all(cfg)
    if not st.video:
        raise BadInputError("no video")
    return {st.video: ctrl.result(st.video, cfg)}


def on_load_queue(ctrl: AppController, st: ViewState, queue: str, scope: str, *vals: Any) -> Any:
    cfg = config_of(ctrl, vals)
    results = _results(ctrl, st, scope, cfg)
    items, total = review_items(results, queue)
    return gallery_html(ctrl, items, total, results, queue), ""


def on_batch(ctrl: AppController, action: str, st: ViewState, keys: str, label: str | None, queue: str,
             scope: str, *vals: Any) -> Any:
    """One action over the selected crops (per video: one log row, one undo step each)."""
    cfg = config_of(ctrl, vals)
    by_video: dict[str, list[tuple[int, int]]] = {}
    for key in (keys or "").split("\n"):
        if key.strip():
            video, f, i = key.rsplit("|", 2)
            by_video.setdefault(video, []).append((int(f), int(i)))
    if not by_video:
        raise BadInputError("select crops first (click them)")
    if action == "relabel" and not (label or "").strip():
        raise BadInputError("choose a class in 'relabel as' first")
    msgs = [ctrl.curate_refs(video, cfg, refs, action, (label or "").strip() or None).message
            for video, refs in by_video.items()]
    results = _results(ctrl, st, scope, cfg)
    items, total = review_items(results, queue)
    fv = views.frame_view(ctrl, st, cfg)
    from app.areas.curation import history_html

    return (*view_values(fv), gallery_html(ctrl, items, total, results, queue), "", history_html(ctrl, st.video),
            "; ".join(msgs))


def wire(ctx: Context) -> None:
    ctrl, S = ctx.ctrl, ctx.settings
    on(ctx, ctx["rv_load"].click, functools.partial(on_load_queue, ctrl), ["state", "rv_queue", "rv_scope", *S],
       ["rv_gallery", "rv_sel"])
    for btn, action in (("rv_accept", "accept"), ("rv_reject", "reject"), ("rv_relabel", "relabel")):
        on(ctx, ctx[btn].click, functools.partial(on_batch, ctrl, action),
           ["state", "rv_sel", "relabel", "rv_queue", "rv_scope", *S],
           [*ctx.view, "rv_gallery", "rv_sel", "history"])
