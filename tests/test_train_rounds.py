"""Self-training rounds end to end: train (tiny) on round 1, ``predict --model RUN_DIR --workspace W
--round 2`` imports the model's predictions as ``<video>-r2`` proposals (decided like any proposals),
``train --round 2`` trains on them, and the round table lists both rounds."""
from __future__ import annotations

import json

import pytest

from uvis.cli import main
from uvis.vis.rounds import load_rounds, round_table
from uvis.vis.train_testing import make_curated_workspace


@pytest.mark.slow
def test_round_two_from_the_trained_model(tmp_path, example_video, capsys):
    ws = make_curated_workspace(tmp_path / "ws", example_video, max_frames=4)
    cfg = tmp_path / "t.json"
    cfg.write_text(json.dumps({"max_iter": 60, "num_points": 1024, "min_sizes": [160]}))
    run1 = tmp_path / "run1"
    assert main(["train", "--workspace", str(ws), "--out", str(run1), "--preset", "tiny", "--config", str(cfg),
                 "--quiet"]) == 0
    # a run folder as --model: its model_final.pth and its class names
    assert main(["predict", "--model", str(run1), "--workspace", str(ws), "--round", "2", "--quiet"]) == 0
    rounds = load_rounds(ws)
    assert list(rounds) == [2] and rounds[2]["videos"] == {"vtest_150": "vtest_150-r2"}
    results = json.loads(open(rounds[2]["results"]).read())
    assert results and all(len(r["segmentations"]) == 4 for r in results)
    assert main(["predict", "--model", str(run1), "--workspace", str(ws), "--round", "2", "--quiet"]) == 2
    assert "already exists" in capsys.readouterr().err

    rows = round_table(ws)
    assert [r.round for r in rows] == [1, 2]
    assert rows[0].videos == rows[1].videos == 1 and rows[0].kept > 0
    assert rows[1].model.endswith("run1")

    run2 = tmp_path / "run2"
    if rows[1].kept == 0:
        assert main(["train", "--workspace", str(ws), "--out", str(run2), "--round", "2", "--preset", "tiny",
                     "--config", str(cfg), "--quiet"]) == 2
        assert "no instance is kept" in capsys.readouterr().err
    else:
        assert main(["train", "--workspace", str(ws), "--out", str(run2), "--round", "2", "--preset", "tiny",
                     "--config", str(cfg), "--max-iter", "2", "--quiet"]) == 0
        data = json.loads((run2 / "data.json").read_text())
        assert {s["video"] for s in data["samples"]} == {"vtest_150-r2"}
    assert main(["rounds", "--workspace", str(ws)]) == 0
    out = capsys.readouterr().out
    assert "pseudo-labels" in out and "run1" in out
