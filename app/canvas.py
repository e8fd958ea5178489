"""The page's canvas: drawn panels as HTML with sharp, non-overlapping tags and hover details.

The images (masks, outlines, boxes) come from :mod:`app.render`; text is laid out here
as HTML over each image, in percent of the image so it scales with the page:

* tags use a monospace font sized in container units (``font_frac`` of the panel width),
  so their extent in image pixels is known and :func:`place_tags` can place every tag
  inside the image without overlapping another; a tag that finds no free place is left
  to the hover details (the caption says how many);
* every instance has a hit area (its box; smaller boxes on top) carrying its details,
  shown on hover, and ``data-pick`` = its index in the frame (a click selects it, see
  :data:`app.text.PAGE_JS`).

Layouts: ``grid`` (2×2), ``focus`` (one panel large at full resolution, the other three
beside it) and ``canvas`` (one image with layer toggles).
"""
from __future__ import annotations

import base64
import html
from dataclasses import dataclass
from typing import Sequence

import cv2
import numpy as np

from app.render import Panel, Tag, text_colour

CHAR_EM = 0.61
"""Advance of one monospace character in em (DejaVu Sans Mono 0.602; a little spare)."""
LINE_EM = 1.35
"""Tag height in em (line height plus padding)."""
PAD_EM = 0.5
"""Horizontal padding of a tag in em (both sides together)."""
GRID_FONT = 0.029
"""Tag font size as a fraction of the panel width in the 2×2 grid (≈ 11 px at 380 px)."""
LARGE_FONT = 0.0165
"""Tag font size as a fraction of the panel width when one panel is large."""


@dataclass(frozen=True)
class Placed:
    """A tag at (x, y) with size (w, h), image pixels of its panel."""

    tag: Tag
    x: float
    y: float
    w: float
    h: float


