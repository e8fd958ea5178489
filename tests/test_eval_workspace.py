"""Table 1 from workspace decisions: hand-made VideoResult-like objects, then a real
on-disk workspace (hand-written cache, deterministic text encoder) through the CLI."""
from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from uvis import masks as M
from uvis.config import Config, FilterConfig
from uvis.errors import BadInputError
from uvis.eval.workspace_eval import (
    ROW_NONE,
    ROW_PMF,
    ROW_SCORE,
    ROW_USER,
    f1_for_videos,
    row_configs,
    table1_for_workspace,
)
from uvis.eval.ytvis_io import parse_ground_truth
from uvis.testing import ToyTextEncoder, unit
from uvis.types import Instances, Reason, VideoInfo

H, W = 20, 40


def _box(y, x, h, w, size=(H, W)):
    m = np.zeros(size, dtype=bool)
    m[y:y + h, x:x + w] = True
    return M.encode(m)


def _video_result(name, frames, size=(H, W), vocabulary=("cat", "dog"), frame_names=(), source_indices=()):
    """frames: list per processed frame of (rle, label, clip_score, decision)."""
    rles, fr, lab, sc, dec = [], [], [], [], []
    for t, objs in enumerate(frames):
        for rle, label, score, decision in objs:
            rles.append(rle)
            fr.append(t)
            lab.append(label)
            sc.append(score)
            dec.append(decision)
    inst = Instances(boxes=M.to_bbox(rles), masks=rles, objectness=np.ones(len(rles)), image_size=size,
                     frame=fr, label=lab, clip_score=sc, decision=dec)
    info = VideoInfo(name=name, path=f"/{name}", width=size[1], height=size[0], num_frames=len(frames), fps=1.0,
                     source_width=W, source_height=H, source_indices=tuple(source_indices),
                     frame_names=tuple(frame_names))
    return SimpleNamespace(info=info, instances=inst, vocabulary=list(vocabulary), classes=inst.label)


def _gt(lengths: dict[str, int], anns, categories=("cat", "dog", "cow")):
    vids = list(lengths)
    return parse_ground_truth({
        "videos": [{"id": i + 1, "width": W, "height": H, "length": n,
                    "file_names": [f"JPEGImages/{v}/{t * 5:05d}.jpg" for t in range(n)]}
                   for i, (v, n) in enumerate(lengths.items())],
        "categories": [{"id": i + 1, "name": c} for i, c in enumerate(categories)],
        "annotations": [{"id": i + 1, "video_id": vids.index(v) + 1, "category_id": c, "segmentations": s}
                        for i, (v, c, s) in enumerate(anns)],
    }, source="gt.json")


KEPT, DROP = int(Reason.KEPT), int(Reason.CLIP_SCORE)


def test_kept_instances_by_class_name_and_video_name() -> None:
    cat, dog = _box(0, 0, 10, 10), _box(10, 20, 8, 8)
    gt = _gt({"vidA": 2}, [("vidA", 1, [cat, cat]), ("vidA", 2, [None, dog])])
    res = _video_result("vidA", [
        [(cat, 0, 0.9, KEPT), (dog, 1, 0.8, DROP)],  # dropped dog is not a prediction
        [(cat, 0, 0.9, KEPT), (dog, 1, 0.8, KEPT)],
    ])
    other = _video_result("not_in_gt", [[(cat, 0, 0.9, KEPT)]])
    result, names, notes = f1_for_videos({"vidA": res, "not_in_gt": other}, gt)
    assert (result.per_class[1].tp, result.per_class[1].fp) == (2, 0)
    assert (result.per_class[2].tp, result.per_class[2].fp, result.per_class[2].fn) == (1, 0, 0)
    assert result.mF1 == 1.0
    assert notes["videos_matched"] == 1 and notes["workspace_videos_without_gt"] == ["not_in_gt"]
    assert notes["frames_evaluated"] == 2 and names[2] == "dog"


