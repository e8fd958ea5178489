"""Curation with provenance, batch actions, schema migration and atomic undo/redo.

Caches are written by hand (known masks and embeddings) so every expectation follows
from the inputs: which instance a person curated is known by construction.
"""
import json
import shutil
import sqlite3
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from uvis import batch
from uvis import masks as M
from uvis.cache import CacheMeta, CacheWriter
from uvis.config import Config
from uvis.curation import CARRY_OVER_IOU, unresolved_message
from uvis.pipeline import open_project
from uvis.testing import ToyTextEncoder, unit
from uvis.tracker import track_classes
from uvis.types import Reason, VideoInfo, Instances
from uvis.workspace import Workspace

H, W, D = 40, 120, 6
VOCAB = ["cat", "dog", "cow"]
ENC = ToyTextEncoder(tuple(VOCAB), D)


def _mask(x, dx=0):
    m = np.zeros((H, W), bool)
    m[8:30, x + dx:x + dx + 16] = True
    return m


# objects: name -> (x position, embedding direction)
OBJECTS = {"A": (4, [1, 0.1, 0, 0, 0, 0]), "B": (44, [0.1, 1, 0, 0, 0, 0]), "C": (84, [1, 0.2, 0, 0, 0, 0])}


def _write(ws, name, key, order, n_frames=6, shift=0, objectness=0.9, has_text=True):
    """A cache ``key`` of video ``name``: per frame the objects of ``order`` in that order
    (masks shifted by ``shift`` px); registers it as the video's current cache."""
    info = VideoInfo(name=name, path=f"/{name}.mp4", width=W, height=H, num_frames=n_frames, fps=10,
                     source_width=W, source_height=H, source_indices=tuple(range(n_frames)))
    meta = CacheMeta(info, "test-proposer", "test-embedder", {}, D, has_text, 20.0)
    writer = CacheWriter(ws.cache_dir(name, key), meta)
    for t in range(n_frames):
        rles = M.encode_many(np.stack([_mask(OBJECTS[o][0], shift) for o in order]))
        emb = unit([OBJECTS[o][1] for o in order])
        writer.write_frame(t, Instances(boxes=M.to_bbox(rles), masks=rles, objectness=[objectness] * len(order),
                                        image_size=(H, W), embeddings=emb))
    ws.db.upsert_video(name, info.path, cache_key=key, num_frames=n_frames, width=W, height=H, status="done")


CFG = Config().replace(labeler__vocabulary=VOCAB, filters__clip_threshold=0.0, filters__pmf_enabled=False)


def _row(res, t, i):
    return int(np.searchsorted(res.instances.frame, t)) + i


def test_curation_follows_its_instance_across_a_relabel(tmp_path):
    ws = Workspace(tmp_path / "ws")
    _write(ws, "v", "k1", ["A", "B", "C"])
    cache1 = open_project(ws, text_encoder=ENC).caches["v"]
    for planned in (batch.plan(cache1, "v", "reject", [(2, 0)]),                    # A
                    batch.plan(cache1, "v", "relabel", [(3, 1)], label="cow"),       # B
                    batch.plan(cache1, "v", "accept", [(4, 2)], label="cat")):       # C
        ws.db.log("v", planned.action, planned.payload, cache_key=planned.cache_key, items=list(planned.items))
    # re-labelled with other settings: B is gone, C comes first, A moved by 2 px (IoU 0.78)
    _write(ws, "v", "k2", ["C", "A"], shift=2)
    res = open_project(ws, text_encoder=ENC).decide(CFG)["v"]
    assert res.cache_key == "k2"
    assert res.instances.decision[_row(res, 2, 1)] == Reason.USER_REJECT  # A, now index 1
    assert res.instances.decision[_row(res, 2, 0)] == Reason.KEPT  # C sits where A was: untouched
    assert res.user[_row(res, 4, 0)] and not res.user[_row(res, 4, 1)]  # the accept followed C
    assert res.user.sum() == 2
    # B's relabel cannot be placed: listed, never applied elsewhere
    assert [(u.kind, u.frame, u.index, u.reason) for u in res.unresolved] == [("relabel", 3, 1, "earlier_labelling")]
    assert unresolved_message(res.unresolved) == "1 curation action refers to an earlier labelling of this video"
    assert not (res.instances.label == VOCAB.index("cow")).any()
    # a shift beyond the threshold is not matched: A at 9 px overlaps with IoU < 0.5
    iou = M.iou_matrix([M.to_coco(M.encode(_mask(4)))], [M.to_coco(M.encode(_mask(4, 9)))])[0, 0]
    assert iou < CARRY_OVER_IOU
    _write(ws, "v", "k3", ["C", "A"], shift=9)
    res3 = open_project(ws, text_encoder=ENC).decide(CFG)["v"]
    assert not res3.user.any() and len(res3.unresolved) == 3
    assert "3 curation actions refer to an earlier labelling" in unresolved_message(res3.unresolved)
    ws.close()


