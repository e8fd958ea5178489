"""Export speed: 1,000 frames x 20 instances (targets: FiftyOne <= 60 s, YouTube-VIS JSON <= 10 s).

Builds a model-free workspace in a temporary folder: a real 1,000-frame 640x360
MPEG-4 video (cv2.VideoWriter) and a cache of 20 hand-made moving instances per frame
(masks, boxes, embeddings near their class's text direction, so most are kept and
tracked), decides it with the real pipeline, then times each exporter and the
importers that read the exports back. FiftyOne runs on a temporary database
(``FIFTYONE_DATABASE_DIR`` in a temporary folder) unless ``--keep-db`` is given.

    .venv/bin/python bench/bench_export.py [--frames 1000] [--instances 20]
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np

VOCAB = ["person", "dog", "cat", "horse", "car"]
D = 16
W, H = 640, 360


def _unit(v: np.ndarray) -> np.ndarray:
    return (v / np.linalg.norm(v, axis=-1, keepdims=True)).astype(np.float32)


def text_encoder(prompts: list[str]) -> np.ndarray:
    out = np.zeros((len(prompts), D), np.float32)
    for i, p in enumerate(prompts):
        cls = next(k for k, c in enumerate(VOCAB) if f" {c}" in p)
        out[i, cls] = 1.0
        out[i, 8 + len(p) % 8] = 0.1
    return _unit(out)


def make_video(path: Path, n_frames: int) -> None:
    import cv2

    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 25.0, (W, H))
    yy, xx = np.mgrid[0:H, 0:W]
    base = np.stack([(xx // 3) % 256, (yy // 2) % 256, np.full_like(xx, 90)], -1).astype(np.uint8)
    for t in range(n_frames):
        img = base.copy()
        for k in range(6):
            x = (40 * k + 3 * t) % (W - 60)
            img[60 + 40 * k % 240: 100 + 40 * k % 240, x:x + 50] = (40 * k % 255, 200, 255 - 30 * k)
        writer.write(img)
    writer.release()


def make_workspace(root: Path, n_frames: int, n_inst: int):
    from uvis import masks as M
    from uvis.cache import CacheMeta, CacheWriter
    from uvis.config import Config
    from uvis.types import Instances
    from uvis.video import open_video
    from uvis.workspace import Workspace

    video = root / "bench.mp4"
    make_video(video, n_frames)
    ws = Workspace(root / "ws")
    with open_video(video, name="bench") as reader:
        info = reader.info
    writer = CacheWriter(ws.cache_dir("bench", "k"), CacheMeta(info, "bench", "bench-embedder", {}, D, True, 100.0))
    rng = np.random.default_rng(0)
    cls = np.arange(n_inst) % len(VOCAB)
    centre = rng.uniform([40, 40], [W - 40, H - 40], size=(n_inst, 2))
    speed = rng.uniform(-2, 2, size=(n_inst, 2))
    radii = rng.uniform(10, 30, size=(n_inst, 2))
    import cv2

    for t in range(n_frames):
        c = (centre + speed * t) % [W - 60, H - 60] + 30
        masks = np.zeros((n_inst, H, W), np.uint8)
        for k in range(n_inst):
            cv2.ellipse(masks[k], (int(c[k, 0]), int(c[k, 1])), (int(radii[k, 0]), int(radii[k, 1])), 0, 0, 360,
                        1, -1)
        rles = M.encode_many(masks)
        emb = np.zeros((n_inst, D), np.float32)
        emb[np.arange(n_inst), cls] = 1.0
        emb = _unit(emb + 0.05 * rng.normal(size=emb.shape))
        obj = np.where(rng.random(n_inst) < 0.1, 0.5, 0.9).astype(np.float32)  # ~10 % dropped
        writer.write_frame(t, Instances(boxes=M.to_bbox(rles), masks=rles, objectness=obj, image_size=(H, W),
                                        embeddings=emb))
    ws.db.upsert_video("bench", str(video), cache_key="k", num_frames=info.num_frames, width=W, height=H)
    return ws, Config().replace(labeler__vocabulary=VOCAB)


def timed(label: str, fn, target: float | None = None):
    t0 = time.perf_counter()
    out = fn()
    dt = time.perf_counter() - t0
    verdict = "" if target is None else ("  (target <= %.0f s: %s)" % (target, "OK" if dt <= target else "MISSED"))
    print(f"{label:<52s} {dt:7.2f} s{verdict}", flush=True)
    return out, dt


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=1000)
    ap.add_argument("--instances", type=int, default=20)
    ap.add_argument("--keep-db", action="store_true", help="use the configured FiftyOne database")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="uvis-bench-export-"))
    if not args.keep_db:
        os.environ["FIFTYONE_DATABASE_DIR"] = str(tmp / "fo-db")
    os.environ.setdefault("FIFTYONE_DO_NOT_TRACK", "true")
    os.environ.setdefault("FIFTYONE_DATABASE_VALIDATION", "false")
    from uvis.export.coco import export_coco
    from uvis.export.fiftyone_export import export_fiftyone
    from uvis.export.importers import import_fiftyone_dataset, read_ytvis_instances
    from uvis.export.ytvis import export_ytvis, export_ytvis_results
    from uvis.pipeline import open_project

    print(f"export bench: {args.frames} frames x {args.instances} instances, {W}x{H}, temp {tmp}")
    (ws, cfg), _ = timed("setup (video + cache, not an export)", lambda: make_workspace(tmp, args.frames,
                                                                                        args.instances))
    results, _ = timed("decide", lambda: open_project(ws, text_encoder=text_encoder).decide(cfg))
    r = results["bench"]
    print(f"  {len(r.instances)} instances, {int(r.kept.sum())} kept, {len(r.tracks)} tracks")
    timed("YouTube-VIS annotation JSON", lambda: export_ytvis(results, tmp / "ytvis.json"), 10)
    timed("YouTube-VIS results JSON", lambda: export_ytvis_results(results, tmp / "results.json"), 10)
    timed("YouTube-VIS JSON + JPEG frames", lambda: export_ytvis(results, tmp / "ytvis2.json",
                                                                 frames_dir=tmp / "frames"))
    timed("COCO JSON + JPEG frames", lambda: export_coco(results, tmp / "coco"))
    timed("read YouTube-VIS JSON back (exact round trip)", lambda: read_ytvis_instances(tmp / "ytvis.json"))
    import fiftyone as fo

    timed("FiftyOne database start (not an export)", fo.list_datasets)
    media = tmp / "media"
    timed("FiftyOne export (H.264 encode + labels)", lambda: export_fiftyone(results, "uvis-bench", media_dir=media),
          60)
    timed("FiftyOne re-export --overwrite (media reused)",
          lambda: export_fiftyone(results, "uvis-bench", media_dir=media, overwrite=True), 60)
    timed("read FiftyOne dataset back (exact round trip)", lambda: import_fiftyone_dataset("uvis-bench"))
    fo.delete_dataset("uvis-bench")
    ws.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
