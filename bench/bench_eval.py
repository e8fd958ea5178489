"""Timing of the evaluators against their targets (issue 6).

    python bench/bench_eval.py [--frames 10000] [--videos 300] [--seed 0]

* frame-level F1 over 10,000 frames x 20 predictions (3 ground-truth objects per
  frame, 720x1280 masks): target <= 10 s;
* YouTube-VIS AP/AR over 300 videos x 10 predictions (36 frames, 1-3 ground-truth
  tracks, 40 classes, 720x1280), parsing of the JSON dicts included: target <= 60 s.

Masks are random convex polygons (octagons) jittered per prediction, so IoUs span the
whole range and the matching does real work. Data generation is not timed.
"""
from __future__ import annotations

import argparse
import time

import numpy as np
from pycocotools import mask as mask_utils

from uvis.eval.frame_f1 import FrameObject, frame_f1
from uvis.eval.ytvis_ap import evaluate_ytvis

H, W = 720, 1280


def _octagon(rng: np.random.Generator, cx: float, cy: float, rx: float, ry: float) -> list[float]:
    ang = np.linspace(0, 2 * np.pi, 8, endpoint=False) + rng.uniform(0, 0.4)
    xs = np.clip(cx + rx * np.cos(ang), 0, W - 1)
    ys = np.clip(cy + ry * np.sin(ang), 0, H - 1)
    return np.stack([xs, ys], 1).ravel().tolist()


def _rles(polys: list[list[float]]) -> list[dict]:
    """One RLE per polygon, ``counts`` as str (the UVIS convention)."""
    out = mask_utils.frPyObjects(polys, H, W) if polys else []
    for r in out:
        r["counts"] = r["counts"].decode("ascii")
    return out


def _object(rng: np.random.Generator) -> tuple[float, float, float, float]:
    return rng.uniform(100, W - 100), rng.uniform(80, H - 80), rng.uniform(20, 200), rng.uniform(20, 150)


def _jitter(rng: np.random.Generator, obj, amount: float = 0.15):
    cx, cy, rx, ry = obj
    return (cx + rng.normal(0, amount * rx), cy + rng.normal(0, amount * ry),
            rx * rng.uniform(0.8, 1.2), ry * rng.uniform(0.8, 1.2))


def make_frames(n_frames: int, n_preds: int, n_gt: int, n_classes: int, seed: int):
    rng = np.random.default_rng(seed)
    gts, preds = [], []
    for _ in range(n_frames):
        objs = [(_object(rng), int(rng.integers(1, n_classes + 1))) for _ in range(n_gt)]
        g_rles = _rles([_octagon(rng, *o) for o, _ in objs])
        gts.append([FrameObject(c, r) for (_, c), r in zip(objs, g_rles)])
        polys, classes = [], []
        for k in range(n_preds):
            if k < 2 * n_gt:  # two candidates per object (one duplicate)
                o, c = objs[k % n_gt]
                classes.append(c if rng.random() < 0.8 else int(rng.integers(1, n_classes + 1)))
                polys.append(_octagon(rng, *_jitter(rng, o)))
            else:
                classes.append(int(rng.integers(1, n_classes + 1)))
                polys.append(_octagon(rng, *_object(rng)))
        preds.append([FrameObject(c, r, float(rng.random())) for c, r in zip(classes, _rles(polys))])
    return gts, preds


def make_videos(n_videos: int, n_preds: int, length: int, n_classes: int, seed: int):
    rng = np.random.default_rng(seed)
    videos, anns, results = [], [], []
    for v in range(1, n_videos + 1):
        videos.append({"id": v, "width": W, "height": H, "length": length,
                       "file_names": [f"v{v:04d}/{t:05d}.jpg" for t in range(length)]})
        tracks = []
        for _ in range(int(rng.integers(1, 4))):
            c, o = int(rng.integers(1, n_classes + 1)), _object(rng)
            start = int(rng.integers(0, length // 3))
            path = []
            for _ in range(length):
                o = _jitter(rng, o, 0.02)  # the object drifts
                path.append(o)
            segs = [None] * start + _rles([_octagon(rng, *o) for o in path[start:]])
            tracks.append((path, start, c))
            anns.append({"id": len(anns) + 1, "video_id": v, "category_id": c, "segmentations": segs, "iscrowd": 0})
        for k in range(n_preds):
            if k < 2 * len(tracks):  # a tracked prediction per object, plus a sloppier duplicate
                path, start, c = tracks[k % len(tracks)]
                noise = 0.05 if k < len(tracks) else 0.2
                c = c if rng.random() < 0.8 else int(rng.integers(1, n_classes + 1))
                first = max(0, start - int(rng.integers(0, 3)))
                segs = [None] * first + _rles([_octagon(rng, *_jitter(rng, path[max(t, start)], noise))
                                               for t in range(first, length)])
            else:
                obj, c = _object(rng), int(rng.integers(1, n_classes + 1))
                segs = _rles([_octagon(rng, *_jitter(rng, obj, 0.05)) for _ in range(length)])
            results.append({"video_id": v, "category_id": c, "score": float(rng.random()), "segmentations": segs})
    gt = {"videos": videos, "annotations": anns,
          "categories": [{"id": c, "name": f"class{c}"} for c in range(1, n_classes + 1)]}
    return gt, results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=10_000)
    ap.add_argument("--videos", type=int, default=300)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    t0 = time.perf_counter()
    gts, preds = make_frames(args.frames, 20, 3, 40, args.seed)
    gen_f = time.perf_counter() - t0
    t0 = time.perf_counter()
    f1 = frame_f1(gts, preds)
    t_f1 = time.perf_counter() - t0
    t0 = time.perf_counter()
    f1_agn = frame_f1(gts, preds, class_agnostic=True)
    t_f1_agn = time.perf_counter() - t0
    tot = f1.total
    print(f"frame F1: {args.frames} frames x 20 predictions (3 GT): {t_f1:.2f} s class-aware, "
          f"{t_f1_agn:.2f} s class-agnostic (target <= 10 s) [{'ok' if max(t_f1, t_f1_agn) <= 10 else 'SLOW'}]  "
          f"TP {tot.tp} FP {tot.fp} FN {tot.fn} mF1 {100 * f1.mF1:.1f}, agnostic F1 {100 * f1_agn.mF1:.1f} "
          f"(data generation {gen_f:.1f} s, not timed)")

    t0 = time.perf_counter()
    gt, results = make_videos(args.videos, 10, 36, 40, args.seed)
    gen_v = time.perf_counter() - t0
    t0 = time.perf_counter()
    ap_res = evaluate_ytvis(gt, results)
    t_ap = time.perf_counter() - t0
    t0 = time.perf_counter()
    agn = evaluate_ytvis(gt, results, class_agnostic=True)
    t_agn = time.perf_counter() - t0
    print(f"video AP: {args.videos} videos x 10 predictions x 36 frames: {t_ap:.2f} s class-aware, "
          f"{t_agn:.2f} s class-agnostic (target <= 60 s) [{'ok' if max(t_ap, t_agn) <= 60 else 'SLOW'}]  "
          f"AP {100 * ap_res['AP']:.1f} AP50 {100 * ap_res['AP50']:.1f} agnostic AP {100 * agn['AP']:.1f} "
          f"(data generation {gen_v:.1f} s, not timed)")


if __name__ == "__main__":
    main()
