"""The background training job of the app: progress, cancel (checkpoint written), resume, bad input,
and the CLI's refusals (exit 2 with the field named)."""
from __future__ import annotations

import json
import time

import pytest

from uvis.cli import main
from uvis.vis.train_config import TrainConfig, preset
from uvis.vis.train_job import TrainJob
from uvis.vis.train_testing import make_curated_workspace
from uvis.vis.trainer import last_checkpoint, list_checkpoints, read_metrics


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, example_video):
    return make_curated_workspace(tmp_path_factory.mktemp("ws") / "w", example_video, max_frames=4)


def _cfg(**kw) -> TrainConfig:
    return TrainConfig.from_dict({"num_points": 1024, "min_sizes": [128], "checkpoint_period": 1000, **kw},
                                 base=preset("tiny"))


@pytest.mark.slow
def test_cancel_writes_a_checkpoint_and_resume_finishes(workspace, tmp_path):
    run = tmp_path / "run"
    job = TrainJob(workspace, run, _cfg(max_iter=500)).start()
    deadline = time.time() + 240
    while job.status().iteration < 3:
        assert not job.status().finished, job.status().message
        assert time.time() < deadline, "no progress"
        time.sleep(0.1)
    job.cancel()
    job.join(120)
    st = job.status()
    assert st.state == "cancelled", st.message
    ckpt = last_checkpoint(run)
    assert ckpt is not None and int(ckpt.stem.split("_")[1]) == st.iteration >= 3
    assert [m["iter"] for m in read_metrics(run)] == list(range(1, st.iteration + 1))
    assert not (run / "model_final.pth").exists()
    with pytest.raises(Exception, match="already holds a training run"):
        TrainJob(workspace, run, _cfg(max_iter=500))

    job2 = TrainJob(workspace, run, _cfg(max_iter=st.iteration + 2), resume=True).start()
    job2.join(240)
    st2 = job2.status()
    assert st2.state == "done", st2.message
    assert st2.iteration == st.iteration + 2
    assert (run / "model_final.pth").is_file()
    names = [c["name"] for c in list_checkpoints(run)]
    assert names[-1] == "model_final.pth" and len(names) >= 2


def test_job_on_a_workspace_without_kept_instances_fails_cleanly(tmp_path, example_video):
    from uvis.workspace import Workspace

    ws_dir = make_curated_workspace(tmp_path / "w", example_video, max_frames=2, min_objectness=2.0)  # nothing relabelled
    Workspace(ws_dir).close()
    job = TrainJob(ws_dir, tmp_path / "run", _cfg(max_iter=2)).start()
    job.join(120)
    st = job.status()
    assert st.state == "failed" and "no instance is kept" in st.message


def test_cli_bad_inputs_exit_2(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("lr: -1\n")
    assert main(["train", "--workspace", str(tmp_path / "nope"), "--out", str(tmp_path / "r")]) == 2
    assert "workspace not found" in capsys.readouterr().err
    assert main(["train", "--workspace", str(tmp_path), "--out", str(tmp_path / "r"), "--config", str(bad)]) == 2
    assert "train.lr" in capsys.readouterr().err
    typo = tmp_path / "typo.json"
    typo.write_text(json.dumps({"max_iters": 3}))
    assert main(["train", "--workspace", str(tmp_path), "--out", str(tmp_path / "r"), "--config", str(typo)]) == 2
    assert "max_iters" in capsys.readouterr().err
    assert main(["train", "--ytvis", str(tmp_path / "gt.json"), "--out", str(tmp_path / "r")]) == 2
    assert "--frames" in capsys.readouterr().err
