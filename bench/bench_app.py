"""Bench: how fast the page updates, measured in the browser (targets: median ≤ 150 ms on
the bundled clip, ≤ 300 ms on a 1,000-frame 1280×720 video).

Two workspaces are labelled once (cached under ``$UVIS_CACHE/bench/``, reused by later
runs) with the motion proposer and the tiny random CLIP (``uvis-tiny-vit``: real code
paths, label scores that move with the threshold): the bundled 150-frame clip, and a
synthetic 1,000-frame 1280×720 video of moving shapes over a textured background.
For each, ``launch.py`` serves the app on 127.0.0.1 and headless Debian Chromium
(Playwright) measures, inside the page, the time from the user's input event (the key
or click, ``performance.now()`` in a capture listener) to the first change of the
canvas (a new canvas element: every update carries the settings digest and frame), of
the counts text or of the notice (written by the same response) — not Gradio's status
spinners:

* threshold change — arrow keys on the score-threshold slider,
* frame step — the → key,
* curation action — accept / reject of the selected instance, alternately.

    .venv/bin/python bench/bench_app.py [--steps 12] [--long-frames 1000]
"""
from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "assets" / "examples" / "vtest_150.mp4"
CHROMIUM = "/usr/bin/chromium"
EMBEDDER = ["--embedder", "clip", "--clip-model", "uvis-tiny-vit", "--clip-pretrained", "none",
            "--proposer", "motion"]

PROBE_JS = """() => {
  // t0: the user's input event; t1: the first DOM change of the view's content (a new canvas
  // element, or new counts text) — not Gradio's status spinners
  window.uvT0 = null; window.uvT1 = null;
  const sig = () => {
    const c = document.querySelector('#canvas .uv-canvas');
    const n = document.querySelector('#counts [data-testid=markdown]');
    const m = document.querySelector('#notice-text');
    return [c, (n ? n.textContent : '') + '|' + (m ? m.textContent : '')];
  };
  const mark = () => { window.uvT0 = performance.now(); window.uvT1 = null; window.uvSig = sig(); };
  document.addEventListener('keydown', mark, true);
  document.addEventListener('click', mark, true);
  const seen = () => {
    if (window.uvT0 === null || window.uvT1 !== null) return;
    const [c, n] = sig();
    if (c !== window.uvSig[0] || n !== window.uvSig[1]) window.uvT1 = performance.now();
  };
  new MutationObserver(seen).observe(document.body, {childList: true, subtree: true, characterData: true});
}"""


