"""Dataset-scale decisions (issue 11), per-frame cache files vs consolidated columns, in one run.

For each project size (default 10, 200 and 2,238 videos of 30 frames x 20 proposals at
1280x720, D = 512; YouTube-VIS 2019 train has 2,238 videos) it builds a synthetic
workspace with the project's own :class:`~uvis.cache.CacheWriter`, measures it as
per-frame files, consolidates every video (:func:`uvis.columns.consolidate`) and
measures it again. Each measurement runs in a fresh subprocess (``open_project`` +
``Project.decide``, no torch) and reports: open time, resident memory after opening and
after deciding (VmRSS, which counts the memory-mapped pages touched), the first decision
pass, re-deciding the whole project after a threshold change and re-deciding one video
after a threshold change (medians). Finally the single-video 1,000-frame x 20-instance
re-decide (target <= 100 ms), both ways.

Building is fast: masks come from a bank of pre-encoded 1280x720 ellipses, and beyond
16 distinct videos the frame files of the distinct ones are hard-linked (each video
still gets its own cache folder, meta.json and, after consolidation, its own columns).
Both measurements run with the page cache warm (the files were just written).

Targets at 2,238 videos (issue 11): one-video re-decide <= 100 ms and <= 1.5x its
10-video time; whole-project re-decide <= 5 s; open <= 10 s; resident memory <= 2 GB.

Run: .venv/bin/python bench/bench_scale.py [--sizes 10,200,2238] [--long-frames 1000]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from uvis import masks as M
from uvis.cache import CacheMeta, CacheWriter
from uvis.columns import consolidate
from uvis.config import Config, load_preset
from uvis.types import Instances, VideoInfo
from uvis.workspace import Workspace

H, W, D = 720, 1280, 512
BANK = 64
DISTINCT = 16
THRESHOLDS = (0.5, 0.6, 0.75, 0.8, 0.65)


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def mask_bank(n: int = BANK, seed: int = 0) -> list[dict]:
    """``n`` pre-encoded ellipse masks (COCO RLE at 1280x720) of varied size and place."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:H, 0:W]
    bank = []
    for _ in range(n):
        cx, cy = rng.uniform(120, W - 120), rng.uniform(120, H - 120)
        rx, ry = rng.uniform(30, 110), rng.uniform(30, 110)
        bank.append(M.encode(((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 <= 1))
    return bank


def text_embeddings(seed: int = 0) -> np.ndarray:
    """(C, 7, D) synthetic prompt embeddings for the YouTube-VIS 2019 vocabulary."""
    return _unit(np.random.default_rng(seed).normal(size=(len(load_preset("ytvis2019")), 7, D)))


def write_video(ws: Workspace, name: str, frames: int, per_frame: int, bank: list[dict], bank_boxes: np.ndarray,
                text: np.ndarray, seed: int) -> Path:
    """One synthetic cached video through the project's CacheWriter; returns its cache folder.

    Instance i keeps its class and drifts slowly through the mask bank (consecutive frames
    share masks, so tracks form); embeddings cluster around its class's first prompt."""
    rng = np.random.default_rng(seed)
    info = VideoInfo(name, f"/{name}.mp4", W, H, frames, 30.0, W, H)
    directory = ws.cache_dir(name, "k")
    writer = CacheWriter(directory, CacheMeta(info, "bench", "bench-embedder", {}, D, True, 100.0))
    cls = rng.integers(0, text.shape[0], size=per_frame)
    offset = rng.integers(0, BANK, size=per_frame)
    for t in range(frames):
        idx = (offset + t // 4) % BANK
        emb = _unit(text[cls, 0] + 0.5 * rng.normal(size=(per_frame, D)) / np.sqrt(D))
        inst = Instances(boxes=bank_boxes[idx], masks=[bank[i] for i in idx],
                         objectness=rng.uniform(0.5, 1.0, per_frame), image_size=(H, W), embeddings=emb)
        writer.write_frame(t, inst)
    ws.db.upsert_video(name, info.path, cache_key="k", num_frames=frames, width=W, height=H, status="done")
    return directory


def link_video(ws: Workspace, name: str, template: Path, frames: int) -> Path:
    """A video whose frame files are hard links to ``template``'s (its own cache folder and meta)."""
    info = VideoInfo(name, f"/{name}.mp4", W, H, frames, 30.0, W, H)
    directory = ws.cache_dir(name, "k")
    writer = CacheWriter(directory, CacheMeta(info, "bench", "bench-embedder", {}, D, True, 100.0))
    for t in range(frames):
        os.link(template / "frames" / f"{t:06d}.npz", writer.frame_path(t))
    ws.db.upsert_video(name, info.path, cache_key="k", num_frames=frames, width=W, height=H, status="done")
    return directory


def build(root: Path, videos: int, frames: int, per_frame: int, text: np.ndarray) -> list[Path]:
    bank = mask_bank()
    bank_boxes = M.to_bbox(bank)
    ws = Workspace(root)
    dirs: list[Path] = []
    for v in range(videos):
        name = f"v{v:05d}"
        if v < DISTINCT:
            dirs.append(write_video(ws, name, frames, per_frame, bank, bank_boxes, text, seed=v))
        else:
            dirs.append(link_video(ws, name, dirs[v % DISTINCT], frames))
    ws.close()
    np.save(root / "text.npy", text)
    return dirs


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS"):
            return int(line.split()[1]) / 1024
    return float("nan")


def measure_child(root: str, repeats: int) -> None:
    """Run in a fresh subprocess: open, decide, re-decide; prints one JSON line."""
    from uvis.pipeline import open_project

    text = np.load(Path(root) / "text.npy")
    flat = _unit(text.reshape(-1, D))
    base = _rss_mb()
    ws = Workspace(root)
    t0 = time.perf_counter()
    project = open_project(ws, text_encoder=lambda prompts: flat[: len(prompts)])
    open_s = time.perf_counter() - t0
    rss_open = _rss_mb()
    cfg = Config()
    t0 = time.perf_counter()
    project.decide(cfg)
    first_s = time.perf_counter() - t0
    whole, one = [], []
    one_video = [next(iter(project.caches))]
    for thr in THRESHOLDS[:repeats]:
        t0 = time.perf_counter()
        project.decide(cfg.replace(filters__clip_threshold=thr, filters__objectness_threshold=thr))
        whole.append(time.perf_counter() - t0)
    for thr in THRESHOLDS:
        t0 = time.perf_counter()
        project.decide(cfg.replace(filters__clip_threshold=thr, filters__objectness_threshold=thr), one_video)
        one.append(time.perf_counter() - t0)
    assert "torch" not in sys.modules, "decisions must not import torch"
    instances = sum(len(c.instances) for c in project.caches.values())
    print(json.dumps({"open_s": open_s, "rss_open_mb": rss_open, "rss_mb": _rss_mb(), "rss_base_mb": base,
                      "first_s": first_s, "whole_s": float(np.median(whole)), "one_s": float(np.median(one)),
                      "instances": instances, "videos": len(project.caches)}))
    ws.close()


def measure(root: Path, repeats: int) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", str(root), "--repeats", str(repeats)],
                         capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"measurement of {root} failed:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _line(label: str, r: dict) -> str:
    return (f"  {label:<10} open {r['open_s']:7.2f} s | RSS {r['rss_open_mb']:6.0f} MB open, {r['rss_mb']:6.0f} MB "
            f"decided | first decision {r['first_s'] * 1000:8.0f} ms | re-decide project {r['whole_s'] * 1000:8.0f} ms"
            f" | re-decide one video {r['one_s'] * 1000:7.1f} ms")


def run_size(videos: int, frames: int, per_frame: int, text: np.ndarray, tmp: Path, *, repeats: int = 3,
             per_frame_files: bool = True) -> dict[str, dict]:
    root = tmp / f"ws{videos}x{frames}"
    t0 = time.perf_counter()
    dirs = build(root, videos, frames, per_frame, text)
    build_s = time.perf_counter() - t0
    print(f"{videos} videos x {frames} frames x {per_frame} proposals ({videos * frames * per_frame:,} instances), "
          f"built in {build_s:.1f} s", flush=True)
    frames_r = measure(root, repeats) if per_frame_files else None
    if frames_r is not None:
        print(_line("per-frame", frames_r), flush=True)
    t0 = time.perf_counter()
    for d in dirs:
        consolidate(d)
    cons_s = time.perf_counter() - t0
    cols_r = measure(root, repeats)
    print(_line("columns", cols_r) + f"   (consolidation {cons_s:.1f} s)", flush=True)
    if frames_r is not None:
        ratio = {k: frames_r[k] / max(cols_r[k], 1e-9) for k in ("open_s", "first_s", "whole_s", "one_s")}
        print("  per-frame/columns: " + ", ".join(f"{k} {v:.2f}x" for k, v in ratio.items()), flush=True)
    import shutil

    shutil.rmtree(root, ignore_errors=True)
    return {"frames": frames_r, "columns": cols_r}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="10,200,2238", help="comma-separated numbers of videos")
    ap.add_argument("--frames", type=int, default=30)
    ap.add_argument("--instances", type=int, default=20)
    ap.add_argument("--long-frames", type=int, default=1000, help="frames of the single-video case (0: skip)")
    ap.add_argument("--repeats", type=int, default=3, help="whole-project re-decides per size (median)")
    ap.add_argument("--frames-files-up-to", type=int, default=10**9,
                    help="measure per-frame files only for sizes up to this many videos (columns always)")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        measure_child(args.child, max(1, min(args.repeats, len(THRESHOLDS))))
        return
    try:
        sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    except ValueError:
        print(f"--sizes: {args.sizes!r} is not a comma-separated list of numbers (e.g. 10,200)", file=sys.stderr)
        raise SystemExit(2)
    text = text_embeddings()
    results: dict[int, dict[str, dict]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for n in sizes:
            results[n] = run_size(n, args.frames, args.instances, text, Path(tmp), repeats=args.repeats,
                                  per_frame_files=n <= args.frames_files_up_to)
        if len(sizes) > 1:
            small, big = min(sizes), max(sizes)
            for kind in ("frames", "columns"):
                if results[big][kind] is None or results[small][kind] is None:
                    continue
                r = results[big][kind]["one_s"] / results[small][kind]["one_s"]
                print(f"one-video re-decide, {big} vs {small} videos ({kind}): {r:.2f}x (target <= 1.5x)")
        if args.long_frames:
            print("single video, target: re-decide <= 100 ms")
            run_size(1, args.long_frames, args.instances, text, Path(tmp))


if __name__ == "__main__":
    main()
