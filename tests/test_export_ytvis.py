"""YouTube-VIS export/import: round trips, standard readers, ground truth with frames, CLI."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from pycocotools import mask as mask_utils
from test_export_common import SRC_FRAMES, STRIDE, VOCAB, assert_same_table, build_workspace, decide, text_encoder

from uvis.cli import main
from uvis.errors import BadInputError
from uvis.eval.ytvis_io import parse_ground_truth, parse_results
from uvis.export.importers import (
    import_ytvis_into_workspace,
    load_ytvis_ground_truth,
    read_ytvis_instances,
    read_ytvis_predictions,
)
from uvis.export.ytvis import export_ytvis, export_ytvis_results
from uvis.masks import decode
from uvis.pipeline import open_project
from uvis.video import open_video
from uvis.workspace import Workspace


@pytest.fixture(scope="module")
def workspace_dir(tmp_path_factory):
    """The shared test workspace (two videos, curated), built once per module."""
    return build_workspace(tmp_path_factory.mktemp("ws"), videos=("alpha", "beta"))


@pytest.fixture(scope="module")
def exported(workspace_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("ytvis")
    results = decide(workspace_dir)
    ann = export_ytvis(results, out / "train.json", frames_dir=out / "JPEGImages")
    res = export_ytvis_results(results, out / "results.json")
    return results, ann, res, out / "JPEGImages"


def _person_or_track_class(r):
    """(N,) the class each instance should be exported with: the person's (curated: its
    label) else its track's voted class."""
    labels = {t.track_id: t.label for t in r.tracks}
    inst = r.instances
    return np.array([int(inst.label[i]) if r.user[i] else labels.get(int(inst.track_id[i]), int(inst.label[i]))
                     for i in range(len(inst))])


def test_annotation_file_is_standard_youtube_vis(exported):
    results, ann, _, frames = exported
    data = json.loads(ann.read_text())
    truth = parse_ground_truth(data, source=str(ann))  # the evaluation's strict reader accepts it
    assert [c["id"] for c in data["categories"]] == [1, 2, 3]
    assert [c["name"] for c in data["categories"]] == VOCAB
    assert [v["id"] for v in data["videos"]] == [1, 2]
    for v, (name, r) in zip(data["videos"], results.items()):
        assert v["length"] == r.info.num_frames == SRC_FRAMES // STRIDE
        assert v["file_names"][3] == f"{name}/00003.jpg"
        assert (v["width"], v["height"]) == (75, 45)
    # one annotation per kept track and class: category = the track's class + 1, except for
    # instances a person labelled otherwise (the relabel to cow), which keep their class
    for vid, (name, r) in enumerate(results.items(), 1):
        anns = [a for a in data["annotations"] if a["video_id"] == vid]
        cls = _person_or_track_class(r)
        groups = {(int(r.instances.track_id[i]), int(cls[i])) for i in np.flatnonzero(r.kept)}
        assert sorted((a["uvis"]["track_id"], a["category_id"] - 1) for a in anns) == sorted(groups)
        for a in anns:
            rows = np.flatnonzero(r.kept & (r.instances.track_id == a["uvis"]["track_id"])
                                  & (cls == a["category_id"] - 1))
            for row in rows:  # masks, areas and boxes per frame
                t = int(r.instances.frame[row])
                seg = a["segmentations"][t]
                m = mask_utils.decode({"size": seg["size"], "counts": seg["counts"].encode()})
                assert np.array_equal(m.astype(bool), decode(r.instances.masks[row]))
                assert a["areas"][t] == int(m.sum())
                ys, xs = np.nonzero(m)
                assert a["bboxes"][t] == [xs.min(), ys.min(), xs.max() + 1 - xs.min(), ys.max() + 1 - ys.min()]
            absent = set(range(r.info.num_frames)) - {int(f) for f in r.instances.frame[rows]}
            assert all(a["segmentations"][t] is None and a["bboxes"][t] is None for t in absent)
    assert data["uvis"]["config"] == next(iter(results.values())).config.to_dict()
    assert len(truth.annotations) == len(data["annotations"])


