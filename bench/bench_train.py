"""CPU training speed of the VIS model (MinVIS R50 defaults, frozen backbone).

Prints, measured side by side in one run:
  * seconds per training iteration (forward + criterion + backward + clip + AdamW step) at
    batch 2, short side 360 (360x480 frames of the bundled clip, padded 384x480), the
    default model (9 decoder layers, 100 queries, 40 classes), frozen ResNet-50;
  * the FLOPs of one iteration (forward + backward, ``torch.utils.flop_counter.FlopCounterMode``)
    and the fraction of the machine's fp32 GEMM peak they reach (peak = a 2048^3 matmul timed
    in the same run; target >= 30 %);
  * data-loader throughput (frames/s of :class:`uvis.vis.train_data.FrameDataset` with the
    training augmentation, ``--workers`` processes) against the frames per second the step
    consumes (the loader must not be the bottleneck).

Usage: python bench/bench_train.py [--iters 3] [--workers 2] [--threads N]
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
VIDEO = REPO / "assets" / "examples" / "vtest_150.mp4"


def gemm_peak(n: int = 2048, reps: int = 5) -> float:
    """fp32 FLOP/s of an n^3 matmul (best of ``reps``)."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t)
    return 2 * n ** 3 / best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--iters", type=int, default=3)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    from torch.utils.flop_counter import FlopCounterMode

    from uvis.vis.train_config import TrainConfig
    from uvis.vis.train_data import TrainSet, from_workspace
    from uvis.vis.train_testing import make_curated_workspace
    from uvis.vis.trainer import Trainer

    tmp = Path(tempfile.mkdtemp(prefix="uvis-bench-train-"))
    ws = make_curated_workspace(tmp / "ws", VIDEO, max_frames=16)
    data = from_workspace(ws, tmp / "frames")
    big = TrainSet(["person"] + [f"class{i}" for i in range(39)], data.samples, data.source)
    cfg = TrainConfig(batch_size=2, max_iter=10 ** 6, min_sizes=(360,), num_workers=args.workers, amp=False)
    trainer = Trainer(cfg, big, tmp / "run", device="cpu")

    loader = trainer.loader(0)
    t0 = time.perf_counter()
    it = iter(loader)
    batches = [next(it) for _ in range(max(args.iters, 1) + 1)]
    first = time.perf_counter()
    more = [next(it) for _ in range(48)]  # more than the prefetch queue (workers x 4)
    load_s = time.perf_counter() - first
    loader_fps = 2 * len(more) / load_s
    del it
    print(f"data loader: first batch after {first - t0:.2f} s (worker start), then {loader_fps:.1f} frames/s "
          f"with {args.workers} workers")

    trainer.step(batches[0], 0)  # warm-up
    times = []
    for i, b in enumerate(batches[1:]):
        t = time.perf_counter()
        trainer.step(b, i + 1)
        times.append(time.perf_counter() - t)
    step_s = statistics.median(times)
    with FlopCounterMode(display=False) as fc:
        trainer.step(batches[1], 99)
    flops = fc.get_total_flops()
    peak = gemm_peak()
    print(f"train step (batch 2, short side 360, frozen R50, {torch.get_num_threads()} threads): "
          f"{step_s:.2f} s/iteration (median of {len(times)})")
    print(f"FLOPs per iteration (forward + backward): {flops / 1e9:.1f} GFLOP -> {flops / step_s / 1e9:.1f} GFLOP/s")
    print(f"fp32 GEMM peak (2048^3 matmul): {peak / 1e9:.1f} GFLOP/s; fraction of peak: "
          f"{100 * flops / step_s / peak:.1f} % (target >= 30 %)")
    consume = 2 / step_s
    print(f"loader {loader_fps:.1f} frames/s vs step {consume:.1f} frames/s: ratio {loader_fps / consume:.1f} "
          f"({'not the bottleneck' if loader_fps > consume else 'THE LOADER IS THE BOTTLENECK'})")


if __name__ == "__main__":
    main()
