"""Weight-free motion proposals (OpenCV): what moves is an object.

Two detectors, one per camera situation, each giving a foreground mask and a motion
strength in [0, 1] per pixel at the *work resolution* (the frame downscaled so its
longer side is at most ``work_side``, default 384):

* ``background`` (static camera): an OpenCV MOG2 (or KNN) background subtractor,
  ``history`` frames long. Foreground = subtractor value 255; detected shadows (127)
  are background. Strength = 1 on foreground pixels. Learning rate: 1/(n+1) for the
  first ``bg_warmup`` frames n of a new model (their running mean; no proposals yet),
  then max(1/``history``, 1/(4(n+1))), a quarter of OpenCV's default 1/(n+1): the
  fast default absorbs slow objects into the background within a few frames (an
  object staying on the same pixels for ~10 % of the frames seen so far), the slower
  rate keeps them while ghosts of objects present at the start still fade (about
  10 frames after warm-up in the tests). Objects that stop, or crawl (on the same
  pixels for more than ~``history``/10 frames), still fade into the background.
* ``flow`` (moving camera): dense Farneback optical flow between the previous and the
  current frame at ``flow_side`` (default 192) pixels. Camera motion is compensated:
  a global affine motion is fitted to the flow by least squares on a grid of points
  (refitted once on the points it explains within 2.5x the median residual, so moving
  objects do not drag the fit), and the *residual* flow magnitude r counts. Moving
  regions: r > thr, thr = max(``flow_threshold``, 3 x median(r)) (pixels per frame at
  ``flow_side``; the median term adapts to flow noise), opened with a 3x3 ellipse.
  Farneback's smooth flow bleeds around objects and misses edges parallel to the
  motion (the aperture problem), while the grey-level change against the previous
  frame aligned by the camera's affine motion (> ``diff_threshold`` or 3 x its
  median) follows the outline. So each moving region, grown by k px (k below), is
  cut to the convex hull of the changed pixels inside its grown box; the hull also
  fills uniform interiors, where only the outline changes. A border band as wide as
  the camera's displacement (+2 px), where flow is unreliable, is ignored.
  Strength = min(1, r / (2 thr)). The first frame after a reset gives no proposals.
* ``auto``: camera motion g = median displacement of the fitted affine field
  (pixels per frame at work resolution), smoothed by an exponential moving average
  (alpha 0.5). The camera is *moving* when the average exceeds
  ``camera_motion_threshold`` (0.5 px) and *static* again when it falls below half of
  that (hysteresis). Static: the background detector once its model has seen
  ``auto_handover`` (15) frames, the flow detector before; moving: the flow detector,
  and the background model is dropped and relearned when the camera settles. While
  the background detector is in use, g is measured by a cheaper Farneback at half
  ``flow_side``.

Clean-up (work resolution; k = odd(short side / 60), 5 at 288 px): opening with a
3x3 ellipse drops speckle, closing with a k x k ellipse joins fragments; each outer
contour is one blob with its holes filled; blobs smaller than ``min_area_fraction``
of the frame are dropped. One merge heuristic: a blob smaller than a quarter of
another whose box lies at least half inside the other's box grown by k pixels joins it
(a head or legs cut off). No splitting: people walking in contact are one instance.

Objectness (the motion confidence, in [0, 1]) is the geometric mean of three factors:

* fill   f = clip((A / box area - 0.1) / 0.4, 0, 1): compactness; 1 when the blob
  fills >= 50 % of its box (a walking person fills 45-65 %), 0 at <= 10 %;
* motion m = mean strength over the blob (background: the fraction of the blob the
  subtractor marked foreground itself, not added by closing or hole filling; flow:
  how far above the threshold the residual motion is);
* size   s = clip(log(a / a_min) / log 4, 0, 1) x clip((0.6 - a) / 0.35, 0, 1), with
  a = A / frame area and a_min = ``min_area_fraction``: 0 at the minimum area, 1 from
  4x the minimum up to a quarter of the frame, falling to 0 at 60 % of the frame
  (a blob that large is a lighting change or a failed camera compensation).

objectness = (f * m * s) ** (1/3). **0.7**, the DESIGN threshold, is reached when all
three factors are 0.7 (a blob filling 38 % of its box, 70 % really moving, 2.6x the
minimum area), or e.g. by a compact blob >= 4x the minimum area whose pixels are on
average a third moving. Walking people in the bundled ``vtest`` clip mostly score
0.8-1.0; closing artefacts and flicker score below 0.5.

The at most ``max_instances`` blobs of highest objectness are returned with masks as
RLE at the input frame size (blob outlines scaled from work resolution and filled)
and boxes the tight xyxy boxes of those masks.

Resume: ``context_frames`` preceding frames make the state warm again: 1 for
``flow``, ``history`` for ``background``/``auto``. A resumed background model has
seen ``history`` frames instead of all, so results after a resume are close to, not
bit-identical with, an uninterrupted run.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from uvis import masks as mask_utils
from uvis.types import Instances

MODES = ("auto", "background", "flow")
SUBTRACTORS = ("mog2", "knn")
_VERSION = 1  # bump when the algorithm changes: the name invalidates cached proposals
_FARNEBACK = dict(pyr_scale=0.5, levels=3, winsize=9, iterations=1, poly_n=5, poly_sigma=1.1, flags=0)


@dataclass
class _Detection:
    """Work-resolution foreground (bool (h, w)) and motion strength (float32 (h, w) in [0, 1])."""

    foreground: np.ndarray
    strength: np.ndarray


@dataclass
class _Blob:
    contours: list[np.ndarray]  # outer contours at work resolution (cv2 format)
    box: tuple[int, int, int, int]  # x0, y0, x1, y1 (exclusive) at work resolution
    area: int
    score: float = 0.0


def _odd(x: float) -> int:
    k = max(3, int(round(x)))
    return k if k % 2 else k + 1


def _resize_to_side(img: np.ndarray, side: int) -> np.ndarray:
    h, w = img.shape[:2]
    if max(h, w) <= side:
        return img
    s = side / max(h, w)
    return cv2.resize(img, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)


def fit_affine_motion(flow: np.ndarray, step: int) -> np.ndarray:
    """Robust least-squares affine fit of a dense flow field (the camera's motion).

    Args:
        flow: (h, w, 2) float32 displacement (dx, dy) in pixels of each pixel (x, y).
        step: grid step of the sampled points (pixels).
    Returns:
        params (3, 2) float64 with displacement(x, y) = [x, y, 1] @ params.
    """
    h, w = flow.shape[:2]
    ys, xs = np.mgrid[step // 2:h:step, step // 2:w:step]
    pts = np.stack([xs.ravel(), ys.ravel(), np.ones(xs.size)], axis=1).astype(np.float64)
    disp = flow[ys.ravel(), xs.ravel()].astype(np.float64)
    params, *_ = np.linalg.lstsq(pts, disp, rcond=None)
    res = np.linalg.norm(pts @ params - disp, axis=1)
    keep = res <= max(2.5 * float(np.median(res)), 0.05)
    if keep.sum() >= 6:
        params, *_ = np.linalg.lstsq(pts[keep], disp[keep], rcond=None)
    return params


def _affine_field(params: np.ndarray, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """(dx, dy) displacement fields (h, w) float32 of an affine motion."""
    p = params.astype(np.float32)
    xs = np.arange(w, dtype=np.float32)[None, :]
    ys = np.arange(h, dtype=np.float32)[:, None]
    return xs * p[0, 0] + ys * p[1, 0] + p[2, 0], xs * p[0, 1] + ys * p[1, 1] + p[2, 1]


def _camera_motion(params: np.ndarray, h: int, w: int) -> tuple[float, float]:
    """(median, max) displacement magnitude of an affine motion over a 9x9 grid of the frame."""
    xs, ys = np.meshgrid(np.linspace(0, w - 1, 9), np.linspace(0, h - 1, 9))
    pts = np.stack([xs.ravel(), ys.ravel(), np.ones(xs.size)], axis=1)
    mag = np.linalg.norm(pts @ params, axis=1)
    return float(np.median(mag)), float(mag.max())


class MotionProposer:
    """Class-agnostic proposals from motion; see the module docstring for the method.

    Args:
        mode: ``auto`` | ``background`` | ``flow``.
        subtractor: ``mog2`` | ``knn`` (background detector).
        history: background model length in frames (>= 2); also ``context_frames``.
        var_threshold: MOG2 squared Mahalanobis distance of a foreground pixel (> 0;
            KNN: used x25 as its squared distance); higher = less foreground.
        min_area_fraction: smallest blob kept, as a fraction of the frame area, in
            (0, 0.5); 0.0005 = 55 px at 384x288.
        max_instances: at most this many proposals per frame (highest objectness).
        work_side: longer side of the work resolution in pixels (>= 32).
        flow_side: longer side of the optical-flow resolution (32 <= flow_side <= work_side).
        flow_threshold: minimum residual flow of a moving pixel, pixels per frame at
            ``flow_side`` (> 0).
        camera_motion_threshold: ``auto`` switches to flow above this camera motion,
            pixels per frame at work resolution (> 0).
        diff_threshold: minimum grey-level change (0-255) of a moving pixel against the
            camera-aligned previous frame, flow detector (> 0).
        bg_warmup: frames a new background model sees before it proposes (>= 1).
        auto_handover: frames a new background model sees before ``auto`` uses it
            instead of flow (>= ``bg_warmup``; ghosts of objects that moved during the
            warm-up fade meanwhile).
    """

    def __init__(self, *, mode: str = "auto", subtractor: str = "mog2", history: int = 200,
                 var_threshold: float = 16.0, min_area_fraction: float = 0.0005, max_instances: int = 20,
                 work_side: int = 384, flow_side: int = 192, flow_threshold: float = 1.0,
                 camera_motion_threshold: float = 0.5, diff_threshold: float = 12.0,
                 bg_warmup: int = 5, auto_handover: int = 15) -> None:
        if mode not in MODES:
            raise ValueError(f"MotionProposer mode must be one of {', '.join(MODES)}, got {mode!r}")
        if subtractor not in SUBTRACTORS:
            raise ValueError(f"MotionProposer subtractor must be one of {', '.join(SUBTRACTORS)}, got {subtractor!r}")
        if history < 2:
            raise ValueError(f"MotionProposer history must be >= 2 frames, got {history}")
        if not 0 < min_area_fraction < 0.5:
            raise ValueError(f"MotionProposer min_area_fraction must be in (0, 0.5), got {min_area_fraction}")
        if max_instances < 1:
            raise ValueError(f"MotionProposer max_instances must be >= 1, got {max_instances}")
        if work_side < 32 or not 32 <= flow_side <= work_side:
            raise ValueError(f"MotionProposer needs 32 <= flow_side <= work_side, got {flow_side}, {work_side}")
        if min(flow_threshold, camera_motion_threshold, var_threshold, diff_threshold) <= 0:
            raise ValueError("MotionProposer thresholds (var, flow, camera motion, diff) must be > 0")
        if bg_warmup < 1 or auto_handover < bg_warmup:
            raise ValueError(f"MotionProposer needs 1 <= bg_warmup <= auto_handover, got {bg_warmup}, {auto_handover}")
        self.mode = mode
        self.subtractor = subtractor
        self.history = int(history)
        self.var_threshold = float(var_threshold)
        self.min_area_fraction = float(min_area_fraction)
        self.max_instances = int(max_instances)
        self.work_side = int(work_side)
        self.flow_side = int(flow_side)
        self.flow_threshold = float(flow_threshold)
        self.camera_motion_threshold = float(camera_motion_threshold)
        self.diff_threshold = float(diff_threshold)
        self.bg_warmup = int(bg_warmup)
        self.auto_handover = int(auto_handover)
        self.context_frames = 1 if mode == "flow" else self.history
        self.name = (
            f"motion-v{_VERSION}(mode={mode},sub={subtractor},hist={self.history},var={self.var_threshold:g},"
            f"minarea={self.min_area_fraction:g},max={self.max_instances},work={self.work_side},"
            f"flow={self.flow_side},fthr={self.flow_threshold:g},cam={self.camera_motion_threshold:g},"
            f"diff={self.diff_threshold:g},warm={self.bg_warmup},handover={self.auto_handover})"
        )
        self.reset()

    # ---- state ------------------------------------------------------------------------
    def reset(self) -> None:
        """Forget the previous video: no background model, no previous frame."""
        self._bg: cv2.BackgroundSubtractor | None = None
        self._bg_seen = 0
        self._prev_flow_gray: np.ndarray | None = None
        self._prev_work_gray: np.ndarray | None = None
        self._frame_size: tuple[int, int] | None = None
        self._camera_ema: float | None = None
        self._camera_moving = False
        #: camera motion of the last frame, px/frame at work resolution (None: not measured)
        self.last_camera_motion: float | None = None
        #: detector that made the last output: "background", "flow" or None (warming up)
        self.last_source: str | None = None

    def _new_background(self) -> cv2.BackgroundSubtractor:
        if self.subtractor == "mog2":
            return cv2.createBackgroundSubtractorMOG2(history=self.history, varThreshold=self.var_threshold,
                                                      detectShadows=True)
        return cv2.createBackgroundSubtractorKNN(history=self.history, dist2Threshold=25.0 * self.var_threshold,
                                                 detectShadows=True)

    # ---- main -------------------------------------------------------------------------
    def propose(self, frame: np.ndarray, t: int) -> Instances:
        """Proposals of one frame.

        Args:
            frame: RGB uint8 (H, W, 3); successive calls must be successive frames of
                one video (call :meth:`reset` between videos).
            t: processed frame index (0-based), written to ``Instances.frame``.
        Returns:
            :class:`Instances` with boxes xyxy in (H, W) pixels, RLE masks at (H, W),
            objectness in [0, 1]; empty while warming up.
        """
        if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
            raise ValueError(f"frame must be RGB uint8 (H, W, 3), got {frame.dtype} {frame.shape}")
        size = (int(frame.shape[0]), int(frame.shape[1]))
        if self._frame_size is None:
            self._frame_size = size
        elif size != self._frame_size:
            raise ValueError(f"frame {t} is {size[1]}x{size[0]} but this video's frames are "
                             f"{self._frame_size[1]}x{self._frame_size[0]}; call reset() between videos")
        work = _resize_to_side(frame, self.work_side)
        detection = self._detect(work)
        self.last_source = None if detection is None else self.last_source
        if detection is None:
            return _empty(size, t)
        blobs = self._blobs(detection)
        return _to_instances(blobs, detection.foreground.shape, size, t)

    def _detect(self, work: np.ndarray) -> _Detection | None:
        """Run the mode's detector(s) on a work-resolution RGB frame; None while warming up."""
        if self.mode == "background":
            self.last_source = "background"
            return self._background(work)
        work_gray = cv2.cvtColor(work, cv2.COLOR_RGB2GRAY)
        flow_gray = _resize_to_side(work_gray, self.flow_side)
        prev_flow, prev_work = self._prev_flow_gray, self._prev_work_gray
        self._prev_flow_gray, self._prev_work_gray = flow_gray, work_gray
        have_prev = prev_flow is not None and prev_work is not None
        if self.mode == "flow":
            self.last_source = "flow"
            return self._flow(prev_flow, flow_gray, prev_work, work_gray) if have_prev else None
        # auto: measure camera motion (cheaply while the background detector is in use).
        probed = have_prev and not self._camera_moving and self._bg_seen > self.auto_handover
        if probed:
            self._update_camera(self._probe_camera(prev_flow, flow_gray, max(work.shape[:2])))
            if not self._camera_moving:
                self.last_source = "background"
                return self._background(work)
        flow = None
        if have_prev:
            flow = self._flow(prev_flow, flow_gray, prev_work, work_gray, update_camera=not probed)
        if self._camera_moving:
            self._bg, self._bg_seen = None, 0
            self.last_source = "flow"
            return flow
        background = self._background(work)
        if background is not None and self._bg_seen > self.auto_handover:
            self.last_source = "background"
            return background
        self.last_source = "flow"
        return flow

    def _update_camera(self, g: float) -> None:
        self.last_camera_motion = g
        self._camera_ema = g if self._camera_ema is None else 0.5 * self._camera_ema + 0.5 * g
        if self._camera_moving and self._camera_ema < 0.5 * self.camera_motion_threshold:
            self._camera_moving = False
            self._bg, self._bg_seen = None, 0  # learn the new view from scratch
        elif not self._camera_moving and self._camera_ema > self.camera_motion_threshold:
            self._camera_moving = True

    # ---- detectors --------------------------------------------------------------------
    def _background(self, work: np.ndarray) -> _Detection | None:
        if self._bg is None:
            self._bg, self._bg_seen = self._new_background(), 0
        n = self._bg_seen
        rate = 1.0 / (n + 1) if n < self.bg_warmup else max(1.0 / self.history, 0.25 / (n + 1))
        raw = self._bg.apply(work, learningRate=rate)
        self._bg_seen += 1
        if self._bg_seen <= self.bg_warmup:
            return None
        fg = raw == 255  # 127 = shadow: background
        return _Detection(foreground=fg, strength=fg.astype(np.float32))

    def _probe_camera(self, prev: np.ndarray, cur: np.ndarray, work_side: int) -> float:
        """Camera motion (px/frame at work resolution) from a half-resolution Farneback."""
        side = max(32, max(cur.shape) // 2)
        a, b = _resize_to_side(prev, side), _resize_to_side(cur, side)
        flow = cv2.calcOpticalFlowFarneback(a, b, None, **_FARNEBACK)
        h, w = b.shape
        params = fit_affine_motion(flow, step=max(2, max(h, w) // 16))
        return _camera_motion(params, h, w)[0] * work_side / max(h, w)

    def _flow(self, prev: np.ndarray, cur: np.ndarray, prev_work: np.ndarray, cur_work: np.ndarray,
              update_camera: bool = False) -> _Detection:
        flow = cv2.calcOpticalFlowFarneback(prev, cur, None, **_FARNEBACK)
        h, w = cur.shape
        H, W = cur_work.shape
        scale = max(H, W) / max(h, w)
        params = fit_affine_motion(flow, step=max(2, max(h, w) // 48))
        median_motion, max_motion = _camera_motion(params, h, w)
        if update_camera:
            self._update_camera(median_motion * scale)
        else:
            self.last_camera_motion = median_motion * scale
        fx, fy = _affine_field(params, h, w)
        r = cv2.magnitude(flow[..., 0] - fx, flow[..., 1] - fy)
        if max_motion > 0.25:  # ignore the border band the camera's motion uncovers
            b = min(int(math.ceil(max_motion)) + 2, min(h, w) // 4)
            r[:b], r[-b:], r[:, :b], r[:, -b:] = 0, 0, 0, 0
        thr = max(self.flow_threshold, 3.0 * float(np.median(r)))
        if (h, w) != (H, W):
            r = cv2.resize(r, (W, H), interpolation=cv2.INTER_LINEAR)
        # Previous frame aligned to this one: prev(x) moves to x + d(x), d = [x, y, 1] @ params.
        m = np.array([[1 + params[0, 0], params[1, 0], params[2, 0] * scale],
                      [params[0, 1], 1 + params[1, 1], params[2, 1] * scale]], np.float32)
        aligned = cv2.warpAffine(prev_work, m, (W, H), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        diff = cv2.absdiff(cur_work, aligned)
        changed = diff > max(self.diff_threshold, 3.0 * float(np.median(diff)))
        moving = cv2.morphologyEx((r > thr).astype(np.uint8), cv2.MORPH_OPEN,
                                  cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (3, 3)))
        fg = _trim_to_change(moving, changed, self.min_area_fraction * H * W, grow=_odd(min(H, W) / 60))
        return _Detection(foreground=fg, strength=np.minimum(1.0, r / (2.0 * thr)))

    # ---- blobs ------------------------------------------------------------------------
    def _blobs(self, det: _Detection) -> list[_Blob]:
        """Clean the foreground, cut it into blobs, merge fragments, score, keep the best."""
        h, w = det.foreground.shape
        k = _odd(min(h, w) / 60)
        fg = det.foreground.astype(np.uint8)
        fg = cv2.morphologyEx(fg, cv2.MORPH_OPEN, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (3, 3)))
        fg = cv2.morphologyEx(fg, cv2.MORPH_CLOSE, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k)))
        contours, _ = cv2.findContours(fg, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        min_area = self.min_area_fraction * h * w
        blobs: list[_Blob] = []
        for c in contours:
            x, y, bw, bh = cv2.boundingRect(c)
            if bw * bh < min_area:
                continue
            roi = np.zeros((bh, bw), np.uint8)
            cv2.drawContours(roi, [c], -1, 1, thickness=-1, offset=(-x, -y))
            area = int(np.count_nonzero(roi))
            if area >= min_area:
                blobs.append(_Blob(contours=[c], box=(x, y, x + bw, y + bh), area=area))
        blobs = _merge_fragments(blobs, grow=k)
        for blob in blobs:
            blob.score = self._score(blob, det.strength, h * w)
        blobs = sorted((b for b in blobs if b.score > 0), key=lambda b: -b.score)
        return blobs[: self.max_instances]

    def _score(self, blob: _Blob, strength: np.ndarray, frame_area: int) -> float:
        """The documented objectness (module docstring) of one blob."""
        x0, y0, x1, y1 = blob.box
        roi = np.zeros((y1 - y0, x1 - x0), np.uint8)
        cv2.drawContours(roi, blob.contours, -1, 1, thickness=-1, offset=(-x0, -y0))
        inside = roi.astype(bool)
        area = int(inside.sum())
        fill = float(np.clip((area / roi.size - 0.1) / 0.4, 0.0, 1.0))
        motion = float(strength[y0:y1, x0:x1][inside].mean())
        a = area / frame_area
        size = float(np.clip(math.log(a / self.min_area_fraction) / math.log(4.0), 0.0, 1.0))
        size *= float(np.clip((0.6 - a) / 0.35, 0.0, 1.0))
        return (fill * motion * size) ** (1.0 / 3.0)


def _trim_to_change(moving: np.ndarray, changed: np.ndarray, min_area: float, grow: int) -> np.ndarray:
    """Cut each moving region (uint8 (h, w)), grown by ``grow`` px, to the convex hull of
    the changed pixels (bool (h, w)) inside its grown box; regions smaller than
    ``min_area`` or with fewer than 3 changed pixels are dropped. Returns the bool
    foreground (h, w)."""
    h, w = moving.shape
    fg = np.zeros((h, w), bool)
    grown = cv2.dilate(moving, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * grow + 1, 2 * grow + 1)))
    contours, _ = cv2.findContours(moving, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    for c in contours:
        x, y, bw, bh = cv2.boundingRect(c)
        if bw * bh < min_area:
            continue
        x0, y0, x1, y1 = max(0, x - grow), max(0, y - grow), min(w, x + bw + grow), min(h, y + bh + grow)
        ys, xs = np.nonzero(changed[y0:y1, x0:x1])
        if len(xs) < 3:
            continue
        hull = np.zeros((y1 - y0, x1 - x0), np.uint8)
        cv2.fillConvexPoly(hull, cv2.convexHull(np.stack([xs, ys], axis=1).astype(np.int32)), 1)
        fg[y0:y1, x0:x1] |= (hull & grown[y0:y1, x0:x1]) > 0
    return fg


def _empty(size: tuple[int, int], t: int) -> Instances:
    return Instances.empty(size).with_fields(frame=np.full(0, t, np.int32))


def _to_instances(blobs: list[_Blob], work_hw: tuple[int, int], size: tuple[int, int], t: int) -> Instances:
    """Blobs at work resolution -> Instances at frame size (outlines scaled, then filled)."""
    if not blobs:
        return _empty(size, t)
    h, w = work_hw
    H, W = size
    sx, sy = W / w, H / h
    rles = []
    for blob in blobs:
        full = np.zeros((H, W), np.uint8)
        if (h, w) == (H, W):
            contours = blob.contours
        else:  # pixel centres map as (x + 0.5) * s - 0.5
            contours = [np.round((c.astype(np.float32) + 0.5) * np.float32([sx, sy]) - 0.5).astype(np.int32)
                        for c in blob.contours]
        cv2.drawContours(full, contours, -1, 1, thickness=-1)
        rles.append(mask_utils.encode(full))
    return Instances(
        boxes=mask_utils.to_bbox(rles), masks=rles,
        objectness=np.array([b.score for b in blobs], np.float32), image_size=size,
        frame=np.full(len(rles), t, np.int32),
    )


def _merge_fragments(blobs: list[_Blob], grow: int) -> list[_Blob]:
    """A blob < 1/4 the area of a larger one, lying at least half inside that one's box
    grown by ``grow`` px, joins it (the group keeps the larger blob's box test)."""
    out: list[_Blob] = []
    heads: list[tuple[int, int, int, int, int]] = []  # box and area of each group's largest blob
    for blob in sorted(blobs, key=lambda b: -b.area):
        x0, y0, x1, y1 = blob.box
        own = (x1 - x0) * (y1 - y0)
        for g, (gx0, gy0, gx1, gy1, garea) in enumerate(heads):
            if blob.area * 4 > garea:
                continue
            ix = max(0, min(x1, gx1 + grow) - max(x0, gx0 - grow))
            iy = max(0, min(y1, gy1 + grow) - max(y0, gy0 - grow))
            if ix * iy >= 0.5 * own:
                grp = out[g]
                grp.contours = grp.contours + blob.contours
                bx0, by0, bx1, by1 = grp.box
                grp.box = (min(bx0, x0), min(by0, y0), max(bx1, x1), max(by1, y1))
                grp.area += blob.area
                break
        else:
            out.append(_Blob(contours=list(blob.contours), box=blob.box, area=blob.area))
            heads.append((x0, y0, x1, y1, blob.area))
    return out
