"""CPU speed of the MinVIS port at short side 360, as a fraction of the machine's fp32 GEMM peak.

Prints, in one run (2 threads, median of ``--reps`` runs after a warm-up):
  * GEMM peak: FLOP/s of a large fp32 matmul (3072 x 3072 x 3072), measured here and now;
  * the whole network (backbone, pixel decoder, decoder) on 360x480 frames (padded 384x480, a
    window of ``--window`` frames per forward): seconds per frame, FLOPs per frame
    (``torch.utils.flop_counter.FlopCounterMode`` on the same forward), achieved FLOP/s and its
    fraction of the peak (target >= 40 %); the stages' seconds per frame;
  * ``predict_video`` on the same frames (network + matching + top-10 + RLE at 576x768): s/frame;
  * one MSDeformAttn layer of the pixel decoder (3780 queries over the 1/8..1/32 levels):
    seconds, FLOPs, fraction of peak; and its sampling core alone, embedding_bag (default)
    vs grid_sample (the reference formulation), side by side.
The reference (MinVIS + detectron2 on CPU, pure-PyTorch MSDeformAttn) took 1.45 s per frame warm
(3.7 s in another run) on this kind of machine, the pixel decoder about two thirds of it.

Frames are the bundled clip's (assets/examples/vtest_150.mp4, 768x576, resized to 360x480);
weights are the minvis-ref recipe's when ../shared/fixtures is there, else random.
Other processes on the machine slow every figure alike; the ratios stay meaningful.

Usage: python bench/bench_vis.py [--reps 3] [--window 4] [--threads 2]
"""
from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from uvis.vis.inference import resize_frame
from uvis.vis.model import MinVIS, build_minvis, load_minvis
from uvis.vis.msdeform import ms_deform_attn, ms_deform_attn_grid_sample, reference_points

REPO = Path(__file__).resolve().parents[1]
CLIP = REPO / "assets" / "examples" / "vtest_150.mp4"
FIXTURE = REPO.parent / "shared" / "fixtures" / "minvis-ref" / "dev_vtest_360.json"
REFERENCE_S_PER_FRAME = (1.45, 3.7)


CPU_S: dict[str, float] = {}
"""Process CPU seconds of the last :func:`median_time` call's median run, by label (filled per run)."""


