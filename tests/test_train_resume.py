"""SIGKILL during ``python -m uvis train``, then ``--resume``: the run continues from the last
checkpoint with the same iteration count and lr schedule, and its final weights equal those of
an uninterrupted run with the same seed (CPU, bit for bit)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from uvis.vis.train_testing import make_curated_workspace

REPO = Path(__file__).resolve().parents[1]
CONFIG = {"max_iter": 12, "steps": [6], "checkpoint_period": 4, "num_points": 1024, "min_sizes": [160]}


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO)
    env["OMP_NUM_THREADS"] = "1"  # same thread count in every run: identical float reductions
    return env


def _train(ws: Path, out: Path, cfg: Path, *extra: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "uvis", "train", "--workspace", str(ws), "--out", str(out), "--preset", "tiny",
           "--config", str(cfg), "--quiet", *extra]
    return subprocess.Popen(cmd, cwd=REPO, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finish(p: subprocess.Popen) -> None:
    out, err = p.communicate(timeout=600)
    assert p.returncode == 0, f"train failed ({p.returncode}):\n{out}\n{err}"


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, example_video):
    return make_curated_workspace(tmp_path_factory.mktemp("ws") / "w", example_video, max_frames=6)


@pytest.mark.slow
def test_sigkill_then_resume_equals_uninterrupted(workspace, tmp_path):
    cfg = tmp_path / "train.json"
    cfg.write_text(json.dumps(CONFIG))
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    _finish(_train(workspace, straight, cfg))

    p = _train(workspace, killed, cfg, "--workers", "1")  # a worker process: batches must not depend on it
    marker = killed / "last_checkpoint"
    deadline = time.time() + 300
    try:
        while not (marker.is_file() and marker.read_text().strip()):
            assert p.poll() is None, f"run ended before its first checkpoint: {p.communicate()}"
            assert time.time() < deadline, "no checkpoint within 300 s"
            time.sleep(0.05)
    finally:
        os.kill(p.pid, signal.SIGKILL)  # the data-loader worker exits when its parent is gone
        p.wait()
    assert p.returncode == -signal.SIGKILL
    assert not (killed / "model_final.pth").exists(), "killed before the end: no final model"
    ckpt_iter = int(marker.read_text().strip().split("_")[1].split(".")[0])
    assert ckpt_iter in (4, 8)

    # without --resume the run folder is refused (nothing is overwritten)
    refused = subprocess.run([sys.executable, "-m", "uvis", "train", "--workspace", str(workspace), "--out",
                              str(killed), "--preset", "tiny", "--config", str(cfg), "--quiet"],
                             cwd=REPO, env=_env(), capture_output=True, text=True, timeout=300)
    assert refused.returncode == 2 and "--resume" in refused.stderr

    _finish(_train(workspace, killed, cfg, "--resume"))

    a = torch.load(straight / "model_final.pth", weights_only=True)["model"]
    b = torch.load(killed / "model_final.pth", weights_only=True)["model"]
    assert a.keys() == b.keys() and "criterion.empty_weight" in a
    differ = [k for k in a if not torch.equal(a[k], b[k])]
    assert not differ, f"{len(differ)} tensors differ after resume, e.g. {differ[:3]}"

    ma = [json.loads(x) for x in (straight / "metrics.jsonl").read_text().splitlines()]
    mb = [json.loads(x) for x in (killed / "metrics.jsonl").read_text().splitlines()]
    assert [m["iter"] for m in mb] == list(range(1, 13)), "one metrics line per iteration after the resume"
    assert [m["lr"] for m in mb] == [m["lr"] for m in ma]
    assert [m["lr"] for m in ma] == [1e-3] * 6 + [pytest.approx(1e-4)] * 6  # x0.1 from iteration 7 (step 6)
    assert [m["loss"] for m in mb] == [m["loss"] for m in ma]
