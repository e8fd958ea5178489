"""Motion proposer: the bundled pedestrian clip, synthetic static / moving-object / panning videos."""
from __future__ import annotations

import time

import cv2
import numpy as np
import pytest

from uvis import masks as mask_utils
from uvis.proposers.base import Proposer
from uvis.proposers.motion import MotionProposer, _Detection
from uvis.video import open_video

MODES = ("auto", "background", "flow")


def texture(h: int, w: int, seed: int) -> np.ndarray:
    """Smooth random colour texture (uint8 (h, w, 3)): structure for flow, no real object."""
    base = np.random.default_rng(seed).integers(0, 256, (h // 8 + 1, w // 8 + 1, 3), dtype=np.uint8)
    return cv2.GaussianBlur(cv2.resize(base, (w, h), interpolation=cv2.INTER_CUBIC), (0, 0), 1.0)


def scene(n: int = 40, h: int = 120, w: int = 160, square: bool = True, pan: float = 0.0,
          stop_pan_at: int | None = None, size: int = 24, speed: int = 3, noise: float = 2.0, seed: int = 0):
    """RGB frames of a textured background, optionally panned ``pan`` px/frame (until
    ``stop_pan_at``), with an orange textured square moving ``speed`` px/frame to the right.
    Returns (frames, boxes xyxy of the square or None)."""
    rng = np.random.default_rng(seed + 1)
    canvas = texture(h, w + int(abs(pan) * n) + 8, seed)
    obj = texture(size, size, seed + 7) // 4 + np.array([190, 100, 0], np.uint8)  # orange, mildly textured
    frames, boxes = [], []
    for t in range(n):
        off = int(round(pan * min(t, stop_pan_at if stop_pan_at is not None else t)))
        f = canvas[:, off:off + w].copy()
        box = None
        if square:
            x, y = 10 + speed * t, h // 2 - size // 2
            f[y:y + size, x:x + size] = obj
            box = np.array([x, y, x + size, y + size], np.float32)
        f = np.clip(f.astype(np.float32) + rng.normal(0, noise, f.shape), 0, 255).astype(np.uint8)
        frames.append(f)
        boxes.append(box)
    return frames, boxes


def run(frames, proposer):
    proposer.reset()
    return [proposer.propose(f, t) for t, f in enumerate(frames)]


def test_implements_proposer_protocol():
    p = MotionProposer()
    assert isinstance(p, Proposer)
    names = {MotionProposer(mode=m).name for m in MODES} | {MotionProposer(min_area_fraction=0.001).name}
    assert len(names) == 4, "the name must encode the settings"
    assert MotionProposer(mode="flow").context_frames == 1
    assert MotionProposer(mode="background", history=30).context_frames == 30
    assert MotionProposer(mode="auto", history=30).context_frames == 30
    with pytest.raises(ValueError, match="mode"):
        MotionProposer(mode="optical")
    with pytest.raises(ValueError, match="min_area_fraction"):
        MotionProposer(min_area_fraction=0.0)


@pytest.mark.parametrize("mode", MODES)
def test_static_video_gives_no_proposals(mode):
    frames, _ = scene(square=False)
    out = run(frames, MotionProposer(mode=mode))
    assert [len(i) for i in out] == [0] * len(frames)


@pytest.mark.parametrize("mode", MODES)
def test_moving_square_gives_one_proposal_on_it(mode):
    frames, boxes = scene()
    out = run(frames, MotionProposer(mode=mode))
    for t in range(7, 15):  # just warmed up: the square is found; ghosts of where it was may remain
        assert mask_utils.box_iou(out[t].boxes, boxes[t][None]).max() > 0.5, f"frame {t}"
    for t in range(15, len(frames)):
        inst = out[t]
        assert len(inst) == 1, f"frame {t}: {len(inst)} proposals"
        assert mask_utils.box_iou(inst.boxes, boxes[t][None])[0, 0] > 0.5
        truth = np.zeros((120, 160), bool)
        x0, y0, x1, y1 = boxes[t].astype(int)
        truth[y0:y1, x0:x1] = True
        assert mask_utils.iou_matrix(inst.masks, [mask_utils.encode(truth)])[0, 0] > 0.5
        assert inst.objectness[0] >= 0.7 and inst.frame[0] == t
        assert inst.masks[0]["size"] == [120, 160]
        # the box is the mask's tight box
        assert np.allclose(inst.boxes, mask_utils.to_bbox(inst.masks))


@pytest.mark.parametrize("mode", ["auto", "flow"])
def test_moving_camera_is_compensated(mode):
    frames, boxes = scene(pan=2.0)
    p = MotionProposer(mode=mode)
    out = run(frames, p)
    assert p.last_source == "flow"
    assert p.last_camera_motion == pytest.approx(2.0, abs=0.3)
    hits = sum(len(out[t]) == 1 and mask_utils.box_iou(out[t].boxes, boxes[t][None])[0, 0] > 0.5
               for t in range(5, len(frames)))
    assert hits >= len(frames) - 5 - 1
    empty, _ = scene(pan=2.0, square=False)
    assert sum(len(i) for i in run(empty, MotionProposer(mode=mode))) == 0, "the panning background moved"


def test_background_mode_fails_on_moving_camera_which_is_why_auto_exists():
    frames, boxes = scene(pan=2.0)
    out = run(frames, MotionProposer(mode="background"))
    hits = sum(len(out[t]) >= 1 and mask_utils.box_iou(out[t].boxes, boxes[t][None]).max() > 0.5
               for t in range(10, len(frames)))
    assert hits < 10


def test_auto_returns_to_background_when_the_camera_settles():
    frames, boxes = scene(n=50, pan=2.0, stop_pan_at=15, speed=2)
    p = MotionProposer(mode="auto")
    sources, hits = [], []
    for t, f in enumerate(frames):
        inst = p.propose(f, t)
        sources.append(p.last_source)
        if t >= 5:
            hits.append(len(inst) >= 1 and mask_utils.box_iou(inst.boxes, boxes[t][None]).max() > 0.5)
    assert sources[12] == "flow" and p.last_camera_motion < 0.1
    assert sources[-1] == "background"
    assert np.mean(hits) >= 0.9, f"square found in {sum(hits)}/{len(hits)} frames"


def test_large_frames_are_processed_small_and_masks_come_back_full_size():
    frames, boxes = scene(h=480, w=640, size=96, speed=12, n=30)
    p = MotionProposer(mode="auto")  # work side 384: processed at 384x288
    out = run(frames, p)
    inst = out[-1]
    assert len(inst) == 1 and inst.image_size == (480, 640) and inst.masks[0]["size"] == [480, 640]
    assert mask_utils.box_iou(inst.boxes, boxes[-1][None])[0, 0] > 0.7


def test_reset_and_frame_size_checks():
    frames, _ = scene(n=12)
    p = MotionProposer(mode="flow")
    assert len(p.propose(frames[0], 0)) == 0  # nothing to compare with yet
    assert len(p.propose(frames[1], 1)) == 1
    with pytest.raises(ValueError, match="call reset"):
        p.propose(np.zeros((50, 50, 3), np.uint8), 2)
    with pytest.raises(ValueError, match="RGB uint8"):
        p.propose(frames[2].astype(np.float32), 2)
    p.reset()
    assert len(p.propose(np.zeros((50, 50, 3), np.uint8), 0)) == 0


@pytest.mark.parametrize("mode", MODES)
def test_resume_after_context_frames_matches_uninterrupted_run(mode):
    frames, _ = scene(n=60, speed=2)
    p = MotionProposer(mode=mode, history=20)
    ref = run(frames, MotionProposer(mode=mode, history=20))
    start = 45
    p.reset()
    for t in range(start - p.context_frames, start):  # what the runner does on resume
        p.propose(frames[t], t)
    for t in range(start, len(frames)):
        resumed = p.propose(frames[t], t)
        assert len(resumed) == len(ref[t]) == 1
        assert mask_utils.iou_matrix(resumed.masks, ref[t].masks)[0, 0] > 0.9


def test_objectness_follows_the_documented_formula():
    p = MotionProposer(mode="background", min_area_fraction=0.0005)
    h, w = 288, 384

    def score(fg: np.ndarray, strength: float) -> float:
        blobs = p._blobs(_Detection(foreground=fg, strength=np.where(fg, strength, 0).astype(np.float32)))
        assert len(blobs) == 1
        return blobs[0].score

    big = np.zeros((h, w), bool)
    big[100:140, 100:120] = True  # fills its box, 800 px = 14x the minimum area
    assert score(big, 1.0) == pytest.approx(1.0, abs=0.01)
    assert score(big, 0.343) == pytest.approx(0.7, abs=0.01)  # motion factor alone: 0.343 ** (1/3)
    small = np.zeros((h, w), bool)
    small[10:20, 10:20] = True  # 100 px, opening cuts the 4 corners: 96 px, fill 0.96
    a = 96 / (h * w)
    size = np.log(a / 0.0005) / np.log(4)
    assert score(small, 1.0) == pytest.approx((1.0 * 1.0 * size) ** (1 / 3), abs=0.01)
    band = np.zeros((h, w), bool)  # a thin diagonal band fills 4 % of its box: fill factor 0
    for i in range(120):
        band[100 + i, 100 + i:106 + i] = True
    assert p._blobs(_Detection(foreground=band, strength=band.astype(np.float32))) == []
    half = np.zeros((h, w), bool)  # a triangle fills half its box: fill factor 1
    for i in range(60):
        half[100 + i, 100:101 + i] = True
    assert score(half, 1.0) == pytest.approx(1.0, abs=0.02)


@pytest.fixture(scope="module")
def example_frames(example_video):
    with open_video(example_video) as reader:
        return [f for _, f in reader.frames()]


def plausible_people(inst, min_score=0.7):
    w = inst.boxes[:, 2] - inst.boxes[:, 0]
    h = inst.boxes[:, 3] - inst.boxes[:, 1]
    return (inst.objectness >= min_score) & (h >= 12) & (h <= 110) & (w >= 4) & (w <= 90) & (w <= 1.5 * h)


@pytest.mark.parametrize("mode", ["auto", "background", "flow"])
def test_people_in_the_bundled_clip(example_frames, mode):
    p = MotionProposer(mode=mode)
    p.reset()
    warmup = 10
    with_person, times, counts = 0, [], []
    for t, f in enumerate(example_frames):
        t0 = time.perf_counter()
        inst = p.propose(f, t)
        times.append(time.perf_counter() - t0)
        if t < warmup:
            continue
        counts.append(len(inst))
        with_person += bool(plausible_people(inst).any())
        area = (inst.boxes[:, 2] - inst.boxes[:, 0]) * (inst.boxes[:, 3] - inst.boxes[:, 1])
        assert (area < 0.15 * 384 * 288).all(), f"frame {t}: a blob covers a large part of the frame"
    n = len(example_frames) - warmup
    required = 0.9 if mode != "flow" else 0.8  # flow misses slow walkers (< 1 px/frame at flow resolution)
    assert with_person >= required * n, f"{mode}: {with_person}/{n} frames with a person-sized proposal >= 0.7"
    assert np.mean(counts) < 10, "too many proposals for a handful of pedestrians"
    print(f"{mode}: {with_person}/{n} frames with a person; {1000 * np.mean(times[1:]):.1f} ms/frame wall")
