"""Table-1 report rendering and the ``eval`` command on result files."""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest

from uvis.errors import BadInputError
from uvis.eval.cli import main
from uvis.eval.frame_f1 import ClassCounts, F1Result, FrameObject, frame_f1
from uvis.eval.report import table1
from uvis.masks import encode

H, W = 16, 16


def _result(counts: dict[int, tuple[int, int, int]]) -> F1Result:
    return F1Result(per_class={c: ClassCounts(*v) for c, v in counts.items()}, num_frames=10)


def _rows() -> dict[str, F1Result]:
    return {
        "none": _result({1: (2, 6, 2), 2: (1, 1, 3), 5: (0, 4, 0)}),  # class 5: predicted only
        "score": _result({1: (3, 1, 1), 2: (1, 0, 3)}),
        "score+pmf": _result({1: (3, 0, 1), 2: (0, 0, 4)}),
    }


def test_markdown_table_values_and_bold_best() -> None:
    t = table1(_rows(), {1: "person", 2: "giant_panda", 5: "ghost"})
    assert t.classes == [1, 2]  # only classes with ground truth
    md = t.to_markdown()
    lines = md.strip().splitlines()
    assert lines[0] == "| class | none | score | score+pmf |"
    # person: none 2*2/(4+6+2)=33.3, score 6/8=75.0, score+pmf 6/7=85.7 (best, bold)
    assert lines[2] == "| person | 33.3 | 75.0 | **85.7** |"
    # giant_panda: none 2/6=33.3, score 2/5=40.0 (best), score+pmf 0.0
    assert lines[3] == "| giant_panda | 33.3 | **40.0** | 0.0 |"
    # mF1 over classes in GT: none (33.3+33.3)/2, score (75+40)/2=57.5, pmf 42.9
    assert lines[4] == "| **mF1** | 33.3 | **57.5** | 42.9 |"
    assert t.mf1("score") == pytest.approx((0.75 + 0.4) / 2)


def test_csv_is_machine_readable() -> None:
    t = table1(_rows(), {1: "person", 2: "giant_panda"})
    rows = list(csv.DictReader(io.StringIO(t.to_csv())))
    person_none = next(r for r in rows if r["row"] == "none" and r["class"] == "person")
    assert (person_none["tp"], person_none["fp"], person_none["fn"]) == ("2", "6", "2")
    assert float(person_none["f1"]) == pytest.approx(4 / 12)
    mf1 = {r["row"]: float(r["f1"]) for r in rows if r["class"] == "mF1"}
    assert mf1["score"] == pytest.approx(0.575)
    assert len(rows) == 3 * 2 + 3


def test_plot_and_save(tmp_path: Path) -> None:
    t = table1(_rows(), {1: "person", 2: "giant_panda"}, notes={"videos_matched": 3})
    paths = t.save(tmp_path / "out")
    png = paths["png"].read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    assert json.loads(paths["json"].read_text())["rows"]["score"]["per_class"]["person"]["tp"] == 3
    assert paths["markdown"].read_text() == t.to_markdown()


def test_table1_rejects_bad_rows() -> None:
    with pytest.raises(BadInputError):
        table1({}, {})
    agn = frame_f1([[FrameObject(1, encode(np.ones((H, W), bool)))]], [[]], class_agnostic=True)
    with pytest.raises(BadInputError, match="class-aware"):
        table1({"none": agn}, {})


# ----------------------------------------------------------------------------- CLI
def _box(y: int, x: int, h: int, w: int) -> dict:
    m = np.zeros((H, W), dtype=bool)
    m[y:y + h, x:x + w] = True
    return encode(m)


def _files(tmp_path: Path) -> tuple[Path, Path]:
    gt = {
        "videos": [{"id": 1, "width": W, "height": H, "length": 2, "file_names": ["v1/0.jpg", "v1/1.jpg"]}],
        "categories": [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}],
        "annotations": [
            {"id": 1, "video_id": 1, "category_id": 1, "segmentations": [_box(0, 0, 8, 8), _box(0, 1, 8, 8)]},
            {"id": 2, "video_id": 1, "category_id": 2, "segmentations": [None, _box(9, 9, 6, 6)]},
        ],
    }
    pred = [
        {"video_id": 1, "category_id": 1, "score": 0.9, "segmentations": [_box(0, 0, 8, 8), _box(0, 1, 8, 8)]},
        {"video_id": 1, "category_id": 1, "score": 0.2, "segmentations": [None, _box(9, 9, 6, 6)]},
    ]
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    (tmp_path / "pred.json").write_text(json.dumps(pred))
    return tmp_path / "gt.json", tmp_path / "pred.json"


def test_cli_writes_json_with_documented_keys(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    gt, pred = _files(tmp_path)
    out = tmp_path / "res" / "eval.json"
    assert main(["--gt", str(gt), "--pred", str(pred), "--json", str(out)]) == 0
    d = json.loads(out.read_text())
    assert set(d) == {"gt", "pred", "class_agnostic", "frame", "video"}
    f = d["frame"]
    assert f["per_class"]["cat"] == {"id": 1, "tp": 2, "fp": 1, "fn": 0, "f1": 0.8, "precision": 2 / 3,
                                     "recall": 1.0, "in_gt": True}
    assert f["per_class"]["dog"]["fn"] == 1 and f["mF1"] == pytest.approx(0.4)
    v = d["video"]
    for k in ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl"):
        assert isinstance(v[k], float)
    assert v["per_class"]["cat"]["AP"] == pytest.approx(1.0) and v["per_class"]["dog"]["AP"] == 0.0
    printed = capsys.readouterr().out
    assert "mF1" in printed and "AP50" in printed


def test_cli_levels_and_class_agnostic(tmp_path: Path) -> None:
    gt, pred = _files(tmp_path)
    out = tmp_path / "agn.json"
    assert main(["--gt", str(gt), "--pred", str(pred), "--level", "frame", "--class-agnostic",
                 "--json", str(out)]) == 0
    d = json.loads(out.read_text())
    assert "video" not in d and d["class_agnostic"] is True
    assert d["frame"]["per_class"]["object"]["tp"] == 3  # the low-score box now matches the dog


def test_cli_bad_input_exit_code_2(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    gt, _ = _files(tmp_path)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{"video_id": 1, "category_id": 9, "score": 1.0, "segmentations": [None, None]}]))
    assert main(["--gt", str(gt), "--pred", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "bad.json: [0]: unknown category_id 9" in err
    assert main(["--gt", str(tmp_path / "nope.json"), "--pred", str(bad)]) == 2
    assert main(["--gt", str(gt), "--workspace", str(tmp_path / "no_ws"), "--table1"]) == 2
    assert main(["--gt", str(gt), "--workspace", str(tmp_path)]) == 2  # --workspace without --table1


def test_cli_registers_on_the_main_parser() -> None:
    import argparse

    from uvis.eval.cli import add_parser, run

    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["eval", "--gt", "g.json", "--pred", "p.json", "--level", "video"])
    assert args.func is run and args.level == "video"