def test_frames_are_the_processed_frames(exported):
    results, ann, _, frames = exported
    r = results["alpha"]
    files = sorted((frames / "alpha").iterdir())
    assert [f.name for f in files] == [f"{t:05d}.jpg" for t in range(r.info.num_frames)]
    with open_video(r.info.path, stride=STRIDE, max_side=75) as reader:
        for t, rgb in reader.frames():
            jpg = cv2.cvtColor(cv2.imread(str(files[t])), cv2.COLOR_BGR2RGB)
            assert jpg.shape == rgb.shape
            assert np.abs(jpg.astype(int) - rgb.astype(int)).mean() < 4  # JPEG q95 of the same frame


def test_round_trip_is_exact(exported):
    results, ann, _, _ = exported
    back = read_ytvis_instances(ann)
    assert list(back) == list(results)
    for name, r in results.items():
        assert_same_table(r, back[name], np.flatnonzero(r.kept))
        assert back[name].info == r.info
        assert back[name].prompts == r.prompts
        assert back[name].config == r.config.to_dict()
    # the curated, relabelled dog keeps its own label (cow) inside the dog track
    a = back["alpha"]
    relabelled = np.flatnonzero((a.instances.frame == 5) & (a.proposal_index == 1))
    assert a.instances.label[relabelled[0]] == 2 and a.user[relabelled[0]]


def test_merged_track_with_two_instances_in_a_frame_survives(tmp_path):
    ws_dir = build_workspace(tmp_path, curate=False)
    ws = Workspace(ws_dir)
    ws.db.log("alpha", "merge", {"a": [1, 0], "b": [1, 3]})  # cat track + cow track: overlap in every frame
    proj = open_project(ws, text_encoder=text_encoder)
    from test_export_common import make_config

    r = proj.decide(make_config())["alpha"]
    ws.close()
    kept = r.kept
    tid = int(r.instances.track_id[np.flatnonzero((r.instances.frame == 1) & kept)][0])
    members = np.flatnonzero(kept & (r.instances.track_id == tid))
    frames = r.instances.frame[members]
    assert len(frames) > len(set(frames.tolist()))  # two instances of one track in a frame
    path = export_ytvis({"alpha": r}, tmp_path / "merged.json")
    data = json.loads(path.read_text())
    layers = [a for a in data["annotations"] if a["uvis"]["track_id"] == tid]
    assert len(layers) == 2
    back = read_ytvis_instances(path)["alpha"]
    assert_same_table(r, back, np.flatnonzero(kept))
    res = json.loads(export_ytvis_results({"alpha": r}, tmp_path / "res.json").read_text())
    entry = [e for e in res if e["score"] == pytest.approx(next(t.score for t in r.tracks if t.track_id == tid))]
    t1 = [int(f) for f in frames if (frames == f).sum() == 2][0]
    union = np.zeros(r.info.height * r.info.width, bool).reshape(r.info.height, r.info.width)
    for row in members[frames == t1]:
        union |= decode(r.instances.masks[row])
    seg = entry[0]["segmentations"][t1]
    assert np.array_equal(mask_utils.decode({"size": seg["size"], "counts": seg["counts"].encode()}).astype(bool),
                          union)


def test_results_file_one_scored_entry_per_track(exported):
    results, ann, res_path, _ = exported
    res = json.loads(res_path.read_text())
    truth = parse_ground_truth(json.loads(ann.read_text()))
    tracks = parse_results(res, truth)  # valid against the annotation file
    expected = []
    for vid, r in enumerate(results.values(), 1):  # one entry per track and class, scored as the track
        score = {t.track_id: t.score for t in r.tracks}
        cls = _person_or_track_class(r)
        groups = {(int(r.instances.track_id[i]), int(cls[i])) for i in np.flatnonzero(r.kept)}
        expected += [(vid, c + 1, score[tid]) for tid, c in groups]
    assert sorted((r["video_id"], r["category_id"], r["score"]) for r in res) == sorted(expected)
    assert len(tracks) == len(expected)
    preds = read_ytvis_predictions(res_path, ann)
    for name, r in results.items():
        p = preds[name]
        assert len(p.instances) == int(r.kept.sum())  # no merges here: one mask per track and frame
        # each prediction instance carries its result's score and category; track id = result index
        for k in set(p.instances.track_id.tolist()):
            sel = p.instances.track_id == k
            assert np.all(p.instances.clip_score[sel] == np.float32(res[k]["score"]))
            assert np.all(p.instances.label[sel] + 1 == res[k]["category_id"])
            assert p.instances.frame[sel].tolist() == [t for t, s in enumerate(res[k]["segmentations"]) if s]


