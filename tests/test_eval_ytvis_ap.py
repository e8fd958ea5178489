"""YouTube-VIS AP/AR: hand cases, properties, exact agreement with pycocotools' COCOeval
on one-frame videos, spatio-temporal IoU against dense masks, input validation."""
from __future__ import annotations

import contextlib
import copy
import io
import json
from pathlib import Path

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from uvis.errors import BadInputError
from uvis.eval.ytvis_ap import STAT_KEYS, _video_ious, evaluate_ytvis
from uvis.eval.ytvis_io import load_ground_truth, load_results, parse_ground_truth, parse_results
from uvis.masks import decode, encode
from uvis.testing import column_runs

H, W = 24, 32


def box(y: int, x: int, h: int, w: int, size: tuple[int, int] = (H, W)) -> dict:
    m = np.zeros(size, dtype=bool)
    m[y:y + h, x:x + w] = True
    return encode(m)


def gt_json(videos: dict[int, int], anns: list[tuple[int, int, list]], size=(H, W), n_cats: int = 2) -> dict:
    """videos: id -> length; anns: (video_id, category_id, segmentations)."""
    return {
        "videos": [{"id": v, "width": size[1], "height": size[0], "length": n,
                    "file_names": [f"vid{v}/{t:05d}.jpg" for t in range(n)]} for v, n in videos.items()],
        "categories": [{"id": c, "name": f"class{c}"} for c in range(1, n_cats + 1)],
        "annotations": [{"id": i + 1, "video_id": v, "category_id": c, "segmentations": s, "iscrowd": 0}
                        for i, (v, c, s) in enumerate(anns)],
    }


def res(v: int, c: int, score: float, segs: list) -> dict:
    return {"video_id": v, "category_id": c, "score": score, "segmentations": segs}


def scene():
    """Three videos, two classes, a mix of hits, misses, a duplicate and a false positive."""
    g = gt_json({1: 3, 2: 2, 3: 2}, [
        (1, 1, [box(0, 0, 10, 10), box(1, 1, 10, 10), None]),
        (1, 2, [box(12, 12, 8, 8), box(12, 12, 8, 8), box(12, 13, 8, 8)]),
        (2, 1, [None, box(5, 5, 12, 12)]),
        (3, 2, [box(0, 20, 10, 10), box(0, 21, 10, 10)]),
    ])
    r = [
        res(1, 1, 0.9, [box(0, 0, 10, 10), box(1, 1, 10, 10), None]),  # perfect
        res(1, 1, 0.4, [box(0, 0, 10, 9), box(1, 1, 10, 9), None]),  # duplicate
        res(1, 2, 0.7, [box(12, 12, 8, 7), box(12, 12, 7, 8), box(12, 13, 8, 8)]),  # good
        res(2, 1, 0.6, [None, box(6, 6, 12, 12)]),  # medium overlap
        res(2, 2, 0.8, [box(0, 0, 5, 5), None]),  # false positive
        res(3, 2, 0.3, [box(0, 20, 10, 10), None]),  # half the track
    ]
    return g, r


def test_perfect_predictions_give_ap_one() -> None:
    g, _ = scene()
    perfect = [res(a["video_id"], a["category_id"], 0.5 + 0.1 * i, a["segmentations"])
               for i, a in enumerate(g["annotations"])]
    r = evaluate_ytvis(g, perfect)
    for k in ("AP", "AP50", "AP75", "AR1", "AR10", "AR100"):
        assert r[k] == pytest.approx(1.0)
    assert all(v["AP"] == pytest.approx(1.0) for v in r.per_class.values())


def test_hand_computed_spatio_temporal_iou() -> None:
    # GT: 10x10 in frames 0 and 1; prediction: same in frame 0, null in frame 1, a 5x5
    # mask in frame 2 where GT is null -> IoU = 100 / (100 + 100 + 25) = 0.444 < 0.5.
    g = gt_json({1: 3}, [(1, 1, [box(0, 0, 10, 10), box(0, 0, 10, 10), None])])
    d = [res(1, 1, 0.9, [box(0, 0, 10, 10), None, box(0, 0, 5, 5)])]
    assert evaluate_ytvis(g, d)["AP50"] == 0.0
    # Without the extra frame: 100 / 200 = 0.5 -> matched at 0.50 only (COCO's >=).
    d2 = [res(1, 1, 0.9, [box(0, 0, 10, 10), None, None])]
    r = evaluate_ytvis(g, d2)
    assert r["AP50"] == pytest.approx(1.0)
    assert r["AP75"] == 0.0
    assert r["AP"] == pytest.approx(0.1)  # one threshold of ten
    # Frames where both are null add nothing: a 4th all-null frame changes no figure.
    g4 = gt_json({1: 4}, [(1, 1, [box(0, 0, 10, 10), box(0, 0, 10, 10), None, None])])
    d4 = [res(1, 1, 0.9, [box(0, 0, 10, 10), None, None, None])]
    assert evaluate_ytvis(g4, d4).stats == r.stats