def test_a_row_applies_only_to_its_fingerprint(tmp_path):
    ws = Workspace(tmp_path / "ws")
    _write(ws, "v", "k", ["A", "B"])
    cache = open_project(ws, text_encoder=ENC).caches["v"]
    planned = batch.plan(cache, "v", "reject", [(1, 0)])
    ws.db.log("v", "reject", planned.payload, cache_key="k", items=list(planned.items))
    # the same cache key rewritten with other content (objects swapped): the row does not apply
    _write(ws, "v", "k", ["B", "A"])
    res = open_project(ws, text_encoder=ENC).decide(CFG)["v"]
    assert not res.user.any()
    assert [u.reason for u in res.unresolved] == ["changed"]
    ws.close()


def test_batch_is_one_undo_step_and_dry_run_matches(tmp_path):
    ws = Workspace(tmp_path / "ws")
    _write(ws, "v", "k", ["A", "B", "C"], n_frames=8)
    project = open_project(ws, text_encoder=ENC)
    before = project.decide(CFG)["v"]
    track_b = batch.track_refs(before, 0, 1)
    assert len(track_b) == 8 and {i for _, i in track_b} == {1}
    planned = batch.plan(project.caches["v"], "v", "relabel", track_b, label="cow", scope="track")
    preview = batch.impact(project, CFG, planned)
    ws.db.log("v", planned.action, planned.payload, cache_key=planned.cache_key, items=list(planned.items))
    after = project.decide(CFG)["v"]
    done = batch.compare(before, after, batch.rows_of(project.caches["v"], planned), "changed")
    assert (preview.instances, preview.tracks) == (done.instances, done.tracks) == (8, 1)
    assert preview.propagated == 0 and preview.message.startswith("would change 8 instances in 1 track")
    rows_b = [_row(after, t, i) for t, i in track_b]
    assert all(after.class_name(r) == "cow" for r in rows_b)
    assert ws.db.undo("v").action == "relabel" and not ws.db.active("v")
    undone = project.decide(CFG)["v"]
    assert all(undone.class_name(r) == before.class_name(r) for r in rows_b) and not undone.user.any()
    ws.db.redo("v")
    assert project.decide(CFG)["v"].user.sum() == 8
    ws.close()


def test_person_labels_decide_the_track_class():
    tids = np.array([0, 0, 0, 0, 1, 1])
    labels = np.array([2, 2, 2, 1, 1, 1])
    scores = np.array([0.9, 0.9, 0.9, 0.01, 0.5, 0.5])
    none = np.full(6, -1)
    assert track_classes(tids, labels, scores) == {0: 2, 1: 1}  # score-weighted vote
    curated = none.copy()
    curated[3] = 1  # one person-labelled member outranks three confident model votes
    assert track_classes(tids, labels, scores, curated) == {0: 1, 1: 1}
    curated[0] = 0  # a tie of curated labels: the most recent curation wins
    order = np.array([7, 0, 0, 3, 0, 0])
    assert track_classes(tids, labels, scores, curated, order)[0] == 0
    order[3] = 9
    assert track_classes(tids, labels, scores, curated, order)[0] == 1
    curated[1] = 1  # a majority beats recency
    order = np.array([9, 1, 0, 2, 0, 0])
    assert track_classes(tids, labels, scores, curated, order)[0] == 1