def median_time(fn: Callable[[], object], reps: int, label: str = "") -> float:
    """Median wall seconds of ``reps`` runs after a warm-up; the matching CPU seconds go to ``CPU_S``."""
    fn()  # warm-up
    runs = []
    for _ in range(reps):
        t, c = time.perf_counter(), time.process_time()
        fn()
        runs.append((time.perf_counter() - t, time.process_time() - c))
    runs.sort()
    wall, cpu = runs[len(runs) // 2]
    CPU_S[label] = cpu
    return wall


def gemm_peak(reps: int) -> tuple[float, float]:
    """(FLOP/s by wall time, FLOP/s per CPU-second x threads) of a 3072^3 fp32 matmul (best of ``reps``)."""
    n = 3072
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    best, best_cpu = float("inf"), float("inf")
    for _ in range(max(reps, 2)):
        best = min(best, median_time(lambda: a @ b, 1, "gemm"))
        best_cpu = min(best_cpu, CPU_S["gemm"])
    return 2.0 * n**3 / best, 2.0 * n**3 / best_cpu * torch.get_num_threads()


def flops_of(fn: Callable[[], object]) -> int:
    """FLOPs counted by FlopCounterMode (grad mode on: its module tracker needs grad functions)."""
    with torch.enable_grad(), FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


def load_model() -> tuple[MinVIS, str]:
    if FIXTURE.is_file():
        from uvis.proposers.cutler.testing import recipe_state_dict

        return load_minvis(recipe_state_dict(FIXTURE)), "minvis-ref recipe weights"
    torch.manual_seed(0)
    return build_minvis().eval(), "random weights"


def clip_frames(n: int) -> list[np.ndarray]:
    import cv2

    cap = cv2.VideoCapture(str(CLIP))
    frames = []
    while len(frames) < n:
        ok, bgr = cap.read()
        if not ok:
            break
        frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    cap.release()
    if not frames:
        raise SystemExit(f"cannot read {CLIP}")
    return frames


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--window", type=int, default=4, help="frames per forward")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    model, weights = load_model()
    originals = clip_frames(args.window)
    frames = [resize_frame(f, 360, 1333) for f in originals]
    batch, _ = model.preprocess(frames)
    t = len(frames)
    print(f"threads {args.threads}, {weights}, {t} frames {frames[0].shape[1]}x{frames[0].shape[0]} "
          f"(padded {batch.shape[3]}x{batch.shape[2]}) per forward")

    peak, peak_cpu = gemm_peak(args.reps)
    print(f"fp32 GEMM peak (3072^3 matmul):  {peak / 1e9:8.1f} GFLOP/s by wall time, "
          f"{peak_cpu / 1e9:.1f} by CPU time x threads")

    with torch.no_grad():
        net_flops = flops_of(lambda: model(batch[:1]))
        net = median_time(lambda: model(batch), args.reps, "net") / t
        net_cpu = CPU_S["net"] / t
        feats = model.backbone(batch)
        bb = median_time(lambda: model.backbone(batch), args.reps) / t
        mf, ms = model.sem_seg_head.pixel_decoder(feats)
        pd = median_time(lambda: model.sem_seg_head.pixel_decoder(feats), args.reps) / t
        dec = median_time(lambda: model.sem_seg_head.predictor(ms, mf), args.reps) / t
        video = median_time(lambda: model.predict_video(originals, top_k=10), args.reps) / t
    rate = net_flops / net
    rate_cpu = net_flops / net_cpu * args.threads
    print(f"network, s/frame:                {net:8.3f}   ({net_flops / 1e9:.1f} GFLOP/frame, "
          f"{rate / 1e9:.1f} GFLOP/s = {100 * rate / peak:.0f} % of peak; target >= 40 %)")
    print(f"  by CPU time (less sensitive to other load): {net_cpu:.3f} CPU-s/frame, "
          f"{100 * rate_cpu / peak_cpu:.0f} % of the CPU-time peak")
    print(f"  backbone / pixel decoder / decoder, s/frame: {bb:.3f} / {pd:.3f} / {dec:.3f}")
    print(f"predict_video (+ matching, top-10, RLE at {originals[0].shape[1]}x{originals[0].shape[0]}), "
          f"s/frame: {video:.3f}")
    lo, hi = REFERENCE_S_PER_FRAME
    print(f"reference MinVIS+detectron2 CPU, s/frame: {lo}-{hi}  ->  port is {lo / net:.1f}x-{hi / net:.1f}x faster")

    # one deformable encoder layer's attention (queries = all positions of the three levels)
    layer = model.sem_seg_head.pixel_decoder.transformer.encoder.layers[0].self_attn
    shapes = [(int(f.shape[2]), int(f.shape[3])) for f in ms]
    s = sum(h * w for h, w in shapes)
    x = torch.randn(1, s, layer.d_model)
    ref = reference_points(shapes)
    with torch.no_grad():
        attn_flops = flops_of(lambda: layer(x, ref, x, shapes))
        attn = median_time(lambda: layer(x, ref, x, shapes), args.reps, "attn")
        attn_cpu = CPU_S["attn"]
        m, d = layer.n_heads, layer.d_model // layer.n_heads
        value = torch.randn(1, s, m, d)
        loc = torch.rand(1, s, m, len(shapes), layer.n_points, 2)
        w = torch.softmax(torch.randn(1, s, m, len(shapes) * layer.n_points), -1).view(1, s, m, len(shapes), -1)
        core_eb = median_time(lambda: ms_deform_attn(value, shapes, loc, w), args.reps)
        core_gs = median_time(lambda: ms_deform_attn_grid_sample(value, shapes, loc, w), args.reps)
    arate = attn_flops / attn
    print(f"MSDeformAttn layer ({s} queries), s: {attn:.4f}   ({attn_flops / 1e9:.2f} GFLOP counted, "
          f"{arate / 1e9:.1f} GFLOP/s = {100 * arate / peak:.0f} % of peak; by CPU time "
          f"{100 * attn_flops / attn_cpu * args.threads / peak_cpu:.0f} %)")
    print(f"  sampling core alone, s: embedding_bag {core_eb:.4f} vs grid_sample {core_gs:.4f} "
          f"({core_gs / core_eb:.1f}x); FlopCounterMode counts no FLOPs for either")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