def synthetic_video(path: Path, frames: int, width: int = 1280, height: int = 720) -> Path:
    """Moving ellipses and boxes over a fixed textured background (MJPG AVI), made once."""
    if path.is_file():
        return path
    import cv2

    rng = np.random.default_rng(0)
    bg = cv2.GaussianBlur(rng.integers(60, 200, (height // 8, width // 8, 3), dtype=np.uint8), (5, 5), 0)
    bg = cv2.resize(bg, (width, height), interpolation=cv2.INTER_LINEAR)
    objs = [(rng.uniform(0, width), rng.uniform(0, height), rng.uniform(-6, 6), rng.uniform(-4, 4),
             int(rng.integers(30, 90)), tuple(int(c) for c in rng.integers(0, 255, 3))) for _ in range(8)]
    tmp = path.with_suffix(".part.avi")
    wr = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"MJPG"), 25.0, (width, height))
    for t in range(frames):
        img = bg.copy()
        for k, (x, y, vx, vy, r, col) in enumerate(objs):
            cx, cy = int((x + vx * t) % width), int((y + vy * t) % height)
            if k % 2:
                cv2.ellipse(img, (cx, cy), (r, int(r * 1.6)), 0, 0, 360, col, -1)
            else:
                cv2.rectangle(img, (cx - r, cy - r), (cx + r, cy + r), col, -1)
        wr.write(img)
    wr.release()
    tmp.replace(path)
    return path


def label(workspace: Path, video: Path, frames: int) -> None:
    """Label ``video`` into ``workspace`` once (skipped when already done)."""
    from uvis.workspace import Workspace

    ws = Workspace(workspace)
    try:
        done = any(r.status == "done" for r in ws.db.videos())
    finally:
        ws.close()
    if done:
        return
    print(f"labelling {video.name} ({frames} frames) into {workspace} once…", file=sys.stderr)
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "uvis", "label", str(video), "--workspace", str(workspace),
                    "--max-frames", str(frames), *EMBEDDER], check=True, cwd=REPO)
    print(f"  labelled in {time.perf_counter() - t0:.0f} s", file=sys.stderr)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve(workspace: Path) -> tuple[subprocess.Popen, str]:
    port = _free_port()
    env = dict(os.environ, GRADIO_ANALYTICS_ENABLED="False", HF_HUB_OFFLINE="1", UVIS_OFFLINE="1",
               PYTHONPATH=str(REPO))
    proc = subprocess.Popen([sys.executable, str(REPO / "launch.py"), "--workspace", str(workspace), "--port",
                             str(port), "--no-example", "--quiet", *EMBEDDER], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return proc, url
        except OSError:
            time.sleep(0.3)
    proc.kill()
    raise RuntimeError(f"the app did not start on {url}")


def _measure(pg, act, steps: int) -> list[float]:
    out = []
    for k in range(steps):
        pg.evaluate("() => { window.uvT0 = null; window.uvT1 = null; }")
        act(k)
        deadline = time.monotonic() + 30
        while pg.evaluate("() => window.uvT1") is None:
            if time.monotonic() > deadline:
                note = pg.evaluate("() => (document.querySelector('#notice-text') || {}).innerText || ''")
                raise RuntimeError(f"the page did not update within 30 s (notice: {note!r})")
            time.sleep(0.005)
        out.append(pg.evaluate("() => window.uvT1 - window.uvT0"))
        time.sleep(0.15)  # let trailing updates (statistics, status) settle
    return out


def bench_one(browser, url: str, steps: int) -> dict[str, list[float]]:
    pg = browser.new_page(viewport={"width": 1280, "height": 720})
    pg.goto(url)
    pg.wait_for_selector("#counts:has-text('kept')", timeout=120_000)
    pg.wait_for_selector("#pane-a .uv-img")
    time.sleep(1.0)
    pg.evaluate(PROBE_JS)
    res: dict[str, list[float]] = {}
    # threshold: set a value where the tiny CLIP's scores sit, then step with the arrow keys
    box = pg.locator("#clip-threshold input[type=number]")
    box.fill("0.15")
    box.blur()
    time.sleep(1.5)
    rng = pg.locator("#clip-threshold input[type=range]")
    rng.focus()
    res["threshold change"] = _measure(pg, lambda k: pg.keyboard.press("ArrowRight" if (k // 4) % 2 == 0
                                                                       else "ArrowLeft"), steps)
    pg.locator("body").click(position={"x": 3, "y": 3})
    time.sleep(0.5)
    res["frame step"] = _measure(pg, lambda k: pg.keyboard.press("ArrowRight"), steps)
    for _ in range(50):  # a frame with instances; select its first one
        if pg.locator("#pane-a .uv-hit").count():
            break
        pg.keyboard.press("ArrowRight")
        time.sleep(0.5)
    pg.locator("#pane-a .uv-hit").first.click(force=True)
    pg.wait_for_selector("#instance-card", timeout=30_000)
    time.sleep(0.5)
    res["curation action"] = _measure(pg, lambda k: pg.click("#accept" if k % 2 == 0 else "#reject"), steps)
    pg.close()
    return res


def fmt(xs: list[float]) -> str:
    xs = sorted(xs)
    p90 = xs[min(len(xs) - 1, int(round(0.9 * (len(xs) - 1))))]
    return f"median {statistics.median(xs):6.1f} ms  p90 {p90:6.1f} ms  max {xs[-1]:6.1f} ms"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=12, help="updates timed per kind")
    ap.add_argument("--long-frames", type=int, default=1000)
    ap.add_argument("--root", help="bench workspaces folder (default $UVIS_CACHE/bench)")
    args = ap.parse_args()
    os.environ.setdefault("UVIS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    root = Path(args.root) if args.root else (
        Path(os.environ.get("UVIS_CACHE") or "~/.cache/uvis").expanduser() / "bench")
    root.mkdir(parents=True, exist_ok=True)
    cases = [("bundled clip (150 frames, 384×288)", root / "app-clip", EXAMPLE, 150, 150.0),
             (f"synthetic {args.long_frames} frames 1280×720", root / f"app-long-{args.long_frames}",
              synthetic_video(root / f"synthetic-{args.long_frames}.avi", args.long_frames), args.long_frames,
              300.0)]
    from playwright.sync_api import sync_playwright

    results = {}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM,
                                    args=["--headless", "--no-sandbox", "--disable-gpu",
                                          "--disable-background-networking"])
        for title, ws, video, frames, _ in cases:
            label(ws, video, frames)
            proc, url = serve(ws)
            try:
                results[title] = bench_one(browser, url, args.steps)
            finally:
                proc.terminate()
                proc.wait(timeout=30)
        browser.close()
    ok_all = True
    for title, _, _, _, target in cases:
        print(f"{title}: page update, browser-measured (input event -> DOM change), {args.steps} each")
        for kind, xs in results[title].items():
            ok = statistics.median(xs) <= target
            ok_all &= ok
            print(f"  {kind:16s}: {fmt(xs)}   target ≤ {target:.0f} ms: {'met' if ok else 'NOT met'}")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"machine load average (1 min) at the end: {load:.1f} on {os.cpu_count()} cores")
    print("all targets met" if ok_all else "some targets NOT met")
    return 0


if __name__ == "__main__":
    sys.exit(main())