def test_relabel_outranks_the_model_in_view_counts_and_export(tmp_path):
    from uvis.export.ytvis import ytvis_annotation_dict
    from uvis.stats import class_counts

    ws = Workspace(tmp_path / "ws")
    _write(ws, "v", "k", ["A"], n_frames=12)
    project = open_project(ws, text_encoder=ENC)
    res = project.decide(CFG)["v"]
    assert {res.class_name(r) for r in range(12)} == {"cat"}
    refs = [(t, 0) for t in range(3)]  # 3 of 12 members relabelled "dog"; the model says cat for all
    planned = batch.plan(project.caches["v"], "v", "relabel", refs, label="dog")
    ws.db.log("v", planned.action, planned.payload, cache_key=planned.cache_key, items=list(planned.items))
    res = project.decide(CFG)["v"]
    assert len(res.tracks) == 1 and res.vocabulary[res.tracks[0].label] == "dog"
    assert {res.class_name(r) for r in range(12)} == {"dog"}
    assert [(c.name, c.kept, c.tracks) for c in class_counts({"v": res})] == [("dog", 12, 1)]
    data = ytvis_annotation_dict({"v": res})
    assert [a["category_id"] for a in data["annotations"]] == [VOCAB.index("dog") + 1]
    # the relabelled instances' score is the model's probability of "dog", not 1.0
    assert np.all(res.instances.clip_score[:3] < 0.5)
    ws.close()


def test_similar_proposals_do_not_survive_undo_vocabulary_or_video_change(tmp_path):
    ws = Workspace(tmp_path / "ws")
    _write(ws, "v", "k", ["A", "B"])
    _write(ws, "w", "k", ["A", "B"])
    project = open_project(ws, text_encoder=ENC)
    cache = project.caches["v"]
    planned = batch.plan(cache, "v", "relabel", [(0, 0)], label="cow")
    ws.db.log("v", "relabel", planned.payload, cache_key="k", items=list(planned.items))
    res = project.decide(CFG)["v"]
    prop = batch.propose_similar(res, ws.db.version("v"), 0, 0, None, k=5)
    assert prop.label == "cow" and [i for _, i, _ in prop.items] == [0] * 5  # object A in the other frames
    batch.check_proposal(prop, "v", ws.db.version("v"), res.vocabulary)  # valid now
    with pytest.raises(batch.StaleProposal, match="video"):
        batch.check_proposal(prop, "w", ws.db.version("w"), res.vocabulary)
    with pytest.raises(batch.StaleProposal, match="vocabulary"):
        batch.check_proposal(prop, "v", ws.db.version("v"), ["cat", "dog"])
    ws.db.undo("v")
    with pytest.raises(batch.StaleProposal, match="curation changed"):
        batch.check_proposal(prop, "v", ws.db.version("v"), res.vocabulary)
    ws.close()


def test_removing_a_curated_class_warns_and_can_keep_it(tmp_path):
    from uvis.export.ytvis import ytvis_annotation_dict
    from uvis.stats import class_counts

    ws = Workspace(tmp_path / "ws")
    _write(ws, "v", "k", ["A", "B"], n_frames=4, objectness=0.5)  # nothing passes objectness by itself
    project = open_project(ws, text_encoder=ENC)
    planned = batch.plan(project.caches["v"], "v", "relabel", [(t, 1) for t in range(4)], label="cow")
    ws.db.log("v", "relabel", planned.payload, cache_key="k", items=list(planned.items))
    impact = batch.vocabulary_impact(project, ["cat", "dog"])
    assert impact.removed_in_use == {"cow": 4} and impact.message.startswith("4 curated instances use removed class cow")
    kept_cfg = batch.edit_vocabulary(CFG, ["cat", "dog"], impact, keep_curated=True)
    assert kept_cfg.labeler.vocabulary == ["cat", "dog", "cow"]
    res = project.decide(kept_cfg)["v"]
    assert int(res.kept.sum()) == 4 and {res.class_name(r) for r in np.flatnonzero(res.kept)} == {"cow"}
    removed_cfg = batch.edit_vocabulary(CFG, ["cat", "dog"], impact, keep_curated=False)
    res = project.decide(removed_cfg)["v"]
    counts = sum(c.kept for c in class_counts({"v": res}))
    exported = sum(sum(s is not None for s in a["segmentations"])
                   for a in ytvis_annotation_dict({"v": res})["annotations"])
    assert counts == exported == int(res.kept.sum()) == 0  # counts and export agree
    assert {u.reason for u in res.unresolved} == {"class_outside_vocabulary"} and len(res.unresolved) == 4
    ws.close()