def test_vocabulary_names_match_ignoring_case_and_underscores() -> None:
    seal = _box(0, 0, 10, 10)
    gt = _gt({"v": 1}, [("v", 1, [seal])], categories=("earless_seal",))
    res = _video_result("v", [[(seal, 1, 0.9, KEPT), (_box(12, 20, 5, 5), 0, 0.9, KEPT)]],
                        vocabulary=["Zebra", "Earless Seal"])
    result, names, notes = f1_for_videos({"v": res}, gt)
    assert result.per_class[1].tp == 1
    assert notes["predicted_classes_not_in_gt"] == ["zebra"]
    zebra_id = next(c for c, n in names.items() if n == "Zebra")
    assert result.per_class[zebra_id].fp == 1 and not result.per_class[zebra_id].in_gt
    assert result.mF1 == 1.0


def test_frames_align_by_file_name_or_source_index_and_masks_are_resized() -> None:
    # GT frames are JPEGImages/v/00000.jpg, 00005.jpg, ... ; the workspace kept every
    # second GT frame, at half resolution.
    full = _box(4, 8, 8, 16)
    half = _box(2, 4, 4, 8, size=(H // 2, W // 2))
    gt = _gt({"v": 4}, [("v", 1, [full, full, full, full])])
    by_name = _video_result("v", [[(half, 0, 0.9, KEPT)], [(half, 0, 0.9, KEPT)]], size=(H // 2, W // 2),
                            frame_names=("00000.jpg", "00010.jpg"))
    r, _, notes = f1_for_videos({"v": by_name}, gt)
    assert (r.per_class[1].tp, r.per_class[1].fp, r.per_class[1].fn) == (2, 0, 0)  # skipped frames not counted
    assert notes["frames_evaluated"] == 2
    by_index = _video_result("v", [[(half, 0, 0.9, KEPT)], [], [(half, 0, 0.9, KEPT)]], size=(H // 2, W // 2),
                             source_indices=(0, 2, 3))
    r2, _, _ = f1_for_videos({"v": by_index}, gt)
    assert (r2.per_class[1].tp, r2.per_class[1].fn) == (2, 1)


def test_no_matching_video_is_bad_input() -> None:
    gt = _gt({"v": 1}, [])
    with pytest.raises(BadInputError, match="no workspace video matches"):
        f1_for_videos({"w": _video_result("w", [[]])}, gt)


def test_row_configs() -> None:
    base = Config().replace(labeler__vocabulary=["cat", "dog"])
    rows = row_configs(base)
    assert list(rows) == [ROW_NONE, ROW_SCORE, ROW_PMF]  # base filters are the defaults: no 4th row
    n, s, p = rows[ROW_NONE].filters, rows[ROW_SCORE].filters, rows[ROW_PMF].filters
    assert (n.objectness_threshold, n.clip_threshold, n.pmf_enabled) == (0.0, 0.0, False)
    assert (s.objectness_threshold, s.clip_threshold, s.pmf_enabled) == (0.7, 0.7, False)
    assert p == FilterConfig()
    assert all(r.labeler.vocabulary == ["cat", "dog"] for r in rows.values())
    custom = base.replace(filters__clip_threshold=0.5, filters__clip_threshold_per_class={"cat": 0.9})
    rows2 = row_configs(custom)
    assert list(rows2) == [ROW_NONE, ROW_SCORE, ROW_PMF, ROW_USER]
    assert rows2[ROW_SCORE].filters.clip_threshold_per_class == {}
    assert rows2[ROW_USER] is custom


# ----------------------------------------------------------------------------- real workspace
D = 6
VOCAB = ["cat", "dog", "cow"]


_unit = unit
_encoder = ToyTextEncoder(tuple(VOCAB), D)


def _cat_mask(t):
    m = np.zeros((H * 2, W * 2), bool)
    m[10:22, 5 + t:15 + t] = True
    return m


def _dog_mask():
    m = np.zeros((H * 2, W * 2), bool)
    m[10:22, 50:60] = True
    return m


def _workspace(tmp_path: Path, n_frames: int = 8):
    from uvis import pipeline
    from uvis.cache import CacheMeta, CacheWriter
    from uvis.workspace import Workspace

    ws = Workspace(tmp_path / "ws")
    h, w = H * 2, W * 2
    info = VideoInfo(name="clip", path="/clip.mp4", width=w, height=h, num_frames=n_frames, fps=10,
                     source_width=w, source_height=h)
    writer = CacheWriter(ws.cache_dir("clip", "k"), CacheMeta(info, "test-proposer", "test-embedder", {}, D, True, 5.0))
    rng = np.random.default_rng(0)
    for t in range(n_frames):
        # a cat, and a dog-looking proposal with low objectness on even frames
        emb = _unit([[1, 0.1, 0, 0, 0, 0], [0.1, 1, 0, 0, 0, 0]] + 0.02 * rng.normal(size=(2, D)))
        rles = M.encode_many(np.stack([_cat_mask(t), _dog_mask()]))
        writer.write_frame(t, Instances(boxes=M.to_bbox(rles), masks=rles, image_size=(h, w), embeddings=emb,
                                        objectness=[0.9, 0.5 if t % 2 == 0 else 0.9]))
    ws.db.upsert_video("clip", info.path, cache_key="k", num_frames=n_frames, width=w, height=h)
    # The dog is real only on odd frames; a 'cow' category has no ground truth here.
    gt = {
        "videos": [{"id": 1, "width": w, "height": h, "length": n_frames,
                    "file_names": [f"clip/{t:05d}.jpg" for t in range(n_frames)]}],
        "categories": [{"id": i + 1, "name": c} for i, c in enumerate(VOCAB)],
        "annotations": [
            {"id": 1, "video_id": 1, "category_id": 1,
             "segmentations": [M.encode(_cat_mask(t)) for t in range(n_frames)]},
            {"id": 2, "video_id": 1, "category_id": 2,
             "segmentations": [M.encode(_dog_mask()) if t % 2 else None for t in range(n_frames)]},
        ],
    }
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    return ws, pipeline.open_project(ws, text_encoder=_encoder)


def test_table1_on_a_real_workspace(tmp_path: Path) -> None:
    ws, project = _workspace(tmp_path)
    base = Config().replace(labeler__vocabulary=VOCAB)
    table = table1_for_workspace(ws.root, tmp_path / "gt.json", base, decide=project.decide)
    ws.close()
    assert list(table.rows) == [ROW_NONE, ROW_SCORE, ROW_PMF]
    assert table.classes == [1, 2]
    # none: the 4 low-objectness dog proposals on even frames are false positives
    assert table.f1(ROW_NONE, 2) == pytest.approx(2 * 4 / (2 * 4 + 4))
    assert table.f1(ROW_NONE, 1) == 1.0
    # score: objectness >= 0.7 removes them
    assert table.f1(ROW_SCORE, 2) == 1.0 and table.mf1(ROW_SCORE) == 1.0
    assert table.mf1(ROW_NONE) < table.mf1(ROW_SCORE)
    assert table.notes["frames_evaluated"] == 8
    assert "| dog | 66.7 | **100.0** |" in table.to_markdown()


def test_cli_table1_on_a_real_workspace(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from uvis.eval.cli import main

    ws, project = _workspace(tmp_path)
    base = Config().replace(labeler__vocabulary=VOCAB)
    for cfg in row_configs(base).values():  # fills the workspace's text cache (no text model in tests)
        project.decide(cfg)
    ws.close()
    cfg_path = tmp_path / "cfg.json"
    base.save(cfg_path)
    out = tmp_path / "report"
    code = main(["--workspace", str(tmp_path / "ws"), "--gt", str(tmp_path / "gt.json"), "--table1",
                 "--config", str(cfg_path), "--out", str(out), "--json", str(tmp_path / "t1.json")])
    assert code == 0, capsys.readouterr().err
    assert {p.name for p in out.iterdir()} == {"table1.md", "table1.csv", "table1.json", "table1.png"}
    d = json.loads((tmp_path / "t1.json").read_text())
    assert d["rows"]["none"]["per_class"]["dog"]["fp"] == 4
    assert "| **mF1** |" in capsys.readouterr().out
