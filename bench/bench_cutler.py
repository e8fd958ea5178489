"""CPU speed of the CutLER port against torchvision's Mask R-CNN on the same frame.

Prints seconds per frame (median of interleaved runs) of:
  * the port (Cascade Mask R-CNN R50-FPN, random weights) at ResizeShortestEdge 800/1333,
  * torchvision ``maskrcnn_resnet50_fpn(weights=None, weights_backbone=None)`` (resizes
    to 800/1333 itself),
  * their ratio (target <= 1.25: what detectron2's own cascade measures against
    torchvision on this kind of machine),
  * the port at short side 480.
Both models are in eval mode under ``torch.inference_mode``; the frame is 768x576 RGB.
The port's time covers the whole ``detect()``: resize, network, mask pasting and RLE.

Usage: python bench/bench_cutler.py [--reps 3] [--threads N]
"""
from __future__ import annotations

import argparse
import statistics
import time
from typing import Callable

import numpy as np
import torch

from uvis.proposers.cutler.model import CutlerNet, random_init_

FRAME_HW = (576, 768)


def make_frame(seed: int = 0) -> np.ndarray:
    """A 768x576 RGB uint8 frame with smooth structure (blobs on a gradient) plus noise."""
    rng = np.random.default_rng(seed)
    h, w = FRAME_HW
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.stack([xx / w * 255, yy / h * 255, np.full_like(xx, 128)], axis=-1)
    for _ in range(12):
        cy, cx, r = rng.uniform(0, h), rng.uniform(0, w), rng.uniform(20, 120)
        colour = rng.uniform(0, 255, 3)
        inside = (yy - cy) ** 2 + (xx - cx) ** 2 < r**2
        img[inside] = colour
    img += rng.normal(0, 8, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def build_port(min_size: int) -> CutlerNet:
    """The port as :func:`load_cutler` builds it (fused BN, channels-last), random weights."""
    model = random_init_(CutlerNet(min_size=min_size, max_size=1333)).eval()
    return model.fuse_bn().use_channels_last(True)


def timed(fn: Callable[[], object]) -> tuple[float, float]:
    """(wall seconds, process CPU seconds) of one call."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, default=3, help="timed runs per model (after one warm-up)")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    import torchvision

    torch.manual_seed(0)
    frame = make_frame()
    frame_t = torch.from_numpy(frame).permute(2, 0, 1).float() / 255.0
    tv = torchvision.models.detection.maskrcnn_resnet50_fpn(weights=None, weights_backbone=None).eval()
    port800, port480 = build_port(800), build_port(480)

    runs: dict[str, Callable[[], object]] = {
        "port@800": lambda: port800.detect(frame, score_threshold=0.0),
        "torchvision@800": lambda: tv([frame_t]),
        "port@480": lambda: port480.detect(frame, score_threshold=0.0),
    }
    wall: dict[str, list[float]] = {k: [] for k in runs}
    cpu: dict[str, list[float]] = {k: [] for k in runs}
    with torch.inference_mode():
        counts = {
            "port@800": len(port800.detect(frame, score_threshold=0.0)),
            "torchvision@800": len(tv([frame_t])[0]["boxes"]),
            "port@480": len(port480.detect(frame, score_threshold=0.0)),
        }
        for _ in range(args.reps):  # interleaved, so load from other processes hits all alike
            for key, fn in runs.items():
                w, c = timed(fn)
                wall[key].append(w)
                cpu[key].append(c)

    med = {k: statistics.median(v) for k, v in wall.items()}
    best = {k: min(v) for k, v in wall.items()}
    cpu_med = {k: statistics.median(v) for k, v in cpu.items()}
    print(f"frame {FRAME_HW[1]}x{FRAME_HW[0]}, torch {torch.__version__}, threads {torch.get_num_threads()}, "
          f"reps {args.reps}: wall seconds per frame, median (min) [process CPU seconds, median]")
    for key in runs:
        print(f"  {key:<16} {med[key]:7.3f} s/frame ({best[key]:.3f})  [{cpu_med[key]:7.3f} CPU s]  "
              f"detections {counts[key]}  runs {', '.join(f'{x:.2f}' for x in wall[key])}")
    ratio = med["port@800"] / med["torchvision@800"]
    print(f"  ratio port/torchvision at 800: {ratio:.3f} median, {best['port@800'] / best['torchvision@800']:.3f} min, "
          f"{cpu_med['port@800'] / cpu_med['torchvision@800']:.3f} CPU (target <= 1.25) -> "
          f"{'OK' if ratio <= 1.25 else 'SLOWER'}")
    print(f"  speed-up of short side 480 over 800: {med['port@800'] / med['port@480']:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
