"""Frame-level F1: hand-computed cases and a check against a naive dense implementation."""
from __future__ import annotations

import math

import numpy as np
import pytest

from uvis.errors import BadInputError
from uvis.eval.frame_f1 import AGNOSTIC_CLASS, FrameObject, frame_f1
from uvis.masks import encode, iou_matrix

H, W = 20, 40


def cols(a: int, b: int) -> dict:
    """Mask of columns [a, b) over the full height: IoUs are interval overlaps."""
    m = np.zeros((H, W), dtype=bool)
    m[:, a:b] = True
    return encode(m)


def gt(c: int, rle: dict, crowd: bool = False) -> FrameObject:
    return FrameObject(c, rle, 1.0, crowd)


def pred(c: int, rle: dict, score: float) -> FrameObject:
    return FrameObject(c, rle, score)


def test_perfect_predictions_give_f1_one() -> None:
    g = [[gt(1, cols(0, 10)), gt(2, cols(20, 30))], [gt(1, cols(5, 15))]]
    p = [[pred(1, o.rle, 0.9) for o in g[0][:1]] + [pred(2, cols(20, 30), 0.8)], [pred(1, cols(5, 15), 0.7)]]
    r = frame_f1(g, p)
    assert r.per_class[1].tp == 2 and r.per_class[1].fp == 0 and r.per_class[1].fn == 0
    assert r.per_class[2].f1 == 1.0
    assert r.mF1 == 1.0


def test_one_false_positive() -> None:
    r = frame_f1([[gt(1, cols(0, 10))]], [[pred(1, cols(0, 10), 0.9), pred(1, cols(25, 35), 0.8)]])
    c = r.per_class[1]
    assert (c.tp, c.fp, c.fn) == (1, 1, 0)
    assert c.f1 == pytest.approx(2 / 3)


def test_one_miss() -> None:
    r = frame_f1([[gt(1, cols(0, 10)), gt(1, cols(20, 30))]], [[pred(1, cols(0, 10), 0.9)]])
    c = r.per_class[1]
    assert (c.tp, c.fp, c.fn) == (1, 0, 1)
    assert r.mF1 == pytest.approx(2 / 3)


def test_duplicate_is_a_false_positive() -> None:
    # Two predictions on one object: only one can match.
    r = frame_f1([[gt(1, cols(0, 10))]], [[pred(1, cols(0, 10), 0.9), pred(1, cols(0, 9), 0.8)]])
    assert (r.per_class[1].tp, r.per_class[1].fp, r.per_class[1].fn) == (1, 1, 0)


def test_greedy_by_score_not_optimal_assignment() -> None:
    g1, g2 = cols(0, 10), cols(4, 14)
    a, b = cols(3, 13), cols(5, 15)  # a: IoU .538 with g1, .818 with g2; b: .818 with g2, .333 with g1
    ious = iou_matrix([a, b], [g1, g2])
    assert ious[0, 0] > 0.5 and ious[0, 1] > ious[0, 0] and ious[1, 0] < 0.5 < ious[1, 1]
    # a first: takes g2 (its best), b finds nothing -> 1 TP, 1 FP, 1 FN.
    first_a = frame_f1([[gt(1, g1), gt(1, g2)]], [[pred(1, b, 0.5), pred(1, a, 0.9)]]).per_class[1]
    assert (first_a.tp, first_a.fp, first_a.fn) == (1, 1, 1)
    # b first: takes g2, then a takes g1 -> 2 TP.
    first_b = frame_f1([[gt(1, g1), gt(1, g2)]], [[pred(1, b, 0.9), pred(1, a, 0.5)]]).per_class[1]
    assert (first_b.tp, first_b.fp, first_b.fn) == (2, 0, 0)


def test_iou_exactly_at_threshold_is_not_a_match() -> None:
    g, p = cols(0, 10), cols(0, 5)
    assert iou_matrix([p], [g])[0, 0] == 0.5
    strict = frame_f1([[gt(1, g)]], [[pred(1, p, 0.9)]]).per_class[1]
    assert (strict.tp, strict.fp, strict.fn) == (0, 1, 1)
    lower = frame_f1([[gt(1, g)]], [[pred(1, p, 0.9)]], iou_threshold=0.49).per_class[1]
    assert (lower.tp, lower.fp, lower.fn) == (1, 0, 0)


