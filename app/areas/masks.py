"""Mask fixes: on the current frame, draw (brush) or erase a mask — to add an object the
proposer missed, or to fix the selected instance's mask — and save it as a curation
action with provenance (``draw``; a fix also rejects the original, so its old mask is
not exported). The drawn instance's embedding (for PMF and label by example) is computed
by a background job, never in the callback. Click-to-segment through SAM 2 is optional:
off, with a message, when its package or weights are absent."""
from __future__ import annotations

import functools
import importlib.util
from typing import Any

import gradio as gr
import numpy as np

from app import views
from app.shell import Context, config_of, on, view_values
from app.state import AppController, ViewState
from uvis import masks as mask_ops
from uvis.errors import BadInputError

MIN_PIXELS = 16
"""A drawn mask smaller than this (frame pixels) is refused as a stray stroke."""
MODES = ("add a missed object", "fix the selected instance")


def sam2_status() -> str:
    """Why click-to-segment is off (or that it could be on)."""
    if importlib.util.find_spec("sam2") is None:
        return ("Click-to-segment (SAM 2) is off: the `sam2` package is not installed here "
                "(`pip install sam2` and its checkpoint enable it). Draw with the brush instead.")
    return "Click-to-segment (SAM 2) is off: no SAM 2 checkpoint is configured. Draw with the brush instead."


def build(ctx: Context) -> None:
    ctx.add("mk_mode", gr.Radio(list(MODES), value=MODES[0], label="what to draw", elem_id="mask-mode",
                                info="Add: paint a new object. Fix: start from the selected instance's mask, "
                                     "paint or erase, then save (the original is rejected)."))
    ctx.add("mk_load", gr.Button("draw on this frame", size="sm", elem_id="mask-load"))
    ctx.add("mk_editor", gr.ImageEditor(type="numpy", sources=(), label="brush: paint the object; eraser: remove",
                                        elem_id="mask-editor", layers=False, transforms=(),
                                        brush=gr.Brush(colors=["#ffdd00"], default_size=12, color_mode="fixed"),
                                        eraser=gr.Eraser(default_size=12), height=360))
    ctx.add("mk_save", gr.Button("save the drawn mask (class from 'relabel as')", size="sm", variant="primary",
                                 elem_id="mask-save"))
    gr.Markdown(sam2_status(), elem_id="sam2-status")
    ctx.add("mk_ref", gr.State(None))


def drawn_mask(value: Any, shape: tuple[int, int]) -> np.ndarray:
    """The painted pixels of an editor value as an (H, W) bool mask at the frame size."""
    if not isinstance(value, dict):
        raise BadInputError("load the frame into the editor first ('draw on this frame')")
    layers = [np.asarray(x) for x in (value.get("layers") or []) if x is not None]
    if not layers:
        raise BadInputError("nothing drawn: paint the object with the brush")
    mask = np.zeros(shape, bool)
    for layer in layers:
        alpha = layer[..., 3] if layer.ndim == 3 and layer.shape[2] == 4 else layer.reshape(*layer.shape[:2], -1).max(-1)
        if alpha.shape != shape:
            import cv2

            alpha = cv2.resize(alpha.astype(np.uint8), (shape[1], shape[0]), interpolation=cv2.INTER_NEAREST)
        mask |= alpha > 0
    if int(mask.sum()) < MIN_PIXELS:
        raise BadInputError(f"the drawn mask has {int(mask.sum())} pixels: paint at least {MIN_PIXELS}")
    return mask


def on_load_editor(ctrl: AppController, st: ViewState, mode: str, *vals: Any) -> Any:
    if not st.video:
        raise BadInputError("no video")
    image = ctrl.frame_image(st.video, st.frame)
    layer = np.zeros((*image.shape[:2], 4), np.uint8)
    ref = None
    if mode == MODES[1]:
        video, t, i = views.selected_ref(st)
        row = ctrl.frame_rows(video, t).start + i
        m = mask_ops.decode(ctrl.project().caches[video].instances.masks[row])  # type: ignore[union-attr]
        if m.shape != image.shape[:2]:
            raise BadInputError("this instance's mask does not match the frame size; add a new object instead")
        layer[m] = (255, 221, 0, 255)
        ref = (t, i)
    value = {"background": image, "layers": [layer], "composite": None}
    what = f"instance {ref[1]} of frame {ref[0]}" if ref else f"a new object on frame {st.frame}"
    return value, (st.frame, ref), f"drawing {what}: paint or erase, then save"


def on_save(ctrl: AppController, st: ViewState, value: Any, ref: Any, label: str | None, *vals: Any) -> Any:
    if not st.video or ref is None:
        raise BadInputError("load the frame into the editor first ('draw on this frame')")
    frame, fix = ref
    image = ctrl.frame_image(st.video, int(frame))
    mask = drawn_mask(value, image.shape[:2])
    label = (label or "").strip() or None
    cfg = config_of(ctrl, vals)
    msg = ctrl.draw_instance(st.video, cfg, int(frame), mask, label, replaces=tuple(fix) if fix else None)
    fv = views.frame_view(ctrl, st, cfg)
    from app.areas.curation import history_html

    return (*view_values(fv), history_html(ctrl, st.video), msg)


def wire(ctx: Context) -> None:
    ctrl, S = ctx.ctrl, ctx.settings
    on(ctx, ctx["mk_load"].click, functools.partial(on_load_editor, ctrl), ["state", "mk_mode", *S],
       ["mk_editor", "mk_ref"])
    on(ctx, ctx["mk_save"].click, functools.partial(on_save, ctrl), ["state", "mk_editor", "mk_ref", "relabel", *S],
       [*ctx.view, "history"])
