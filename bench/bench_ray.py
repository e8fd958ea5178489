"""Throughput of ``--engine local`` vs ``--engine ray --workers 2`` on the same clip.

One run, side by side, on the bundled clip (``assets/examples/vtest_150.mp4``, first
``--frames`` frames) with CutLER (the ``shared/fixtures/cutler-ref`` recipe weights: the
real architecture, so the real cost) at short side 480 and EfficientNet-Lite0 crop
embeddings. Prints:

* frames/s of the local engine (this process, torch using every core), of Ray with one
  worker and of Ray with ``--workers`` workers (one CPU and one torch thread each), model
  loading excluded from all three;
* the speed-up of Ray over local and the scaling efficiency (speed-up over one Ray
  worker / number of workers; 100 % = linear). On a 2-core machine expect at most 2x;
  the local engine already uses both cores through torch's threads;
* Ray's start-up overhead: starting a head node, and connecting plus starting the
  workers (interpreter, imports, model loading) beyond the local engine's own model
  loading.

Usage: python bench/bench_ray.py [--frames 8] [--workers 2] [--min-size 480] [--no-single]
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from uvis.config import Config
from uvis.engines.ray_engine import RayOptions, label_with_ray
from uvis.engines.testing import LocalRayCluster
from uvis.proposers.cutler.testing import write_recipe_checkpoint
from uvis.runner import Runner
from uvis.workspace import Workspace

REPO = Path(__file__).resolve().parents[1]
CLIP = REPO / "assets" / "examples" / "vtest_150.mp4"
FIXTURE = REPO.parent / "shared" / "fixtures" / "cutler-ref" / "dev_astronaut.json"


def make_config(weights: Path, frames: int, min_size: int) -> Config:
    cfg = Config().to_dict()
    cfg["proposer"].update(backend="cutler", cutler_weights=str(weights), min_size=min_size)
    cfg["embedder"].update(backend="efficientnet")
    cfg["video"].update(max_frames=frames)
    return Config.from_dict(cfg)


def run_local(root: Path, cfg: Config) -> tuple[float, float]:
    """(model loading seconds, labelling seconds) of the local engine."""
    ws = Workspace(root / "local")
    runner = Runner(ws, cfg)
    t0 = time.perf_counter()
    runner.embedder  # noqa: B018 - load the models before timing the frames
    from uvis.proposers.factory import make_proposer

    proposer = make_proposer(cfg.proposer, "vtest_150")
    load = time.perf_counter() - t0
    runner._proposer_factory = lambda _name, _info: proposer
    t1 = time.perf_counter()
    runner.label_video(CLIP)
    ws.close()
    return load, time.perf_counter() - t1


def run_ray(root: Path, cfg: Config, cluster: LocalRayCluster, workers: int, chunk: int):
    import ray

    ws = Workspace(root / f"ray{workers}")
    ray.init(address=cluster.address, log_to_driver=False, configure_logging=False)
    try:
        return label_with_ray(ws, cfg, [CLIP], RayOptions(workers=workers, chunk_frames=chunk))
    finally:
        ray.shutdown()
        ws.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=8, help="frames of the clip to label")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--min-size", type=int, default=480, help="CutLER short side")
    parser.add_argument("--no-single", action="store_true", help="skip the one-worker Ray run")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="uvis-bench-ray-") as tmp:
        root = Path(tmp)
        weights = write_recipe_checkpoint(root / "cutler_recipe.pth", FIXTURE, seed=7)
        cfg = make_config(weights, args.frames, args.min_size)
        load, local_s = run_local(root, cfg)
        n = args.frames
        print(f"clip {CLIP.name}, {n} frames, CutLER (recipe weights) at short side {args.min_size} + EfficientNet")
        print(f"local engine          : {n / local_s:6.3f} frames/s ({local_s:.1f} s; models loaded in {load:.1f} s)")
        import os

        with LocalRayCluster(num_cpus=args.workers) as cluster:
            os.environ.update({k: v for k, v in cluster.env().items() if k.startswith("RAY_")})
            single = None
            if not args.no_single:
                single = run_ray(root, cfg, cluster, 1, chunk=max(1, n // 4))
                print(f"ray, 1 worker         : {n / single.label_seconds:6.3f} frames/s "
                      f"({single.label_seconds:.1f} s)")
            many = run_ray(root, cfg, cluster, args.workers, chunk=max(1, n // (2 * args.workers)))
            print(f"ray, {args.workers} workers        : {n / many.label_seconds:6.3f} frames/s "
                  f"({many.label_seconds:.1f} s)")
            speedup = local_s / many.label_seconds
            print(f"speed-up ray {args.workers} workers / local: {speedup:.2f}x")
            if single is not None:
                eff = single.label_seconds / many.label_seconds / args.workers
                print(f"scaling efficiency ({args.workers} workers vs 1): {100 * eff:.0f} %")
            print(f"scaling efficiency vs local (speed-up / {args.workers}): {100 * speedup / args.workers:.0f} %")
            print(f"ray start-up: head node {cluster.start_seconds:.1f} s; connect + {args.workers} workers ready "
                  f"{many.start_seconds:.1f} s (local model loading {load:.1f} s) -> overhead "
                  f"{cluster.start_seconds + many.start_seconds - load:.1f} s per run")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