def test_empty_frames() -> None:
    r = frame_f1([[], [], [gt(1, cols(0, 10))], []], [[], [pred(1, cols(0, 10), 0.5)], [], []])
    assert r.num_frames == 4
    assert (r.per_class[1].tp, r.per_class[1].fp, r.per_class[1].fn) == (0, 1, 1)
    nothing = frame_f1([[], []], [[], []])
    assert nothing.per_class == {} and math.isnan(nothing.mF1)
    assert nothing.to_dict()["mF1"] is None


def test_class_absent_from_predictions_counts_zero_in_mf1() -> None:
    g = [[gt(1, cols(0, 10)), gt(2, cols(20, 30))]]
    r = frame_f1(g, [[pred(1, cols(0, 10), 0.9)]])
    assert r.per_class[2].f1 == 0.0 and r.per_class[2].fn == 1
    assert r.gt_classes == [1, 2]
    assert r.mF1 == pytest.approx(0.5)


def test_class_only_predicted_is_not_in_mf1() -> None:
    r = frame_f1([[gt(1, cols(0, 10))]], [[pred(1, cols(0, 10), 0.9), pred(7, cols(20, 30), 0.9)]])
    assert r.per_class[7].fp == 1 and not r.per_class[7].in_gt
    assert r.gt_classes == [1]
    assert r.mF1 == 1.0
    assert r.to_dict({1: "cat", 7: "dog"})["per_class"]["dog"]["in_gt"] is False


def test_wrong_class_and_class_agnostic() -> None:
    g, p = [[gt(1, cols(0, 10))]], [[pred(2, cols(0, 10), 0.9)]]
    aware = frame_f1(g, p)
    assert (aware.per_class[1].fn, aware.per_class[2].fp, aware.per_class[1].tp) == (1, 1, 0)
    agn = frame_f1(g, p, class_agnostic=True)
    assert list(agn.per_class) == [AGNOSTIC_CLASS]
    assert agn.per_class[AGNOSTIC_CLASS].tp == 1 and agn.mF1 == 1.0
    assert agn.to_dict()["per_class"]["object"]["tp"] == 1


def test_crowd_region_is_ignored() -> None:
    g = [[gt(1, cols(0, 10)), gt(1, cols(20, 40), crowd=True)]]
    p = [[pred(1, cols(0, 10), 0.9), pred(1, cols(20, 38), 0.8), pred(1, cols(21, 40), 0.7)]]
    r = frame_f1(g, p)
    assert (r.per_class[1].tp, r.per_class[1].fp, r.per_class[1].fn) == (1, 0, 0)
    assert r.ignored_predictions == 2
    missed = frame_f1(g, [[]])
    assert missed.per_class[1].fn == 1  # the crowd region is not a miss


def test_plain_tuples_are_accepted() -> None:
    r = frame_f1([[(1, cols(0, 10))]], [[(1, cols(0, 10), 0.3)]])
    assert r.per_class[1].tp == 1


def test_bad_input() -> None:
    with pytest.raises(BadInputError, match="aligned"):
        frame_f1([[]], [[], []])
    small = np.zeros((5, 5), dtype=bool)
    small[:2, :2] = True
    with pytest.raises(BadInputError, match="different sizes"):
        frame_f1([[gt(1, cols(0, 10))]], [[pred(1, encode(small), 0.5)]])
    with pytest.raises(BadInputError, match="frame 0, prediction 0"):
        frame_f1([[gt(1, cols(0, 10))]], [[(1, {"counts": "x"}, 0.5)]])