OLD_SCHEMA = """
CREATE TABLE videos (name TEXT PRIMARY KEY, path TEXT NOT NULL, cache_key TEXT, num_frames INTEGER,
    width INTEGER, height INTEGER, status TEXT NOT NULL DEFAULT 'new', added_at REAL NOT NULL,
    updated_at REAL NOT NULL);
CREATE TABLE configs (id INTEGER PRIMARY KEY AUTOINCREMENT, created_at REAL NOT NULL, note TEXT,
    config TEXT NOT NULL);
CREATE TABLE curation (id INTEGER PRIMARY KEY AUTOINCREMENT, created_at REAL NOT NULL, video TEXT NOT NULL,
    action TEXT NOT NULL, payload TEXT NOT NULL);
CREATE INDEX curation_video ON curation(video, id);
"""


def test_migration_of_a_wedged_pre_provenance_log(tmp_path):
    root = tmp_path / "ws"
    root.mkdir()
    con = sqlite3.connect(root / "uvis.sqlite")
    con.executescript(OLD_SCHEMA)
    con.execute("INSERT INTO videos VALUES ('v', '/v.mp4', 'k', 6, 120, 40, 'done', 0, 0)")
    rows = [("accept", {"frame": 0, "index": 1}), ("reject", {"frame": 1, "index": 0}),
            ("undo", {"target": 2}), ("undo", {"target": 2}),  # two undos at the same moment
            ("relabel", {"frame": 2, "index": 9, "label": "cow"}),  # no such instance
            ("split", {"at": [3, 0]})]
    for i, (a, p) in enumerate(rows):
        con.execute("INSERT INTO curation(created_at, video, action, payload) VALUES (?,?,?,?)", (i, "v", a, json.dumps(p)))
    con.commit()
    con.close()
    # the cache the rows were made on is the current one (written elsewhere, then moved in)
    other = Workspace(tmp_path / "other")
    _write(other, "v", "k", ["A", "B"])
    other.close()
    shutil.copytree(tmp_path / "other" / "videos", root / "videos")
    ws = Workspace(root)
    assert ws.db.schema_version() == 2 and ws.db.verify("v")
    assert ws.db.replay("v")[1] == [4]  # the duplicate undo (row 4) is skipped, not raised on
    assert [a.action for a in ws.db.active("v")] == ["accept", "relabel", "split"]
    res = open_project(ws, text_encoder=ENC).decide(CFG)["v"]
    assert res.user[_row(res, 0, 1)] and res.user.sum() == 1
    assert [(u.kind, u.reason) for u in res.unresolved] == [("relabel", "no_provenance")]
    assert not ws.db.needs_backfill()
    # the backfilled rows now carry fingerprints: a re-label carries the accept over
    _write(ws, "v", "k2", ["B", "A"])
    res2 = open_project(ws, text_encoder=ENC).decide(CFG)["v"]
    assert res2.user[_row(res2, 0, 0)] and res2.user.sum() == 1
    # undo/redo keep working on the migrated log
    assert ws.db.undo("v").action == "split" and ws.db.verify("v")
    ws.close()


def test_repair_rebuilds_a_corrupted_state(tmp_path):
    ws = Workspace(tmp_path / "ws")
    for t in range(5):
        ws.db.log("v", "accept", {"frame": t, "index": 0})
    ws.db.undo("v")
    ws.db.undo("v")
    ws.db.redo("v")
    ws.db._conn.execute("UPDATE curation SET status='applied' WHERE id=5")  # a state out of step with the log
    assert not ws.db.verify("v")
    report = ws.db.repair("v")
    assert report.changed == 1 and ws.db.verify("v")
    assert [a.payload["frame"] for a in ws.db.active("v")] == [0, 1, 2, 3]
    ws.close()


WORKER = textwrap.dedent("""
    import random, sys
    from uvis.db import WorkspaceDB
    db = WorkspaceDB(sys.argv[1])
    rng = random.Random(int(sys.argv[2]))
    for k in range(int(sys.argv[3])):
        r = rng.random()
        if r < 0.4:
            db.log("v", "relabel", {"items": [[k % 7, rng.randrange(3)]], "label": rng.choice(["cat", "dog"])})
        elif r < 0.75:
            db.undo("v")
        else:
            db.redo("v")
    db.close()
""")


