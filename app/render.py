"""The four panels of one frame, drawn with OpenCV on numpy images.

All inputs are one frame's rows of a :class:`~uvis.decide.VideoResult`; images are RGB
uint8 (H, W, 3). Frames are upscaled to ``width`` pixels before drawing (nearest
masks, area/linear image) so labels stay legible; :attr:`FrameLayers.scale` maps a
click on a panel back to frame pixels (``frame_xy = panel_xy / scale``).

Panels (DESIGN §1, issue 4):
    (a) proposals: every instance, a colour per instance, ``i:`` and objectness;
    (b) label scores: coloured by label, ``i: label score``; an inset with the selected
        instance's top-5 classes (bars) and closest prompt;
    (c) decisions: coloured by reason (:data:`REASON_COLOURS`), dropped ones faint,
        ``i: reason similarity``;
    (d) pseudo-labels: kept instances only, coloured by track id, ``T<id> label``.
The selected instance gets a thick yellow outline in every panel; the others dim.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from uvis import masks as mask_ops
from uvis.decide import VideoResult
from uvis.types import Reason

PALETTE: tuple[tuple[int, int, int], ...] = (
    (31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75),
    (227, 119, 194), (188, 189, 34), (23, 190, 207), (174, 199, 232), (255, 187, 120), (152, 223, 138),
    (255, 152, 150), (197, 176, 213), (196, 156, 148), (247, 182, 210), (219, 219, 141), (158, 218, 229),
    (57, 59, 121), (99, 121, 57),
)
"""Qualitative RGB colours (tab20 order)."""

REASON_COLOURS: dict[Reason, tuple[int, int, int]] = {
    Reason.KEPT: (46, 204, 113),
    Reason.OBJECTNESS: (149, 165, 166),
    Reason.CLIP_SCORE: (243, 156, 18),
    Reason.PMF: (155, 89, 182),
    Reason.USER_REJECT: (231, 76, 60),
}
"""RGB colour of each decision reason (kept green, objectness grey, CLIP orange, PMF purple, user red)."""

REASON_LABELS: dict[Reason, str] = {
    Reason.KEPT: "kept", Reason.OBJECTNESS: "objectness", Reason.CLIP_SCORE: "CLIP score",
    Reason.PMF: "PMF", Reason.USER_REJECT: "user reject",
}
SELECT_COLOUR = (255, 221, 0)
FONT = cv2.FONT_HERSHEY_SIMPLEX


def colour_for(key: int) -> tuple[int, int, int]:
    """A stable palette colour for an integer key (instance index, class or track id)."""
    if key < 0:
        return (200, 200, 200)
    return PALETTE[(key * 7) % len(PALETTE)]


@dataclass
class FrameLayers:
    """One frame prepared for drawing: upscaled image and masks, the frame's rows.

    Attributes:
        image: (H', W', 3) uint8 RGB, the frame at the panel size.
        masks: n (H', W') bool masks of the frame's instances, in frame order.
        boxes: (n, 4) float32 xyxy at panel pixels.
        rows: the frame's row indices into ``result.instances``.
        scale: panel pixels per frame pixel.
    """

    image: np.ndarray
    masks: list[np.ndarray]
    boxes: np.ndarray
    rows: np.ndarray
    scale: float
    result: VideoResult
    frame: int


def prepare(frame: np.ndarray, result: VideoResult, t: int, rows: slice, width: int = 640) -> FrameLayers:
    """Upscale ``frame`` (H, W, 3) to ``width`` and decode the masks of ``rows`` (frame t's rows)."""
    h, w = frame.shape[:2]
    scale = max(1.0, width / float(w))
    size = (int(round(w * scale)), int(round(h * scale)))
    image = frame if scale == 1.0 else cv2.resize(frame, size, interpolation=cv2.INTER_LINEAR)
    idx = np.arange(rows.start, rows.stop)
    inst = result.instances
    masks = []
    for r in idx:
        m = mask_ops.decode(inst.masks[r]).astype(np.uint8)
        if m.shape != (h, w):  # mask size differs from the displayed frame: fit it
            m = cv2.resize(m, (w, h), interpolation=cv2.INTER_NEAREST)
        if scale != 1.0:
            m = cv2.resize(m, size, interpolation=cv2.INTER_NEAREST)
        masks.append(m.astype(bool))
    boxes = inst.boxes[idx].astype(np.float32) * scale if len(idx) else np.zeros((0, 4), np.float32)
    return FrameLayers(np.ascontiguousarray(image), masks, boxes, idx, scale, result, t)


# ----------------------------------------------------------------------------- primitives
def _fill(canvas: np.ndarray, mask: np.ndarray, colour: tuple[int, int, int], alpha: float) -> None:
    if alpha <= 0 or not mask.any():
        return
    sel = canvas[mask].astype(np.float32)
    canvas[mask] = (sel * (1 - alpha) + np.asarray(colour, np.float32) * alpha).astype(np.uint8)


def _outline(canvas: np.ndarray, mask: np.ndarray, colour: tuple[int, int, int], thickness: int) -> None:
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    cv2.drawContours(canvas, contours, -1, colour, thickness, cv2.LINE_AA)


def _box(canvas: np.ndarray, box: np.ndarray, colour: tuple[int, int, int], thickness: int,
         dashed: bool = False) -> None:
    x0, y0, x1, y1 = (int(round(v)) for v in box)
    if not dashed:
        cv2.rectangle(canvas, (x0, y0), (x1, y1), colour, thickness, cv2.LINE_AA)
        return
    for (a, b) in (((x0, y0), (x1, y0)), ((x1, y0), (x1, y1)), ((x1, y1), (x0, y1)), ((x0, y1), (x0, y0))):
        length = math.hypot(b[0] - a[0], b[1] - a[1])
        steps = max(1, int(length // 6))
        for s in range(0, steps, 2):
            p = (int(a[0] + (b[0] - a[0]) * s / steps), int(a[1] + (b[1] - a[1]) * s / steps))
            q = (int(a[0] + (b[0] - a[0]) * min(s + 1, steps) / steps),
                 int(a[1] + (b[1] - a[1]) * min(s + 1, steps) / steps))
            cv2.line(canvas, p, q, colour, thickness, cv2.LINE_AA)


def _text_colour(bg: tuple[int, int, int]) -> tuple[int, int, int]:
    lum = 0.299 * bg[0] + 0.587 * bg[1] + 0.114 * bg[2]
    return (0, 0, 0) if lum > 150 else (255, 255, 255)


def _tag(canvas: np.ndarray, box: np.ndarray, text: str, colour: tuple[int, int, int],
         scale: float = 0.45) -> None:
    """A filled label at the box's top-left corner (inside the image)."""
    (tw, th), base = cv2.getTextSize(text, FONT, scale, 1)
    h, w = canvas.shape[:2]
    x = int(np.clip(box[0], 0, max(0, w - tw - 4)))
    y = int(box[1]) - th - base - 3
    if y < 0:
        y = int(np.clip(box[1], 0, max(0, h - th - base - 3)))
    cv2.rectangle(canvas, (x, y), (x + tw + 4, y + th + base + 3), colour, -1)
    cv2.putText(canvas, text, (x + 2, y + th + 1), FONT, scale, _text_colour(colour), 1, cv2.LINE_AA)


def _caption(canvas: np.ndarray, text: str) -> None:
    """A dark caption bar at the bottom-left (frame-level facts)."""
    (tw, th), base = cv2.getTextSize(text, FONT, 0.5, 1)
    h = canvas.shape[0]
    overlay = canvas.copy()
    cv2.rectangle(overlay, (0, h - th - base - 8), (tw + 10, h), (20, 20, 20), -1)
    cv2.addWeighted(overlay, 0.7, canvas, 0.3, 0, dst=canvas)
    cv2.putText(canvas, text, (5, h - base - 4), FONT, 0.5, (255, 255, 255), 1, cv2.LINE_AA)


def _dim(image: np.ndarray, amount: float = 0.35) -> np.ndarray:
    return (image.astype(np.float32) * (1 - amount)).astype(np.uint8)


# ----------------------------------------------------------------------------- panels
def _draw(layers: FrameLayers, selected: int | None, style) -> np.ndarray:  # type: ignore[no-untyped-def]
    """Common loop: ``style(i, row) -> (colour, alpha, thickness, dashed, tag or None, visible)``."""
    canvas = layers.image.copy()
    order = list(range(len(layers.rows)))
    if selected is not None and 0 <= selected < len(order):
        order.remove(selected)
        order.append(selected)  # draw the selected instance last (on top)
    for i in order:
        colour, alpha, thick, dashed, tag, visible = style(i, int(layers.rows[i]))
        if not visible:
            continue
        if selected is not None and i != selected:
            alpha *= 0.5
        _fill(canvas, layers.masks[i], colour, alpha)
        _outline(canvas, layers.masks[i], colour, thick)
        _box(canvas, layers.boxes[i], colour, 1, dashed)
        if tag:
            _tag(canvas, layers.boxes[i], tag, colour)
    if selected is not None and 0 <= selected < len(layers.rows):
        _outline(canvas, layers.masks[selected], SELECT_COLOUR, 4)
        _box(canvas, layers.boxes[selected], SELECT_COLOUR, 2)
    return canvas


def proposals_panel(layers: FrameLayers, selected: int | None = None) -> np.ndarray:
    """(a) every proposal: mask, box, ``index:`` and objectness."""
    obj = layers.result.instances.objectness

    def style(i: int, row: int):  # type: ignore[no-untyped-def]
        return colour_for(i), 0.4, 2, False, f"{i}: {obj[row]:.2f}", True

    canvas = _draw(layers, selected, style)
    _caption(canvas, f"frame {layers.frame}: {len(layers.rows)} proposals")
    return canvas


def class_name(result: VideoResult, label: int) -> str:
    """Vocabulary name of a label index ("unlabelled" for -1)."""
    return result.vocabulary[label] if 0 <= label < len(result.vocabulary) else "unlabelled"


def scores_panel(layers: FrameLayers, selected: int | None = None) -> np.ndarray:
    """(b) label and CLIP score per instance; the selected instance's top-5 in an inset."""
    res = layers.result
    inst = res.instances
    assert inst.label is not None and inst.clip_score is not None

    def style(i: int, row: int):  # type: ignore[no-untyped-def]
        lbl = int(inst.label[row])
        return (colour_for(lbl), 0.4, 2, False,
                f"{i}: {class_name(res, lbl)} {inst.clip_score[row]:.2f}", True)

    canvas = _draw(layers, selected, style)
    if selected is not None and 0 <= selected < len(layers.rows):
        _top5_inset(canvas, res, int(layers.rows[selected]), selected)
    else:
        _caption(canvas, "click an instance for its top-5 classes")
    return canvas


def prompt_text(result: VideoResult, row: int) -> str:
    """The closest prompt of an instance ("(by example)" when labels came from exemplars)."""
    assert result.instances.best_prompt is not None
    p = int(result.instances.best_prompt[row])
    if 0 <= p < len(result.prompts):
        return result.prompts[p]
    return "(labelled by example)" if int(result.instances.label[row]) >= 0 else "(no label)"  # type: ignore[index]


def _top5_inset(canvas: np.ndarray, res: VideoResult, row: int, index: int) -> None:
    classes, probs = res.top_classes[row], res.top_probs[row]
    lines = [(class_name(res, int(c)), float(p)) for c, p in zip(classes, probs) if p > 0 or int(c) >= 0]
    h, w = canvas.shape[:2]
    box_w, line_h = min(w - 10, 300), 18
    box_h = 26 + line_h * max(1, len(lines)) + 20
    x0, y0 = w - box_w - 5, 5
    overlay = canvas.copy()
    cv2.rectangle(overlay, (x0, y0), (x0 + box_w, y0 + box_h), (25, 25, 35), -1)
    cv2.addWeighted(overlay, 0.82, canvas, 0.18, 0, dst=canvas)
    cv2.putText(canvas, f"instance {index}: top-{len(lines)} classes", (x0 + 6, y0 + 17), FONT, 0.48,
                SELECT_COLOUR, 1, cv2.LINE_AA)
    bar_x, bar_w = x0 + 120, box_w - 170
    for k, (name, p) in enumerate(lines):
        y = y0 + 26 + k * line_h
        cv2.putText(canvas, name[:15], (x0 + 6, y + 13), FONT, 0.42, (235, 235, 235), 1, cv2.LINE_AA)
        cv2.rectangle(canvas, (bar_x, y + 3), (bar_x + bar_w, y + 14), (70, 70, 80), -1)
        cv2.rectangle(canvas, (bar_x, y + 3), (bar_x + int(bar_w * max(0.0, min(1.0, p))), y + 14),
                      colour_for(int(res.top_classes[row][k])), -1)
        cv2.putText(canvas, f"{p:.2f}", (bar_x + bar_w + 6, y + 13), FONT, 0.42, (235, 235, 235), 1, cv2.LINE_AA)
    prompt = prompt_text(res, row)
    cv2.putText(canvas, f'"{prompt[:38]}"', (x0 + 6, y0 + box_h - 7), FONT, 0.4, (180, 220, 255), 1,
                cv2.LINE_AA)


def decisions_panel(layers: FrameLayers, selected: int | None = None) -> np.ndarray:
    """(c) kept vs dropped, coloured by reason, with the deciding similarity."""
    inst = layers.result.instances
    assert inst.decision is not None and inst.similarity is not None
    user = layers.result.user

    def style(i: int, row: int):  # type: ignore[no-untyped-def]
        reason = Reason(int(inst.decision[row]))
        sim = float(inst.similarity[row])
        value = "" if math.isnan(sim) else f" {sim:.2f}"
        mark = "*" if user[row] else ""
        kept = reason == Reason.KEPT
        return (REASON_COLOURS[reason], 0.45 if kept else 0.25, 2 if kept else 1, not kept,
                f"{i}{mark}: {REASON_LABELS[reason]}{value}", True)

    canvas = _draw(layers, selected, style)
    kept = int((inst.decision[layers.rows] == Reason.KEPT).sum()) if len(layers.rows) else 0
    _caption(canvas, f"kept {kept} / dropped {len(layers.rows) - kept}")
    return canvas


def tracks_panel(layers: FrameLayers, selected: int | None = None) -> np.ndarray:
    """(d) the final pseudo-labels: kept instances coloured by track id."""
    res = layers.result
    inst = res.instances
    assert inst.decision is not None and inst.track_id is not None
    track_label = res.track_labels()

    def style(i: int, row: int):  # type: ignore[no-untyped-def]
        kept = int(inst.decision[row]) == Reason.KEPT
        tid = int(inst.track_id[row])
        lbl = track_label.get(tid, int(inst.label[row]))  # type: ignore[index]
        return colour_for(tid if tid >= 0 else 10_000 + i), 0.5, 2, False, f"T{tid} {class_name(res, lbl)}", kept

    canvas = _draw(layers, selected, style)
    n_kept = int((inst.decision[layers.rows] == Reason.KEPT).sum()) if len(layers.rows) else 0
    _caption(canvas, f"{n_kept} pseudo-labels")
    return canvas


def render_panels(frame: np.ndarray, result: VideoResult, t: int, rows: slice, selected: int | None = None,
                  width: int = 640) -> tuple[list[np.ndarray], float]:
    """The four panels of frame ``t`` and the panel scale (panel px per frame px)."""
    layers = prepare(frame, result, t, rows, width)
    panels = [proposals_panel(layers, selected), scores_panel(layers, selected),
              decisions_panel(layers, selected), tracks_panel(layers, selected)]
    return panels, layers.scale


def placeholder(width: int, height: int, text: str) -> np.ndarray:
    """A grey panel with a centred message (no video yet, labelling in progress, ...)."""
    canvas = np.full((height, width, 3), 48, np.uint8)
    for k, line in enumerate(text.split("\n")):
        (tw, th), _ = cv2.getTextSize(line, FONT, 0.6, 1)
        y = height // 2 - 10 + k * (th + 10)
        cv2.putText(canvas, line, ((width - tw) // 2, y), FONT, 0.6, (220, 220, 220), 1, cv2.LINE_AA)
    return canvas
