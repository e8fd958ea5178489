"""``python -m uvis predict`` end to end on the bundled clip with recipe weights, and its errors."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from uvis.cli import main
from uvis.proposers.cutler.testing import write_recipe_checkpoint

REPO = Path(__file__).resolve().parents[1]
FRAMES = 3


@pytest.fixture(scope="module")
def recipe_weights(tmp_path_factory: pytest.TempPathFactory, shared_fixtures: Path) -> Path:
    return write_recipe_checkpoint(tmp_path_factory.mktemp("vis") / "minvis_recipe.pth",
                                   shared_fixtures / "minvis-ref" / "dev_vtest_360.json")


def _env(tmp: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(PYTHONPATH=str(REPO), UVIS_OFFLINE="1", UVIS_CACHE=str(tmp / "cache"), OMP_NUM_THREADS="2")
    return env


@pytest.mark.slow
def test_predict_end_to_end(tmp_path: Path, recipe_weights: Path, example_video: Path) -> None:
    out = tmp_path / "pred" / "results.json"
    ws = tmp_path / "ws"
    proc = subprocess.run(
        [sys.executable, "-m", "uvis", "predict", "--model", str(recipe_weights), str(example_video),
         "--out", str(out), "--max-frames", str(FRAMES), "--workspace", str(ws), "--embedder", "efficientnet"],
        cwd=tmp_path, env=_env(tmp_path), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert "frame" in proc.stderr  # the progress bar
    results = json.loads(out.read_text())
    videos = json.loads((tmp_path / "pred" / "results.videos.json").read_text())
    assert len(results) == 10 and {r["video_id"] for r in results} == {1}
    assert [v["name"] for v in videos["videos"]] == ["vtest_150"] and videos["videos"][0]["length"] == FRAMES
    assert len(videos["categories"]) == 40 and videos["categories"][0]["name"] == "person"
    width, height = videos["videos"][0]["width"], videos["videos"][0]["height"]
    scores = [r["score"] for r in results]
    assert scores == sorted(scores, reverse=True) and 0 < scores[-1] <= scores[0] <= 1
    for r in results:
        assert 1 <= r["category_id"] <= 40 and len(r["segmentations"]) == FRAMES
        for seg in r["segmentations"]:
            assert seg is None or (seg["size"] == [height, width] and isinstance(seg["counts"], str))

    # the results file is read by `uvis eval` (ground truth: the videos file plus one box-shaped track)
    import numpy as np

    from uvis import masks as mask_ops

    box = np.zeros((height, width), bool)
    box[height // 4: height // 2, width // 4: width // 2] = True
    gt = dict(videos)
    gt["annotations"] = [{"id": 1, "video_id": 1, "category_id": 1, "iscrowd": 0,
                          "segmentations": [mask_ops.encode(box)] * FRAMES,
                          "areas": [int(box.sum())] * FRAMES, "bboxes": [None] * FRAMES,
                          "height": height, "width": width, "length": 1}]
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    report = tmp_path / "eval.json"
    ev = subprocess.run([sys.executable, "-m", "uvis", "eval", "--gt", str(tmp_path / "gt.json"), "--pred", str(out),
                         "--json", str(report)], cwd=tmp_path, env=_env(tmp_path), capture_output=True, text=True,
                        timeout=300)
    assert ev.returncode == 0, ev.stderr
    assert report.is_file() and json.loads(report.read_text())

    # the workspace holds the model's predictions as the proposals of video vtest_150-vis
    from uvis.pipeline import open_project
    from uvis.workspace import Workspace

    workspace = Workspace(ws)
    try:
        assert workspace.video_names() == ["vtest_150-vis"]
        result = open_project(workspace).decide(workspace.current_config())["vtest_150-vis"]
    finally:
        workspace.close()
    non_empty = sum(seg is not None for r in results for seg in r["segmentations"])
    assert len(result.instances) == non_empty
    assert sorted(result.instances.objectness.tolist()) == pytest.approx(
        sorted(r["score"] for r in results for seg in r["segmentations"] if seg is not None), abs=1e-6)


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(argv)
    return code, capsys.readouterr().err


def test_bad_checkpoint_keys(tmp_path: Path, recipe_weights: Path, example_video: Path,
                             capsys: pytest.CaptureFixture[str]) -> None:
    sd = torch.load(recipe_weights, weights_only=True)["model"]
    sd.pop("sem_seg_head.predictor.level_embed.weight")
    sd["sem_seg_head.predictor.bogus"] = torch.zeros(2)
    bad = tmp_path / "bad.pth"
    torch.save({"model": sd}, bad)
    code, err = _run(["predict", "--model", str(bad), str(example_video), "--out", str(tmp_path / "r.json")], capsys)
    assert code == 2
    assert str(bad) in err and "unused key(s): sem_seg_head.predictor.bogus" in err
    assert "missing key(s): sem_seg_head.predictor.level_embed.weight" in err
    not_torch = tmp_path / "junk.pth"
    not_torch.write_bytes(b"not a checkpoint")
    code, err = _run(["predict", "--model", str(not_torch), str(example_video), "--out", str(tmp_path / "r.json")],
                     capsys)
    assert code == 2 and "weights_only=True" in err


def test_class_count_must_fit_the_vocabulary(tmp_path: Path, recipe_weights: Path, example_video: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    code, err = _run(["predict", "--model", str(recipe_weights), str(example_video), "--vocabulary", "ovis",
                      "--out", str(tmp_path / "r.json")], capsys)
    assert code == 2 and "has 40 classes but the vocabulary 'ovis' has 25" in err
    assert not (tmp_path / "r.json").exists()


def test_missing_weights_offline(tmp_path: Path, example_video: Path, capsys: pytest.CaptureFixture[str],
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("UVIS_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.setenv("UVIS_OFFLINE", "1")
    code, err = _run(["predict", "--model", "minvis_ytvis19_R50", str(example_video),
                      "--out", str(tmp_path / "r.json")], capsys)
    assert code == 2
    assert "minvis_ytvis19_R50.pth" in err and "offline" in err and "huggingface.co" in err
    assert "NVIDIA Source Code License-NC" in err  # said where the user fetches them


def test_unreadable_video_and_existing_output(tmp_path: Path, recipe_weights: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00" * 1000)
    code, err = _run(["predict", "--model", str(recipe_weights), str(broken), "--out", str(tmp_path / "r.json")],
                     capsys)
    assert code == 2 and "broken.mp4" in err
    existing = tmp_path / "old.json"
    existing.write_text("[]")
    code, err = _run(["predict", "--model", str(recipe_weights), str(broken), "--out", str(existing)], capsys)
    assert code == 2 and "--overwrite" in err and existing.read_text() == "[]"
