"""End to end: `python -m uvis label` on the bundled clip (real video, motion proposer,
real open_clip code path with a tiny random ViT, and the offline EfficientNet)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from uvis.cache import VideoCache
from uvis.pipeline import open_project
from uvis.config import Config
from uvis.workspace import Workspace

TINY = ["--embedder", "clip", "--clip-model", "uvis-tiny-vit", "--clip-pretrained", "none"]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.update({"UVIS_OFFLINE": "1", "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"})
    return env


def _uvis(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "uvis", *args], capture_output=True, text=True,
                          env=_env(), timeout=timeout)


def _frame_files(ws: Path) -> list[Path]:
    return sorted(ws.glob("videos/*/*/frames/[0-9]*.npz"))


@pytest.mark.slow
def test_label_tiny_clip_tracks_people(tmp_path, example_video):
    ws = tmp_path / "ws"
    cfg = tmp_path / "cfg.yaml"
    # a random tiny CLIP gives near-uniform scores: keep the CLIP and PMF thresholds out of
    # the way so the test looks at proposals and tracking on the real clip
    Config().replace(filters__clip_threshold=0.0, filters__pmf_enabled=False).save(cfg)
    out = _uvis("label", str(example_video), "-w", str(ws), "--max-frames", "60", "--quiet",
                "--config", str(cfg), "--vocabulary", "person,car,dog", *TINY)
    assert out.returncode == 0, out.stderr
    assert "vtest_150: 60 frames" in out.stdout
    w = Workspace(ws)
    res = open_project(w).decide(Config.load(cfg).replace(labeler__vocabulary=["person", "car", "dog"]))["vtest_150"]
    kept = res.instances[res.kept]
    frames_with_people = len(set(kept.frame.tolist()))
    # pedestrians walk through the whole clip; the motion proposer needs a few frames to warm up
    assert frames_with_people >= 0.6 * 60, frames_with_people
    assert len(res.tracks) >= 2
    long_tracks = [t for t in res.tracks if t.length >= 10]
    assert long_tracks, "expected people to be tracked over at least 10 frames"
    assert kept.embeddings.shape[1] == 32
    show = _uvis("show", "-w", str(ws))
    assert show.returncode == 0 and "TOTAL" in show.stdout and "tracks" in show.stdout
    w.close()


@pytest.mark.slow
def test_label_efficientnet_offline(tmp_path, example_video):
    ws = tmp_path / "ws"
    out = _uvis("label", str(example_video), "-w", str(ws), "--max-frames", "12", "--quiet",
                "--embedder", "efficientnet")
    assert out.returncode == 0, out.stderr
    w = Workspace(ws)
    cache = w.load_cache("vtest_150")
    assert cache.complete and cache.meta.embedding_dim == 1280 and not cache.meta.has_text
    emb = cache.instances.embeddings
    assert len(emb) > 0 and np.allclose(np.linalg.norm(emb, axis=1), 1, atol=1e-4)
    w.close()


@pytest.mark.slow
def test_killed_run_resumes_without_recomputing(tmp_path, example_video):
    ws = tmp_path / "ws"
    args = [sys.executable, "-m", "uvis", "label", str(example_video), "-w", str(ws), "--max-frames", "40",
            "--quiet", *TINY]
    proc = subprocess.Popen(args, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 300
    while len(_frame_files(ws)) < 8:
        assert proc.poll() is None, proc.stderr.read().decode()
        assert time.time() < deadline, "labelling did not start"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = _frame_files(ws)
    assert 8 <= len(done) < 40
    finished = {}
    for p in done:  # nothing corrupt: every finished frame file loads
        with np.load(p) as d:
            assert d["boxes"].shape[1] == 4
            finished[int(p.stem)] = d["boxes"].copy()
    out = _uvis("label", str(example_video), "-w", str(ws), "--max-frames", "40", "--quiet", *TINY)
    assert out.returncode == 0, out.stderr
    assert f"resuming at frame {len(done)} of 40" in out.stderr
    # complete: consolidated into one column set holding all 40 frames, the finished ones as they were
    assert _frame_files(ws) == [] and len(list(ws.glob("videos/*/*/columns-000040"))) == 1
    cache = VideoCache.load(next(ws.glob("videos/*/*/columns-000040")).parent)
    assert cache.num_cached == 40 and cache.complete
    for t, boxes in finished.items():
        assert np.array_equal(cache.instances.boxes[cache.frame_slices[t]], boxes)
    assert not list(ws.glob("videos/*/*/frames/.*")) and not list(ws.glob("videos/*/*/.*"))  # no temporaries


@pytest.mark.parametrize("args, message", [
    (["label", "does-not-exist.mp4"], "does-not-exist.mp4: no such file or folder"),
    (["label", "{bad}", "--config", "{cfg}"], "filters.clip_threshold must be in [0, 1]"),
    (["label", "{bad}"], "{bad}"),
    (["show", "-w", "{ws}"], "no labelled videos"),
])
def test_bad_input_exit_code_2(tmp_path, args, message):
    bad = tmp_path / "notavideo.mp4"
    bad.write_text("this is not a video")
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({"filters": {"clip_threshold": 7}}))
    (tmp_path / "ws").mkdir()
    fill = {"{bad}": str(bad), "{cfg}": str(cfg), "{ws}": str(tmp_path / "ws")}
    args = [fill.get(a, a) for a in args]
    out = _uvis(*args, "-w", str(tmp_path / "ws2")) if args[0] == "label" else _uvis(*args)
    assert out.returncode == 2, (out.returncode, out.stderr)
    assert fill.get(message, message) in out.stderr
    assert "Traceback" not in out.stderr


def test_config_dump_round_trips(tmp_path):
    out = _uvis("config", "dump", "--format", "json")
    assert out.returncode == 0
    assert Config.from_dict(json.loads(out.stdout)) == Config()