def _strict_replay(entries):
    """The pre-schema-2 replay (raises on a duplicate undo/redo): the serial reference."""
    applied, undone, by_id = [], [], {}
    for e in entries:
        if e.action == "undo":
            t = by_id[e.payload["target"]]
            applied.remove(t)
            undone.append(t)
        elif e.action == "redo":
            t = by_id[e.payload["target"]]
            undone.remove(t)
            applied.append(t)
        else:
            by_id[e.id] = e.id
            applied.append(e.id)
            undone.clear()
    return sorted(applied)


def test_two_processes_undo_redo_and_log_at_once(tmp_path):
    path = tmp_path / "uvis.sqlite"
    Workspace(tmp_path).close()
    rounds = 300
    procs = [subprocess.Popen([sys.executable, "-c", WORKER, str(path), str(seed), str(rounds)])
             for seed in (1, 2)]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    ws = Workspace(tmp_path)
    entries = ws.db.entries("v")
    assert len(entries) > rounds  # both wrote (most undo/redo calls find a target)
    assert ws.db.replay("v")[1] == []  # no undo/redo ever hit a missing target
    applied = _strict_replay(entries)  # a serial replay of the log never raises
    assert [a.id for a in ws.db.active("v")] == applied and ws.db.verify("v")
    effect = {(e.frame, e.index): e.label for e in ws.db.effect("v").effects}
    latest: dict = {}
    for e in entries:
        if e.id in set(applied):
            t, i = e.payload["items"][0]
            latest[(t, i)] = e.payload["label"]
    assert effect == latest
    ws.close()


def test_drawn_instance_is_decided_tracked_exported_and_undone(tmp_path):
    from uvis.export.ytvis import ytvis_annotation_dict

    ws = Workspace(tmp_path / "ws")
    _write(ws, "v", "k", ["A", "B"], n_frames=4)
    project = open_project(ws, text_encoder=ENC)
    cache = project.caches["v"]
    drawn = np.zeros((H, W), bool)
    drawn[5:35, 70:110] = True  # where no proposal is
    planned = batch.plan_draw(cache, "v", 2, drawn, "cow")
    aid = ws.db.log("v", "draw", planned.payload, cache_key="k", items=list(planned.items))
    ws.db.set_draw_embedding(aid, unit([0, 0, 1, 0, 0, 0]))
    res = project.decide(CFG)["v"]
    assert len(res.instances) == 9 and res.instances.frame.tolist() == [0, 0, 1, 1, 2, 2, 2, 3, 3]
    row = 6  # frame 2, index 2: after the frame's two proposals
    assert M.decode(res.instances.masks[row]).sum() == drawn.sum()
    assert res.kept[row] and res.user[row] and res.class_name(row) == "cow" and res.instances.track_id[row] >= 0
    data = ytvis_annotation_dict({"v": res})
    cow = [a for a in data["annotations"] if a["category_id"] == VOCAB.index("cow") + 1]
    assert len(cow) == 1 and [s is not None for s in cow[0]["segmentations"]] == [False, False, True, False]
    # the drawn instance can be curated like any other (by its fingerprint), and undone
    ws.db.undo("v")
    res = project.decide(CFG)["v"]
    assert len(res.instances) == 8 and not res.user.any()
    ws.close()


def test_exemplar_propagation_is_reported(tmp_path):
    from app.state import AppController

    ws = Workspace(tmp_path / "ws")
    _write(ws, "v", "k", ["A", "B", "C"], n_frames=5, has_text=False)  # offline: label by example
    cfg = CFG.replace(filters__clip_threshold=0.9)
    ctrl = AppController(ws, cfg, [], start_worker=False)
    assert ctrl.result("v", cfg).label_source == "none"
    report = ctrl.apply(cfg, ctrl.plan("v", "relabel", [(0, 0)], label="cow"))
    res = ctrl.result("v", cfg)
    assert res.label_source == "examples"
    # A and C look alike (cosine 0.99): the one example relabels every A and C; B (cosine
    # 0.2 to it) falls below the similarity threshold and is no longer kept
    cows = [r for r in np.flatnonzero(res.kept) if res.class_name(r) == "cow"]
    assert len(cows) == 10 and int(res.kept.sum()) == 10
    assert (report.impact.relabelled, report.impact.relabelled_tracks) == (9, 2)
    assert (report.impact.propagated, report.impact.propagated_tracks) == (14, 3)
    assert "this example relabelled 9 other instances in 2 tracks" in report.message
    ctrl.close()
    ws.close()
