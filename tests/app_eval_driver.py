"""Drives the app's Evaluate handler (the function the "compute per-class F1" button
calls, taken from the built Gradio app) over ground-truth files, in its own process.

Usage: ``python tests/app_eval_driver.py WORKDIR LIST.json`` where LIST.json holds
ground-truth file paths. Builds a tiny labelled workspace in WORKDIR (a real 8-frame
video, a hand-made cache, a toy text encoder), then for each file calls the handler as
an upload and prints one JSON line ``{"path", "seconds", "reply"}``; finally prints
``{"done": n}``. A crash of the handler kills this process: the caller sees it.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import cv2
import numpy as np

from app.handlers import DecisionSettings
from app.main import build_app
from app.state import AppController
from uvis import masks as M
from uvis.cache import CacheMeta, CacheWriter
from uvis.config import Config
from uvis.testing import ToyTextEncoder, unit
from uvis.text_cache import TextEmbeddingCache
from uvis.types import Instances, VideoInfo
from uvis.workspace import Workspace

H, W, N, D = 48, 96, 8, 6
VOCAB = ("cat", "dog", "cow")


def make_workspace(root: Path) -> Workspace:
    """Video 'clip' (8 frames 96x48), two instances per frame, cached and labelled."""
    ws = Workspace(root)
    video = root / "clip.avi"
    wr = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (W, H))
    for t in range(N):
        wr.write(np.full((H, W, 3), 40 + 20 * t, np.uint8))
    wr.release()
    info = VideoInfo(name="clip", path=str(video), width=W, height=H, num_frames=N, fps=10, source_width=W,
                     source_height=H, source_indices=tuple(range(N)))
    writer = CacheWriter(ws.cache_dir("clip", "k"), CacheMeta(info, "test-proposer", "test-embedder",
                                                              {"backend": "efficientnet"}, D, True, 10.0))
    for t in range(N):
        ms = np.zeros((2, H, W), bool)
        ms[0, 10:40, 4 + t:24 + t] = True
        ms[1, 10:40, 60:90] = True
        rles = M.encode_many(ms)
        writer.write_frame(t, Instances(boxes=M.to_bbox(rles), masks=rles, objectness=[0.95, 0.9], image_size=(H, W),
                                        embeddings=unit([[1, 0.05, 0, 0.02 * t, 0, 0], [0.7, 0.7, 0, 0, 0.01 * t, 0]])))
    ws.db.upsert_video("clip", str(video), cache_key="k", num_frames=N, width=W, height=H, status="done")
    cfg = Config().replace(labeler__vocabulary=list(VOCAB))
    TextEmbeddingCache(ws.text_cache_dir, "test-embedder").get(cfg.prompts(), ToyTextEncoder(VOCAB, D))
    return ws


def main(workdir: str, listing: str) -> int:
    ws = make_workspace(Path(workdir) / "ws")
    cfg = Config().replace(labeler__vocabulary=list(VOCAB))
    ctrl = AppController(ws, cfg, [], start_worker=False)
    demo = build_app(ctrl)
    handler = next(f.fn for f in demo.fns.values() if getattr(f, "name", "") == "on_eval")
    settings = DecisionSettings.from_config(cfg).values()
    paths = json.loads(Path(listing).read_text())
    for p in paths:
        t0 = time.perf_counter()
        reply = handler("", p, *settings)
        print(json.dumps({"path": p, "seconds": time.perf_counter() - t0, "reply": str(reply)}), flush=True)
    print(json.dumps({"done": len(paths)}), flush=True)
    ctrl.close()
    ws.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