def test_video_iou_matches_dense_computation() -> None:
    rng = np.random.default_rng(3)
    L = 5
    tracks = []
    for _ in range(7):
        segs = []
        for _ in range(L):
            if rng.random() < 0.25:
                segs.append(None)
                continue
            y, x = rng.integers(0, H - 4), rng.integers(0, W - 4)
            segs.append(box(int(y), int(x), int(rng.integers(2, H - y + 1)), int(rng.integers(2, W - x + 1))))
        tracks.append(segs)
    g = parse_ground_truth(gt_json({1: L}, [(1, 1, s) for s in tracks[:3]]))
    d = parse_results([res(1, 1, 0.5, s) for s in tracks[3:]], g)

    def areas(tr):
        return np.array([np.nan if s is None else mask_utils.area(s) for s in tr.segmentations], dtype=float)

    ious = _video_ious(d, list(g.annotations), [areas(t) for t in d], [areas(t) for t in g.annotations])
    for i, dt in enumerate(tracks[3:]):
        for j, gt in enumerate(tracks[:3]):
            inter = union = 0
            for a, b in zip(dt, gt):
                ma = decode(a) if a is not None else np.zeros((H, W), bool)
                mb = decode(b) if b is not None else np.zeros((H, W), bool)
                inter += (ma & mb).sum()
                union += (ma | mb).sum()
            assert ious[i, j] == (inter / union if union else 0.0)


def test_shuffling_prediction_order_changes_nothing() -> None:
    g, r = scene()
    base = evaluate_ytvis(g, r).to_dict()
    rng = np.random.default_rng(0)
    for _ in range(3):
        shuffled = [r[i] for i in rng.permutation(len(r))]
        assert evaluate_ytvis(g, shuffled).to_dict() == base


def test_lowering_all_scores_uniformly_changes_nothing() -> None:
    g, r = scene()
    base = evaluate_ytvis(g, r).to_dict()
    lowered = [dict(x, score=x["score"] * 0.5 - 0.01) for x in r]
    assert evaluate_ytvis(g, lowered).to_dict() == base


def test_removing_a_true_positive_lowers_ap() -> None:
    g, r = scene()
    base = evaluate_ytvis(g, r)
    fewer = evaluate_ytvis(g, [x for i, x in enumerate(r) if i != 2])  # the class-2 hit in video 1
    assert fewer["AP"] < base["AP"]
    assert fewer.per_class[2]["AP"] < base.per_class[2]["AP"]
    assert fewer.per_class[1] == base.per_class[1]


def test_class_agnostic() -> None:
    g = gt_json({1: 2}, [(1, 1, [box(0, 0, 10, 10), box(0, 0, 10, 10)])])
    wrong_class = [res(1, 2, 0.9, [box(0, 0, 10, 10), box(0, 0, 10, 10)])]
    assert evaluate_ytvis(g, wrong_class)["AP"] == 0.0
    agn = evaluate_ytvis(g, wrong_class, class_agnostic=True)
    assert agn["AP"] == pytest.approx(1.0)
    assert agn.per_class == {} and agn.to_dict()["class_agnostic"] is True


def test_max_dets_and_undefined_values() -> None:
    g = gt_json({1: 1}, [(1, 1, [box(0, 0, 10, 10)])])
    r = [res(1, 1, 0.9 - 0.01 * i, [box(12, 12, 3, 3)]) for i in range(10)]  # ten misses first
    r.append(res(1, 1, 0.1, [box(0, 0, 10, 10)]))  # the hit is the 11th
    out = evaluate_ytvis(g, r)
    assert out["AR10"] == 0.0 and out["AR100"] == 1.0 and out["AR1"] == 0.0
    # a 100-pixel object is "small" (COCO < 32²): medium/large have no GT -> -1
    assert out["APm"] == -1.0 and out["APl"] == -1.0 and out["ARs"] == 1.0
    assert out.per_class[2]["AP"] == -1.0  # class without ground truth


def test_area_range_presets() -> None:
    size = (200, 200)
    g = gt_json({1: 1}, [(1, 1, [box(0, 0, 100, 100, size)])], size=size)  # area 10,000
    r = [res(1, 1, 0.9, [box(0, 0, 100, 100, size)])]
    coco = evaluate_ytvis(g, r)  # 10,000 > 96² = 9,216: large
    ytvis = evaluate_ytvis(g, r, area_ranges="ytvis")  # 10,000 < 128²: small
    assert coco["APl"] == pytest.approx(1.0) and coco["APs"] == -1.0
    assert ytvis["APs"] == pytest.approx(1.0) and ytvis["APl"] == -1.0
    with pytest.raises(BadInputError, match="area_ranges"):
        evaluate_ytvis(g, r, area_ranges="nope")


