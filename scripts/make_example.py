"""Make the bundled example clip ``assets/examples/vtest_150.mp4`` from OpenCV's ``vtest.avi``.

Source: ``vtest.avi`` from OpenCV's sample data (``samples/data/vtest.avi`` upstream),
installed on Debian by ``apt-get install -y opencv-doc`` at
``/usr/share/doc/opencv-doc/examples/data/vtest.avi`` (768x576, 10 fps, 795 frames,
MS-MPEG4v3; a static camera over a square with pedestrians).

The clip: the first 150 frames, downscaled to half size (384x288, area filter), encoded
as H.264 (libx264, yuv420p, CRF 20, preset medium, one thread so the output is
byte-reproducible with the same ffmpeg build, ``+faststart``) at the source's 10 fps,
so browsers and the FiftyOne App play it and OpenCV reads it back exactly.

Usage::

    apt-get install -y opencv-doc ffmpeg      # as root, once
    .venv/bin/python scripts/make_example.py  # writes assets/examples/vtest_150.mp4

The script checks the result: OpenCV must decode exactly ``--frames`` frames of the
expected size, and the file must stay under 2 MB.
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

import cv2

DEFAULT_SOURCE = Path("/usr/share/doc/opencv-doc/examples/data/vtest.avi")
DEFAULT_OUTPUT = Path(__file__).resolve().parents[1] / "assets" / "examples" / "vtest_150.mp4"
MAX_BYTES = 2 * 1024 * 1024


def make_clip(source: Path, output: Path, frames: int, width: int, height: int, crf: int) -> None:
    """Cut the first ``frames`` frames of ``source``, scale to ``width``x``height``, encode H.264."""
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        sys.exit("ffmpeg not found: install it with `apt-get install -y ffmpeg`")
    if not source.is_file():
        sys.exit(f"{source} not found: install it with `apt-get install -y opencv-doc`")
    output.parent.mkdir(parents=True, exist_ok=True)
    cmd = [
        ffmpeg, "-hide_banner", "-loglevel", "error", "-y", "-i", str(source),
        "-vf", f"trim=start_frame=0:end_frame={frames},setpts=PTS-STARTPTS,scale={width}:{height}:flags=area",
        "-an", "-c:v", "libx264", "-preset", "medium", "-crf", str(crf), "-pix_fmt", "yuv420p",
        "-threads", "1", "-movflags", "+faststart", "-map_metadata", "-1", "-fflags", "+bitexact",
        "-flags:v", "+bitexact", str(output),
    ]
    subprocess.run(cmd, check=True)


def check_clip(path: Path, frames: int, width: int, height: int) -> None:
    """OpenCV must decode exactly ``frames`` frames of ``width``x``height``; size < 2 MB."""
    cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    if not cap.isOpened():
        sys.exit(f"OpenCV cannot open {path}")
    count = 0
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        if frame.shape[:2] != (height, width):
            sys.exit(f"{path}: frame {count} is {frame.shape[1]}x{frame.shape[0]}, expected {width}x{height}")
        count += 1
    cap.release()
    size = path.stat().st_size
    if count != frames:
        sys.exit(f"{path}: OpenCV decodes {count} frames, expected {frames}")
    if size >= MAX_BYTES:
        sys.exit(f"{path}: {size} bytes, must stay under {MAX_BYTES}")
    print(f"{path}: {count} frames {width}x{height}, {size / 1024:.0f} KiB")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE)
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    parser.add_argument("--frames", type=int, default=150)
    parser.add_argument("--width", type=int, default=384)
    parser.add_argument("--height", type=int, default=288)
    parser.add_argument("--crf", type=int, default=20)
    args = parser.parse_args(argv)
    make_clip(args.source, args.output, args.frames, args.width, args.height, args.crf)
    check_clip(args.output, args.frames, args.width, args.height)


if __name__ == "__main__":
    main()