def test_ground_truth_with_frames_validates_and_imports(exported, tmp_path):
    results, ann, _, frames = exported
    gt = load_ytvis_ground_truth(ann, frames)
    assert set(gt.frame_paths) == {1, 2} and gt.video_dir(1).name == "alpha" and not gt.warnings
    ws = Workspace(tmp_path / "gt-ws")
    summary = import_ytvis_into_workspace(ws, ann, frames)
    assert summary.added == ("alpha", "beta") and summary.existing == ()
    rec = ws.db.video("alpha")
    assert rec.status == "new" and rec.cache_key is None and Path(rec.path) == (frames / "alpha").resolve()
    assert rec.num_frames == 12 and (rec.width, rec.height) == (75, 45)
    g = ws.db.ground_truth("alpha")
    sub = json.loads(Path(g.path).read_text())
    assert g.source_video_id == 1 and [v["id"] for v in sub["videos"]] == [1]
    assert {a["video_id"] for a in sub["annotations"]} == {1}
    assert parse_ground_truth(sub).videos[1].length == 12
    # the registered folder opens as a video with the ground truth's frames
    with open_video(rec.path) as reader:
        assert reader.info.num_frames == 12 and list(reader.info.frame_names) == [f"{t:05d}.jpg" for t in range(12)]
    # idempotent; no cache created, nothing visible to decisions yet
    again = import_ytvis_into_workspace(ws, ann, frames)
    assert again.added == () and again.existing == ("alpha", "beta")
    assert ws.video_names() == []
    ws.close()


def test_import_refuses_a_name_taken_by_another_video(exported, tmp_path):
    _, ann, _, frames = exported
    ws = Workspace(tmp_path / "ws2")
    ws.db.upsert_video("alpha", str(tmp_path / "elsewhere.mp4"), cache_key="k")
    with pytest.raises(BadInputError, match="already has a video 'alpha'"):
        import_ytvis_into_workspace(ws, ann, frames)
    assert ws.db.ground_truth("beta") is None  # validated before anything was written
    ws.close()


def _broken_copy(ann: Path, frames: Path, tmp: Path, edit) -> tuple[Path, Path]:
    data = json.loads(ann.read_text())
    new_frames = tmp / "frames"
    shutil.copytree(frames, new_frames)
    edit(data, new_frames)
    path = tmp / "broken.json"
    path.write_text(json.dumps(data))
    return path, new_frames


def test_errors_name_the_place(exported, tmp_path):
    _, ann, _, frames = exported
    bad = tmp_path / "bad.json"
    bad.write_text('{"videos": [')
    with pytest.raises(BadInputError, match=r"bad\.json: malformed JSON"):
        load_ytvis_ground_truth(bad, frames)

    def unknown_category(d, f):
        d["annotations"][3]["category_id"] = 99

    path, fr = _broken_copy(ann, frames, tmp_path / "a", unknown_category)
    with pytest.raises(BadInputError, match=r"annotations\[3\]: unknown category_id 99"):
        load_ytvis_ground_truth(path, fr)

    def wrong_mask_size(d, f):
        a = d["annotations"][2]
        t = next(i for i, s in enumerate(a["segmentations"]) if s is not None)
        a["segmentations"][t] = {"size": [10, 10], "counts": a["segmentations"][t]["counts"]}
        d["_t"] = t

    path, fr = _broken_copy(ann, frames, tmp_path / "b", wrong_mask_size)
    t = json.loads(path.read_text())["_t"]
    with pytest.raises(BadInputError, match=rf"annotations\[2\]\.segmentations\[{t}\]: RLE size \[10, 10\]"):
        load_ytvis_ground_truth(path, fr)

    def missing_frame(d, f):
        (f / "beta" / "00007.jpg").unlink()

    path, fr = _broken_copy(ann, frames, tmp_path / "c", missing_frame)
    with pytest.raises(BadInputError, match=r"videos\[1\]\.file_names\[7\]: frame .*00007\.jpg not found"):
        load_ytvis_ground_truth(path, fr)

    def resized_frame(d, f):
        cv2.imwrite(str(f / "alpha" / "00004.jpg"), np.zeros((40, 70, 3), np.uint8))

    path, fr = _broken_copy(ann, frames, tmp_path / "d", resized_frame)
    with pytest.raises(BadInputError, match=r"videos\[0\]\.file_names\[4\]: .* is 70x40 but the video is 75x45"):
        load_ytvis_ground_truth(path, fr)

    def bad_extension_column(d, f):
        d["annotations"][1]["uvis"]["instances"]["clip_score"] = [0.5]

    path, fr = _broken_copy(ann, frames, tmp_path / "e", bad_extension_column)
    with pytest.raises(BadInputError, match=r"annotations\[1\]\.uvis\.instances\.clip_score: must be a list"):
        read_ytvis_instances(path)