def _naive(gt_frames, pred_frames, thr=0.5):
    """Reference: dense masks, explicit loops, the same definition."""
    counts: dict[int, list[int]] = {}
    from uvis.masks import decode

    for gs, ps in zip(gt_frames, pred_frames):
        ps = sorted(ps, key=lambda o: -o.score)
        gd = [decode(o.rle) for o in gs]
        used = [False] * len(gs)
        for p in ps:
            pm = decode(p.rle)
            best, best_j = thr, -1
            for j, (g, m) in enumerate(zip(gs, gd)):
                if used[j] or g.class_id != p.class_id:
                    continue
                iou = (pm & m).sum() / max((pm | m).sum(), 1)
                if iou > best:
                    best, best_j = iou, j
            c = counts.setdefault(p.class_id, [0, 0, 0])
            if best_j >= 0:
                used[best_j] = True
                c[0] += 1
            else:
                c[1] += 1
        for g, u in zip(gs, used):
            if not u:
                counts.setdefault(g.class_id, [0, 0, 0])[2] += 1
    return counts


def random_frames(seed: int, n_frames: int = 60):
    rng = np.random.default_rng(seed)
    gts, preds = [], []
    for _ in range(n_frames):
        g, p = [], []
        for _ in range(rng.integers(0, 5)):
            c = int(rng.integers(1, 4))
            y, x = rng.integers(0, H - 6), rng.integers(0, W - 8)
            h, w = rng.integers(4, H - y + 1), rng.integers(4, W - x + 1)
            m = np.zeros((H, W), dtype=bool)
            m[y:y + h, x:x + w] = True
            g.append(gt(c, encode(m)))
            for _ in range(rng.integers(0, 3)):  # overlapping, sometimes duplicate, predictions
                dm = np.roll(m, tuple(rng.integers(-3, 4, 2)), axis=(0, 1))
                pc = c if rng.random() < 0.8 else int(rng.integers(1, 4))
                p.append(pred(pc, encode(dm), float(rng.random())))
        for _ in range(rng.integers(0, 3)):
            m = np.zeros((H, W), dtype=bool)
            y, x = rng.integers(0, H - 3), rng.integers(0, W - 3)
            m[y:y + int(rng.integers(2, 10)), x:x + int(rng.integers(2, 15))] = True
            p.append(pred(int(rng.integers(1, 4)), encode(m), float(rng.random())))
        gts.append(g)
        preds.append(p)
    return gts, preds


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_naive_reference(seed: int) -> None:
    gts, preds = random_frames(seed)
    r = frame_f1(gts, preds)
    ref = _naive(gts, preds)
    assert {c: [n.tp, n.fp, n.fn] for c, n in r.per_class.items()} == ref
    assert sum(n.tp for n in r.per_class.values()) > 10  # the random set really exercises matching


def test_frames_from_ytvis_unrolls_videos() -> None:
    from uvis.eval.ytvis_io import frames_from_ytvis

    empty = encode(np.zeros((H, W), dtype=bool))
    gt_json = {
        "videos": [{"id": 2, "width": W, "height": H, "length": 2, "file_names": ["b/0.jpg", "b/1.jpg"]},
                   {"id": 1, "width": W, "height": H, "length": 3}],
        "categories": [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}],
        "annotations": [
            {"id": 1, "video_id": 1, "category_id": 1, "segmentations": [cols(0, 10), None, cols(0, 10)]},
            {"id": 2, "video_id": 2, "category_id": 2, "segmentations": [None, cols(5, 9)], "iscrowd": 1},
        ],
    }
    results = [{"video_id": 1, "category_id": 1, "score": 0.7, "segmentations": [cols(0, 10), empty, None]}]
    fr = frames_from_ytvis(gt_json, results)
    assert fr.keys == [(1, 0), (1, 1), (1, 2), (2, 0), (2, 1)]  # videos by id
    assert [len(g) for g in fr.gt] == [1, 0, 1, 0, 1]
    assert fr.gt[4][0].crowd and fr.gt[4][0].class_id == 2
    assert [len(p) for p in fr.pred] == [1, 0, 0, 0, 0]  # the empty mask is "not in this frame"
    assert fr.pred[0][0].score == 0.7
    r = frame_f1(fr.gt, fr.pred)
    assert (r.per_class[1].tp, r.per_class[1].fp, r.per_class[1].fn) == (1, 0, 1)
    assert 2 not in r.per_class  # crowd only: neither a miss nor a class in GT