def test_to_dict_has_fixed_keys() -> None:
    g, r = scene()
    d = evaluate_ytvis(g, r).to_dict()
    assert set(STAT_KEYS) <= set(d)
    assert set(d["per_class"]) == {"class1", "class2"}
    assert set(d["per_class"]["class1"]) == {"id", "AP", "AP50", "AP75", "AR100"}
    json.dumps(d)


# ----------------------------------------------------------------------------- COCOeval
def _random_one_frame_set(rng: np.random.Generator, crowd_rate: float):
    n_videos, n_cats = 30, 3
    videos, anns, results, images, coco_anns = [], [], [], [], []
    for v in range(1, n_videos + 1):
        videos.append({"id": v, "width": W * 4, "height": H * 4, "length": 1, "file_names": [f"v{v}/0.jpg"]})
        images.append({"id": v, "width": W * 4, "height": H * 4})
        for _ in range(rng.integers(0, 4)):
            m = np.zeros((H * 4, W * 4), dtype=np.uint8)
            y, x = rng.integers(0, H * 4 - 8), rng.integers(0, W * 4 - 8)
            m[y:y + int(rng.integers(4, 60)), x:x + int(rng.integers(4, 60))] = 1
            c, rle, area = int(rng.integers(1, n_cats + 1)), encode(m.astype(bool)), int(m.sum())
            crowd = int(rng.random() < crowd_rate)
            aid = len(anns) + 1
            anns.append({"id": aid, "video_id": v, "category_id": c, "segmentations": [rle], "areas": [area],
                         "iscrowd": crowd})
            coco_anns.append({"id": aid, "image_id": v, "category_id": c, "segmentation": rle, "area": area,
                              "iscrowd": crowd, "bbox": [0, 0, 1, 1]})
            for _ in range(rng.integers(0, 3)):
                pm = np.roll(m, tuple(rng.integers(-5, 6, 2)), axis=(0, 1)).astype(bool)
                pc = c if rng.random() < 0.8 else int(rng.integers(1, n_cats + 1))
                results.append(res(v, pc, float(rng.random()), [encode(pm)]))
        for _ in range(rng.integers(0, 3)):
            m = np.zeros((H * 4, W * 4), dtype=bool)
            m[rng.integers(0, 50):rng.integers(60, 90), rng.integers(0, 50):rng.integers(60, 120)] = True
            results.append(res(v, int(rng.integers(1, n_cats + 1)), float(rng.random()), [encode(m)]))
    cats = [{"id": c, "name": f"c{c}"} for c in range(1, n_cats + 1)]
    return {"videos": videos, "annotations": anns, "categories": cats}, results, images, coco_anns, cats


def _cocoeval(images, coco_anns, cats, results, use_cats: bool, plain_crowd_iou: bool):
    import pycocotools.cocoeval as ce
    from pycocotools.coco import COCO

    class _PlainIoU:
        """pycocotools.mask with crowd IoU replaced by the plain IoU (as ytvoseval)."""

        def __getattr__(self, name):
            return getattr(mask_utils, name)

        def iou(self, d, g, crowd):
            return mask_utils.iou(d, g, [0] * len(crowd))

    saved = ce.maskUtils
    try:
        if plain_crowd_iou:
            ce.maskUtils = _PlainIoU()
        with contextlib.redirect_stdout(io.StringIO()):
            coco = COCO()
            coco.dataset = {"images": images, "annotations": copy.deepcopy(coco_anns), "categories": cats}
            coco.createIndex()
            dets = coco.loadRes([{"image_id": r["video_id"], "category_id": r["category_id"], "score": r["score"],
                                  "segmentation": dict(r["segmentations"][0])} for r in results])
            ev = ce.COCOeval(coco, dets, "segm")
            ev.params.useCats = int(use_cats)
            ev.evaluate()
            ev.accumulate()
            ev.summarize()
    finally:
        ce.maskUtils = saved
    return ev


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
@pytest.mark.parametrize("class_agnostic", [False, True])
def test_equals_cocoeval_on_one_frame_videos(seed: int, class_agnostic: bool) -> None:
    """A one-frame video is an image: every number must equal COCOeval's exactly."""
    rng = np.random.default_rng(seed)
    gt, results, images, coco_anns, cats = _random_one_frame_set(rng, crowd_rate=0.0)
    ours = evaluate_ytvis(gt, results, class_agnostic=class_agnostic)
    ref = _cocoeval(images, coco_anns, cats, results, not class_agnostic, plain_crowd_iou=False)
    assert np.array_equal(ref.eval["precision"], ours.precision)
    assert np.array_equal(ref.eval["recall"], ours.recall)
    assert list(ref.stats) == [ours.stats[k] for k in STAT_KEYS]
    assert 0.05 < ours["AP"] < 0.95  # a non-trivial case