def test_foreign_ground_truth_reads_as_proposals(tmp_path):
    h, w = 8, 10
    m = np.zeros((h, w), np.uint8)
    m[2:5, 3:7] = 1
    # uncompressed RLE as in the official files, a polygon, and null frames
    unc = {"size": [h, w], "counts": _uncompressed(m)}
    names = ["v/a.jpg", "v/b.jpg", "v/c.jpg"]
    data = {"videos": [{"id": 7, "width": w, "height": h, "length": 3, "file_names": names}],
            "categories": [{"id": 5, "name": "zebra"}, {"id": 2, "name": "owl"}],
            "annotations": [{"id": 11, "video_id": 7, "category_id": 5, "segmentations": [unc, None, unc]},
                            {"id": 12, "video_id": 7, "category_id": 2,
                             "segmentations": [None, [[1, 1, 4, 1, 4, 4, 1, 4]], None]}]}
    path = tmp_path / "gt.json"
    path.write_text(json.dumps(data))
    v = read_ytvis_instances(path)["v"]
    assert v.vocabulary == ["owl", "zebra"]  # category id order
    inst = v.instances
    assert inst.frame.tolist() == [0, 1, 2] and inst.label.tolist() == [1, 0, 1]
    assert inst.track_id.tolist() == [11, 12, 11] and inst.objectness.tolist() == [1, 1, 1]
    assert np.array_equal(decode(inst.masks[0]), m.astype(bool))
    np.testing.assert_array_equal(inst.boxes[0], [3, 2, 7, 5])
    assert v.info.frame_names == ("a.jpg", "b.jpg", "c.jpg")


def _uncompressed(m: np.ndarray) -> list[int]:
    flat = m.flatten(order="F")
    counts, cur, run = [], 0, 0
    for v in flat:
        if v != cur:
            counts.append(run)
            cur, run = v, 0
        run += 1
    counts.append(run)
    return counts


def test_cli_export_and_import(workspace_dir, tmp_path, capsys):
    out = tmp_path / "cli.json"
    rc = main(["export", "--workspace", str(workspace_dir), "--to", "ytvis", "--out", str(out), "--results",
               str(tmp_path / "res.json"), "--frames", str(tmp_path / "frames"), "--video", "beta", "--quiet"])
    assert rc == 0
    data = json.loads(out.read_text())
    assert [v["uvis"]["name"] for v in data["videos"]] == ["beta"]
    ref = decide(workspace_dir)["beta"]
    assert_same_table(ref, read_ytvis_instances(out)["beta"], np.flatnonzero(ref.kept))
    assert len(list((tmp_path / "frames" / "beta").iterdir())) == 12
    rc = main(["import", "--workspace", str(tmp_path / "w2"), "--ytvis", str(out), "--frames",
               str(tmp_path / "frames")])
    assert rc == 0 and "1 videos registered" in capsys.readouterr().out
    assert main(["export", "--workspace", str(workspace_dir), "--to", "ytvis"]) == 2  # --out missing
    assert main(["export", "--workspace", str(workspace_dir), "--to", "ytvis", "--out", str(out),
                 "--video", "nope"]) == 2
    assert "nope" in capsys.readouterr().err


def test_failed_export_leaves_no_file(tmp_path):
    ws_dir = build_workspace(tmp_path, curate=False)
    results = decide(ws_dir)
    Path(results["alpha"].info.path).unlink()  # frames cannot be read
    out = tmp_path / "out"
    with pytest.raises(BadInputError, match="no longer exists"):
        export_ytvis(results, out / "a.json", frames_dir=out / "frames")
    assert not (out / "a.json").exists()
    assert not out.exists() or [p.name for p in (out / "frames").iterdir()] == []