def _overlaps(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> bool:
    return a[0] < b[0] + b[2] and b[0] < a[0] + a[2] and a[1] < b[1] + b[3] and b[1] < a[1] + a[3]


def place_tags(tags: Sequence[Tag], width: float, height: float, font_frac: float = GRID_FONT,
               reserved: Sequence[tuple[float, float, float, float]] = ()) -> tuple[list[Placed], list[Tag]]:
    """Greedy placement of tags inside a ``width`` × ``height`` image, none overlapping.

    Each tag tries, in order: above its box (left-aligned), inside the box's top, below
    the box, above right-aligned, inside the bottom, then the same spots shifted by one
    or two tag heights; the first spot inside the image that overlaps no placed tag wins.

    ``reserved`` (x, y, w, h) rectangles (the panel's title and caption) are kept free.

    Returns:
        (placed tags, tags that found no free spot) in the order given.
    """
    fs = font_frac * width
    th = LINE_EM * fs
    placed: list[Placed] = []
    rects: list[tuple[float, float, float, float]] = list(reserved)
    hidden: list[Tag] = []
    for tag in tags:
        tw = min(width, (len(tag.text) * CHAR_EM + PAD_EM) * fs)
        x0, y0, x1, y1 = tag.box
        spots = [(x0, y0 - th), (x0, y0), (x0, y1), (x1 - tw, y0 - th), (x0, y1 - th)]
        spots += [(x, y + k * th) for k in (1, -1, 2, -2) for x, y in spots[:3]]
        for x, y in spots:
            x = float(np.clip(x, 0, max(0.0, width - tw)))
            y = float(np.clip(y, 0, max(0.0, height - th)))
            r = (x, y, tw, th)
            if not any(_overlaps(r, o) for o in rects):
                rects.append(r)
                placed.append(Placed(tag, x, y, tw, th))
                break
        else:
            hidden.append(tag)
    return placed, hidden


def jpeg_data_uri(image: np.ndarray, quality: int = 85) -> str:
    """``data:image/jpeg;base64,...`` of an RGB uint8 (H, W, 3) image."""
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:  # pragma: no cover - OpenCV encodes any uint8 RGB image
        raise RuntimeError("JPEG encoding failed")
    return "data:image/jpeg;base64," + base64.b64encode(buf.tobytes()).decode("ascii")


def _pct(v: float, total: float) -> str:
    return f"{100.0 * v / total:.3f}%"


def panel_html(key: str, title: str, panel: Panel, details: dict[int, str], *, font_frac: float,
               selected: int | None = None) -> str:
    """One panel: title, image, hit areas with hover details, placed tags, caption.

    Args:
        key: panel key (``a``-``d`` or ``canvas``), used in element ids.
        details: instance index -> HTML of its hover details.
        font_frac: tag font size as a fraction of the panel width.
    """
    h, w = panel.image.shape[:2]
    fs = font_frac * w
    title_rect = (0.0, 0.0, (len(title) * CHAR_EM + PAD_EM) * fs, LINE_EM * fs)
    placed, hidden = place_tags(panel.tags, w, h, font_frac, reserved=[title_rect])
    more = f" · {len(hidden)} more tag{'s' if len(hidden) != 1 else ''} on hover" if hidden else ""
    parts = [f"<div class='uv-pane' id='pane-{key}' data-panel='{key}'>",
             f"<div class='uv-zoom'><div class='uv-stage' style='aspect-ratio:{w}/{h}'>",
             f"<img class='uv-img' alt='{html.escape(title)}' src='{jpeg_data_uri(panel.image)}' "
             f"data-width='{w}' data-height='{h}'>",
             f"<div class='uv-pane-title' style='font-size:{100 * font_frac:.3f}cqw'>{html.escape(title)}</div>"]
    boxes = {g.index: g.box for g in panel.tags}
    # hit areas: smaller boxes above larger ones
    for rank, (i, box) in enumerate(sorted(boxes.items(), key=lambda kv: -(kv[1][2] - kv[1][0]) * (kv[1][3] - kv[1][1]))):
        x0, y0, x1, y1 = box
        side = "uv-tip-left" if (x0 + x1) / 2 > w / 2 else ""
        below = "uv-tip-below" if (y0 + y1) / 2 < h / 3 else ""
        sel = " uv-hit-selected" if i == selected else ""
        parts.append(
            f"<div class='uv-hit{sel}' data-pick='{i}' style='left:{_pct(x0, w)};top:{_pct(y0, h)};"
            f"width:{_pct(max(1.0, x1 - x0), w)};height:{_pct(max(1.0, y1 - y0), h)};z-index:{10 + rank}'>"
            f"<div class='uv-tip {side} {below}'>{details.get(i, '')}</div></div>")
    for p in placed:
        bg = p.tag.colour
        fg = text_colour(bg)
        parts.append(
            f"<div class='uv-tag' data-i='{p.tag.index}' style='left:{_pct(p.x, w)};top:{_pct(p.y, h)};"
            f"font-size:{100 * font_frac:.3f}cqw;background:rgb{bg};color:rgb{fg}'>{html.escape(p.tag.text)}</div>")
    parts.append("</div></div>")
    parts.append(f"<div class='uv-cap'>{html.escape(panel.caption)}{more}</div></div>")
    return "".join(parts)


def grid_html(panels: Sequence[Panel], titles: Sequence[str], details: dict[int, str], *,
              layout: str = "grid", focus: int = 0, selected: int | None = None, frame: int = 0,
              stamp: str = "") -> str:
    """The whole canvas: ``grid`` (2×2), ``focus`` (panel ``focus`` large) or ``canvas``
    (``panels`` holds the one composite panel). ``data-frame`` carries the frame shown and
    ``data-config`` ``stamp`` (a digest of the settings it was decided with)."""
    attrs = f"data-frame='{frame}' data-config='{html.escape(stamp)}'"
    if layout == "canvas":
        body = panel_html("canvas", titles[0], panels[0], details, font_frac=LARGE_FONT, selected=selected)
        return f"<div class='uv-canvas uv-single' {attrs}>{body}</div>"
    keys = "abcd"
    if layout == "focus":
        order = [focus] + [k for k in range(len(panels)) if k != focus]
        parts = [panel_html(keys[k], titles[k], panels[k], details,
                            font_frac=LARGE_FONT if k == focus else GRID_FONT * 1.6, selected=selected)
                 for k in order]
        return (f"<div class='uv-canvas uv-focus' {attrs}><div class='uv-focus-main'>{parts[0]}</div>"
                f"<div class='uv-focus-side'>{''.join(parts[1:])}</div></div>")
    body = "".join(panel_html(keys[k], titles[k], p, details, font_frac=GRID_FONT, selected=selected)
                   for k, p in enumerate(panels))
    return f"<div class='uv-canvas uv-grid' {attrs}>{body}</div>"
