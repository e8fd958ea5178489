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
from uvis.types import Instances, Reason

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


@dataclass(frozen=True)
class MaskPiece:
    """One instance's mask cropped to its extent: ``mask`` (h, w) bool placed at (y0, x0) of the panel."""

    y0: int
    x0: int
    mask: np.ndarray

    @property
    def empty(self) -> bool:
        return self.mask.size == 0 or not self.mask.any()

    def contains(self, x: int, y: int) -> bool:
        h, w = self.mask.shape
        return 0 <= y - self.y0 < h and 0 <= x - self.x0 < w and bool(self.mask[y - self.y0, x - self.x0])


@dataclass
class PreparedFrame:
    """One frame made ready for drawing, independent of decisions (so it can be reused
    across threshold changes).

    Attributes:
        image: (H', W', 3) uint8 RGB, the frame at the panel size.
        masks: n :class:`MaskPiece` of the frame's instances at panel pixels, in frame order.
        boxes: (n, 4) float32 xyxy at panel pixels.
        rows: (n,) the frame's row indices into the video's instance table.
        scale: panel pixels per frame pixel.
    """

    image: np.ndarray
    masks: list[MaskPiece]
    boxes: np.ndarray
    rows: np.ndarray
    scale: float


@dataclass
class FrameLayers:
    """A :class:`PreparedFrame` with the decisions to draw (``result``) and its frame index."""

    prepared: PreparedFrame
    result: VideoResult
    frame: int

    @property
    def image(self) -> np.ndarray:
        return self.prepared.image

    @property
    def masks(self) -> list[MaskPiece]:
        return self.prepared.masks

    @property
    def boxes(self) -> np.ndarray:
        return self.prepared.boxes

    @property
    def rows(self) -> np.ndarray:
        return self.prepared.rows

    @property
    def scale(self) -> float:
        return self.prepared.scale


def _piece(mask: np.ndarray, scale: float, out_hw: tuple[int, int]) -> MaskPiece:
    """Crop a (H, W) bool mask to its extent and scale it to panel pixels (nearest)."""
    ys = np.flatnonzero(mask.any(axis=1))
    if not len(ys):
        return MaskPiece(0, 0, np.zeros((0, 0), bool))
    xs = np.flatnonzero(mask.any(axis=0))
    y0, y1, x0, x1 = int(ys[0]), int(ys[-1]) + 1, int(xs[0]), int(xs[-1]) + 1
    crop = mask[y0:y1, x0:x1]
    if scale == 1.0:
        return MaskPiece(y0, x0, crop)
    h_out, w_out = out_hw
    sy0, sx0 = int(round(y0 * scale)), int(round(x0 * scale))
    sy1, sx1 = min(h_out, max(sy0 + 1, int(round(y1 * scale)))), min(w_out, max(sx0 + 1, int(round(x1 * scale))))
    scaled = cv2.resize(crop.astype(np.uint8), (sx1 - sx0, sy1 - sy0), interpolation=cv2.INTER_NEAREST)
    return MaskPiece(sy0, sx0, scaled.astype(bool))


def prepare(frame: np.ndarray, instances: Instances, rows: slice, width: int = 640) -> PreparedFrame:
    """Upscale ``frame`` (H, W, 3) to ``width`` px and decode the masks of ``rows`` (one frame's rows
    of ``instances``, whose boxes and masks are in ``frame``'s pixels)."""
    h, w = frame.shape[:2]
    scale = max(1.0, width / float(w))
    size = (int(round(w * scale)), int(round(h * scale)))
    image = frame if scale == 1.0 else cv2.resize(frame, size, interpolation=cv2.INTER_LINEAR)
    idx = np.arange(rows.start, rows.stop)
    masks = []
    for r in idx:
        m = mask_ops.decode(instances.masks[r])
        if m.shape != (h, w):  # mask size differs from the displayed frame: fit it
            m = cv2.resize(m.astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST).astype(bool)
        masks.append(_piece(m, scale, (size[1], size[0])))
    boxes = instances.boxes[idx].astype(np.float32) * scale if len(idx) else np.zeros((0, 4), np.float32)
    return PreparedFrame(np.ascontiguousarray(image), masks, boxes, idx, scale)


# ----------------------------------------------------------------------------- primitives
def _fill(canvas: np.ndarray, piece: MaskPiece, colour: tuple[int, int, int], alpha: float) -> None:
    if alpha <= 0 or piece.empty:
        return
    h, w = piece.mask.shape
    region = canvas[piece.y0:piece.y0 + h, piece.x0:piece.x0 + w]
    m = piece.mask[:region.shape[0], :region.shape[1]]
    tint = np.empty_like(region)
    tint[:] = colour
    blended = cv2.addWeighted(region, 1.0 - alpha, tint, alpha, 0.0)
    np.copyto(region, blended, where=m[..., None])