@pytest.mark.parametrize("seed", [5, 6])
def test_crowd_and_ignore_handling_equals_cocoeval(seed: int) -> None:
    """Crowd tracks: ignored, matchable many times, regular GT first (IoU made plain in both)."""
    rng = np.random.default_rng(seed)
    gt, results, images, coco_anns, cats = _random_one_frame_set(rng, crowd_rate=0.3)
    assert any(a["iscrowd"] for a in gt["annotations"])
    ours = evaluate_ytvis(gt, results)
    ref = _cocoeval(images, coco_anns, cats, results, True, plain_crowd_iou=True)
    assert np.array_equal(ref.eval["precision"], ours.precision)
    assert np.array_equal(ref.eval["recall"], ours.recall)


# ----------------------------------------------------------------------------- validation
def _write(tmp_path: Path, name: str, data) -> Path:
    p = tmp_path / name
    p.write_text(data if isinstance(data, str) else json.dumps(data))
    return p


def test_validation_errors_name_file_and_entry(tmp_path: Path) -> None:
    g, r = scene()
    gpath = _write(tmp_path, "gt.json", g)
    truth = load_ground_truth(gpath)
    assert [v.name for v in truth.videos.values()] == ["vid1", "vid2", "vid3"]

    with pytest.raises(BadInputError, match=r"bad\.json: malformed JSON"):
        load_ground_truth(_write(tmp_path, "bad.json", "{not json"))
    with pytest.raises(BadInputError, match=r"missing\.json: file not found"):
        load_ground_truth(tmp_path / "missing.json")
    with pytest.raises(BadInputError, match="missing top-level key 'categories'"):
        load_ground_truth(_write(tmp_path, "nocat.json", {k: v for k, v in g.items() if k != "categories"}))

    def bad_results(entries, match):
        path = _write(tmp_path, "pred.json", entries)
        with pytest.raises(BadInputError, match=match) as info:
            load_results(path, truth)
        assert "pred.json" in str(info.value)

    bad_results([r[0], {"video_id": 1, "category_id": 1, "score": 0.5}], r"\[1\]: missing key\(s\) 'segmentations'")
    bad_results([r[0], r[1], dict(r[2], category_id=99)], r"\[2\]: unknown category_id 99")
    bad_results([dict(r[0], video_id=42)], r"\[0\]: video_id 42 is not in")
    bad_results([dict(r[0], segmentations=r[0]["segmentations"][:2])],
                r"\[0\]: 'segmentations' has 2 entries but video 1 has length 3")
    bad_results([dict(r[0], segmentations=[box(0, 0, 3, 3, (10, 10)), None, None])],
                r"\[0\]\.segmentations\[0\]: RLE size \[10, 10\]")
    bad_results([dict(r[0], score="high")], r"\[0\]\.score: must be a finite number \(got 'high'\)")
    bad_results({"not": "a list"}, "must be a JSON list")

    g_dup = copy.deepcopy(g)
    g_dup["categories"].append({"id": 9, "name": "class1"})
    with pytest.raises(BadInputError, match=r"categories\[2\]: duplicate category name 'class1'"):
        parse_ground_truth(g_dup, source="dup.json")
    g_bad = copy.deepcopy(g)
    g_bad["annotations"][3]["category_id"] = 7
    with pytest.raises(BadInputError, match=r"gt7\.json: annotations\[3\]: unknown category_id 7"):
        load_ground_truth(_write(tmp_path, "gt7.json", g_bad))


def test_uncompressed_and_polygon_ground_truth() -> None:
    m = np.zeros((H, W), dtype=np.uint8)
    m[2:12, 3:13] = 1
    uncompressed = {"size": [H, W], "counts": column_runs(m)}
    polygon = [[3, 2, 13, 2, 13, 12, 3, 12]]
    g = gt_json({1: 2}, [(1, 1, [uncompressed, None]), (1, 2, [polygon, None])])
    r = [res(1, 1, 0.9, [encode(m.astype(bool)), None])]
    assert evaluate_ytvis(g, r).per_class[1]["AP"] == pytest.approx(1.0)
    truth = parse_ground_truth(g)
    assert mask_utils.area(truth.annotations[1].segmentations[0]) > 90
    with pytest.raises(BadInputError, match="not polygons"):
        parse_results([res(1, 1, 0.9, [polygon, None])], truth)
