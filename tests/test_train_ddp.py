"""``torchrun --nproc-per-node 2 -m uvis train`` on CPU: two gloo processes, the sampler sharded,
one set of checkpoints written by rank 0, and a final model that loads in the predictor."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from uvis.vis.train_testing import make_curated_workspace

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_two_process_gloo_ddp(tmp_path, example_video):
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent))
    assert torchrun, f"torchrun not found beside {sys.executable}"
    ws = make_curated_workspace(tmp_path / "ws", example_video, max_frames=4)
    cfg = tmp_path / "train.json"
    cfg.write_text(json.dumps({"max_iter": 4, "checkpoint_period": 2, "num_points": 1024, "min_sizes": [128],
                               "batch_size": 4}))
    out = tmp_path / "run"
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    proc = subprocess.run([torchrun, "--standalone", "--nproc-per-node", "2", "-m", "uvis", "train",
                           "--workspace", str(ws), "--out", str(out), "--preset", "tiny", "--config", str(cfg),
                           "--quiet"], cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "2 process(es)" in proc.stderr
    meta = json.loads((out / "train_config.json").read_text())
    assert meta["world_size"] == 2
    ckpts = sorted(p.name for p in (out / "checkpoints").glob("iter_*.pth"))
    assert ckpts == ["iter_0000002.pth", "iter_0000004.pth"]
    assert (out / "last_checkpoint").read_text().strip() == "iter_0000004.pth"
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [m["iter"] for m in lines] == [1, 2, 3, 4], "rank 0 alone writes the metrics"
    assert all(m["instances"] >= 0 for m in lines)
    leftovers = [p.name for p in out.rglob("*") if "tmp" in p.name]
    assert not leftovers, f"temporary files left: {leftovers}"

    from uvis.vis.model import load_minvis

    model = load_minvis(torch.load(out / "model_final.pth", weights_only=True))
    assert model.cfg.num_queries == 16 and model.cfg.dec_layers == 2