def _outline(canvas: np.ndarray, piece: MaskPiece, colour: tuple[int, int, int], thickness: int) -> None:
    if piece.empty:
        return
    contours, _ = cv2.findContours(piece.mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE,
                                   offset=(piece.x0, piece.y0))
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


def _shade(canvas: np.ndarray, x0: int, y0: int, x1: int, y1: int, colour: tuple[int, int, int],
           opacity: float) -> None:
    """Blend a filled rectangle into ``canvas`` (in place, only that region)."""
    h, w = canvas.shape[:2]
    x0, y0, x1, y1 = max(0, x0), max(0, y0), min(w, x1), min(h, y1)
    if x1 <= x0 or y1 <= y0:
        return
    region = canvas[y0:y1, x0:x1]
    tint = np.empty_like(region)
    tint[:] = colour
    cv2.addWeighted(tint, opacity, region, 1.0 - opacity, 0.0, dst=region)


def _caption(canvas: np.ndarray, text: str) -> None:
    """A dark caption bar at the bottom-left (frame-level facts)."""
    (tw, th), base = cv2.getTextSize(text, FONT, 0.5, 1)
    h = canvas.shape[0]
    _shade(canvas, 0, h - th - base - 8, tw + 10, h, (20, 20, 20), 0.7)
    cv2.putText(canvas, text, (5, h - base - 4), FONT, 0.5, (255, 255, 255), 1, cv2.LINE_AA)


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
    lines = [(class_name(res, int(c)), float(p)) for c, p in zip(classes, probs) if p >= 5e-4]
    h, w = canvas.shape[:2]
    box_w, line_h = min(w - 10, 300), 18
    box_h = 26 + line_h * max(1, len(lines)) + 20
    x0, y0 = w - box_w - 5, 5
    _shade(canvas, x0, y0, x0 + box_w, y0 + box_h, (25, 25, 35), 0.82)
    cv2.putText(canvas, f"instance {index}: top-{len(lines)} classes", (x0 + 6, y0 + 17), FONT, 0.48,
                SELECT_COLOUR, 1, cv2.LINE_AA)
    bar_x, bar_w = x0 + 120, box_w - 170
    for k, (name, p) in enumerate(lines):
        y = y0 + 26 + k * line_h
        cv2.putText(canvas, name[:15], (x0 + 6, y + 13), FONT, 0.42, (235, 235, 235), 1, cv2.LINE_AA)
        cv2.rectangle(canvas, (bar_x, y + 3), (bar_x + bar_w, y + 14), (70, 70, 80), -1)
        cv2.rectangle(canvas, (bar_x, y + 3), (bar_x + int(bar_w * max(0.0, min(1.0, p))), y + 14),
                      colour_for(int(classes[k])), -1)
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

    def style(i: int, row: int):  # type: ignore[no-untyped-def]
        kept = int(inst.decision[row]) == Reason.KEPT
        tid = int(inst.track_id[row])
        lbl = int(res.classes[row])  # the class as exported (uvis.curation.instance_classes)
        return colour_for(tid if tid >= 0 else 10_000 + i), 0.5, 2, False, f"T{tid} {class_name(res, lbl)}", kept

    canvas = _draw(layers, selected, style)
    n_kept = int((inst.decision[layers.rows] == Reason.KEPT).sum()) if len(layers.rows) else 0
    _caption(canvas, f"{n_kept} pseudo-labels")
    return canvas


def render_panels(prepared: PreparedFrame, result: VideoResult, t: int,
                  selected: int | None = None) -> list[np.ndarray]:
    """The four panels (a)-(d) of frame ``t`` under the decisions ``result``."""
    layers = FrameLayers(prepared, result, t)
    return [proposals_panel(layers, selected), scores_panel(layers, selected),
            decisions_panel(layers, selected), tracks_panel(layers, selected)]


def placeholder(width: int, height: int, text: str) -> np.ndarray:
    """A grey panel with a centred message (no video yet, labelling in progress, ...)."""
    canvas = np.full((height, width, 3), 48, np.uint8)
    for k, line in enumerate(text.split("\n")):
        (tw, th), _ = cv2.getTextSize(line, FONT, 0.6, 1)
        y = height // 2 - 10 + k * (th + 10)
        cv2.putText(canvas, line, ((width - tw) // 2, y), FONT, 0.6, (220, 220, 220), 1, cv2.LINE_AA)
    return canvas
