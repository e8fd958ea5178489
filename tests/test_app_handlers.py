"""The app without a browser: handlers, rendering, controller, jobs, backends.

A tiny workspace is written by hand: a real 8-frame video file (so frames decode) and
a cache of two instances per frame with chosen embeddings, so every expectation below
is computed from known inputs.
"""
import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from app import handlers, render, views
from app.backends import banner_markdown, choose_embedder, choose_proposer
from app.handlers import DecisionSettings
from app.state import AppController, ViewState
from uvis import masks as M
from uvis.cache import CacheMeta, CacheWriter
from uvis.config import Config, EmbedderConfig, ProposerConfig
from uvis.errors import BadInputError, ConfigError
from uvis.text_cache import TextEmbeddingCache
from uvis.types import Instances, Reason, VideoInfo
from uvis.workspace import Workspace

H, W, D, N = 48, 96, 6, 8
VOCAB = ["cat", "dog", "cow"]


def _unit(v):
    v = np.asarray(v, np.float32)
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def _encoder(prompts):
    out = []
    for p in prompts:
        cls = next(i for i, c in enumerate(VOCAB) if p.endswith(f" {c}") or f" {c} " in p)
        v = np.zeros(D)
        v[cls] = 1.0
        v[3 + (len(p) % 3)] = 0.1
        out.append(v)
    return _unit(out)


def _write_avi(path: Path) -> None:
    wr = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (W, H))
    for t in range(N):
        img = np.full((H, W, 3), 40 + 20 * t, np.uint8)
        wr.write(img)
    wr.release()


def _make_workspace(root: Path, has_text: bool = True) -> Workspace:
    """Video 'clip': object 0 (left, moving) looks like a cat with CLIP-ish score high;
    object 1 (right) is ambiguous between cat and dog."""
    ws = Workspace(root)
    video = root / "clip.avi"
    _write_avi(video)
    info = VideoInfo(name="clip", path=str(video), width=W, height=H, num_frames=N, fps=10, source_width=W,
                     source_height=H, source_indices=tuple(range(N)))
    meta = CacheMeta(info, "test-proposer", "test-embedder", {"backend": "efficientnet"}, D, has_text, 10.0)
    writer = CacheWriter(ws.cache_dir("clip", "k"), meta)
    for t in range(N):
        ms = []
        for x0, x1 in ((4 + t, 24 + t), (60, 90)):
            m = np.zeros((H, W), bool)
            m[10:40, x0:x1] = True
            ms.append(m)
        emb = _unit([[1, 0.05, 0, 0.02 * t, 0, 0], [0.7, 0.7, 0, 0, 0.01 * t, 0]])
        rles = M.encode_many(np.stack(ms))
        writer.write_frame(t, Instances(boxes=M.to_bbox(rles), masks=rles, objectness=[0.95, 0.9],
                                        image_size=(H, W), embeddings=emb))
    ws.db.upsert_video("clip", str(video), cache_key="k", num_frames=N, width=W, height=H, status="done")
    if has_text:
        cfg = Config().replace(labeler__vocabulary=VOCAB)
        TextEmbeddingCache(ws.text_cache_dir, "test-embedder").get(cfg.prompts(), _encoder)
    return ws


@pytest.fixture
def ctrl(tmp_path):
    ws = _make_workspace(tmp_path / "ws")
    c = AppController(ws, Config().replace(labeler__vocabulary=VOCAB), [], start_worker=False)
    yield c
    c.close()
    ws.close()


# ----------------------------------------------------------------------------- parsing & config
def test_parse_vocabulary_and_templates():
    assert handlers.parse_vocabulary(" cat, dog\ncow ,dog,, ") == ["cat", "dog", "cow"]
    with pytest.raises(ConfigError, match="empty"):
        handlers.parse_vocabulary(" , \n")
    assert handlers.parse_templates("a photo of {}\n\n{} moving\na photo of {}") == ["a photo of {}", "{} moving"]
    with pytest.raises(ConfigError, match="'no class here'"):
        handlers.parse_templates("a photo of {}\nno class here")
    assert handlers.parse_per_class("cat: 0.5\ndog=0.25, cow : 1") == {"cat": 0.5, "dog": 0.25, "cow": 1.0}
    with pytest.raises(ConfigError, match="cat 0.5"):
        handlers.parse_per_class("cat 0.5")


def test_build_config_round_trip_and_changes():
    base = Config().replace(labeler__vocabulary=VOCAB, filters__clip_threshold_per_class={"dog": 0.4})
    s = DecisionSettings.from_config(base)
    again = handlers.build_config(base, s)
    assert again.to_dict() == base.to_dict()
    changed = handlers.build_config(base, DecisionSettings(**{**s.__dict__, "clip_threshold": 0.9, "pmf_k": 3,
                                                               "max_cost": 1.2, "vocabulary": "cat, dog"}))
    assert changed.filters.clip_threshold == 0.9 and changed.filters.pmf_k == 3
    assert changed.tracker.max_cost == 1.2 and changed.labeler.vocabulary == ["cat", "dog"]
    with pytest.raises(ConfigError, match="horse"):
        handlers.build_config(base, DecisionSettings(**{**s.__dict__, "clip_per_class": "horse: 0.3"}))
    with pytest.raises(ConfigError, match="objectness_threshold"):
        handlers.build_config(base, DecisionSettings(**{**s.__dict__, "objectness_threshold": 1.5}))


# ----------------------------------------------------------------------------- decisions in the view
def test_frame_view_renders_four_panels_and_threshold_changes_counts(ctrl):
    base = ctrl.run_config
    fv = views.frame_view(ctrl, ViewState(), base.replace(filters__clip_threshold=0.0))
    assert len(fv.panels) == 4
    for p in fv.panels:
        assert p.dtype == np.uint8 and p.shape == (int(round(H * fv.scale)), int(round(W * fv.scale)), 3)
    assert fv.state.video == "clip" and len(fv.table) == 2
    all_kept = handlers.counts(fv.result)
    assert all_kept.kept == 2 * N
    # object 1 is ambiguous (about half cat, half dog): a threshold of 0.8 drops it in every frame
    strict = base.replace(filters__clip_threshold=0.8)
    res = ctrl.result("clip", strict)
    c = handlers.counts(res)
    assert c.kept == N and c.by_reason["CLIP score"] == N
    text = handlers.counts_markdown(res, None, 0)
    assert f"kept {N}" in text and f"dropped {N}" in text


def test_table_card_and_top5(ctrl):
    cfg = ctrl.run_config.replace(filters__clip_threshold=0.8)
    res = ctrl.result("clip", cfg)
    rows = ctrl.frame_rows("clip", 2)
    table = handlers.frame_table(res, rows)
    assert [r[0] for r in table] == [0, 1]
    assert table[0][2] == "cat" and table[0][4] == "kept"
    assert table[1][4] == "CLIP score"
    assert table[0][8].startswith("a photo of") and "cat" in table[0][8]
    card = handlers.instance_card(res, rows.start + 1, 1, 2)
    shown = int((res.top_probs[rows.start + 1] >= 5e-4).sum())
    assert "instance #1" in card and "CLIP score" in card and card.count("uv-bar-fill") == shown >= 2


def test_picking_and_selection_follow_track(ctrl):
    cfg = ctrl.run_config.replace(filters__clip_threshold=0.0)
    res = ctrl.result("clip", cfg)
    rows = ctrl.frame_rows("clip", 3)
    assert handlers.instance_at(res, rows, 4 + 3 + 5, 20) == 0
    assert handlers.instance_at(res, rows, 70, 20) == 1
    assert handlers.instance_at(res, rows, 45, 5) is None
    fv = views.frame_view(ctrl, ViewState(video="clip", frame=3), cfg)
    fv = views.pick(ctrl, fv.state, cfg, 75 * fv.scale, 25 * fv.scale)
    assert fv.state.selected == 1 and fv.state.track is not None
    # the selected instance is outlined in yellow in every panel
    for p in fv.panels:
        assert (np.abs(p.astype(int) - render.SELECT_COLOUR).sum(axis=2) < 60).sum() > 20
    moved = views.move_to_frame(ctrl, fv.state, cfg, 5)
    assert moved.state.frame == 5 and moved.state.selected == 1


def test_decision_colours_in_panel_c(ctrl):
    cfg = ctrl.run_config.replace(filters__clip_threshold=0.8)
    fv = views.frame_view(ctrl, ViewState(video="clip", frame=0), cfg)
    panel_c = fv.panels[2].astype(int)
    s = fv.scale
    kept_px = panel_c[int(25 * s), int(14 * s)]   # inside object 0 (kept: green tint)
    drop_px = panel_c[int(25 * s), int(75 * s)]   # inside object 1 (dropped by CLIP score: orange tint)
    assert kept_px[1] > kept_px[0] and kept_px[1] > kept_px[2]
    assert drop_px[0] > drop_px[2]
    # panel (d) shows only kept instances: object 1's pixels are the plain frame there
    panel_d = fv.panels[3].astype(int)
    assert abs(panel_d[int(25 * s), int(75 * s)] - fv.panels[0][0, 0].astype(int)).max() < 12


def test_curation_persists_across_controllers(tmp_path):
    ws = _make_workspace(tmp_path / "ws")
    cfg = Config().replace(labeler__vocabulary=VOCAB, filters__clip_threshold=0.8)
    c1 = AppController(ws, cfg, [], start_worker=False)
    assert handlers.counts(c1.result("clip", cfg)).kept == N
    c1.curate("clip", "relabel", handlers.instance_payload(4, 1, "dog"))
    c1.curate("clip", "reject", handlers.instance_payload(5, 0))
    res = c1.result("clip", cfg)
    row = c1.frame_rows("clip", 4).start + 1
    assert res.vocabulary[res.instances.label[row]] == "dog" and res.kept[row] and res.user[row]
    assert res.instances.decision[c1.frame_rows("clip", 5).start] == Reason.USER_REJECT
    assert c1.undo("clip").startswith("undid reject")
    assert res is not c1.result("clip", cfg)  # the memo is invalidated by curation
    c1.close()
    ws.close()
    ws2 = Workspace(tmp_path / "ws")  # "restart"
    c2 = AppController(ws2, cfg, [], start_worker=False)
    res2 = c2.result("clip", cfg)
    row = c2.frame_rows("clip", 4).start + 1
    assert res2.vocabulary[res2.instances.label[row]] == "dog" and res2.user[row]
    assert res2.instances.decision[c2.frame_rows("clip", 5).start] == Reason.KEPT  # the reject was undone
    assert c2.redo("clip").startswith("redid reject")
    c2.close()
    ws2.close()


def test_label_by_example_without_text(tmp_path):
    ws = _make_workspace(tmp_path / "ws", has_text=False)
    cfg = Config().replace(labeler__vocabulary=VOCAB, filters__clip_threshold=0.5)
    c = AppController(ws, cfg, [], start_worker=False)
    res = c.result("clip", cfg)
    # nothing labelled yet: class-agnostic (label source auto -> none), every object kept
    assert res.label_source == "none" and res.vocabulary == ["object"] and res.kept.all()
    c.curate("clip", "relabel", handlers.instance_payload(0, 0, "cow"))
    res = c.result("clip", cfg)
    obj0 = res.instances.objectness == np.float32(0.95)
    assert (res.instances.label[obj0] == VOCAB.index("cow")).all()  # similar instances follow the example
    st = ViewState(video="clip", frame=0, selected=0)
    sims = views.similar_to_selection(c, st, cfg, k=5)
    assert len(sims) == 5 and all(s1 >= s2 for (_, _, _, s1), (_, _, _, s2) in zip(sims, sims[1:]))
    assert all(i == 0 for _, _, i, _ in sims[:3]) and sims[0][3] > 0.99  # the same object in other frames
    frames = res.instances.frame
    for r, f, i, _ in sims:
        assert frames[r] == f and c.frame_rows("clip", f).start + i == r
    # offline words: nothing says "CLIP score" (counts, table, card, hover details, panels' tags, timeline)
    fv = views.frame_view(c, ViewState(video="clip", frame=2, selected=1), cfg.replace(filters__clip_threshold=0.99))
    words = " ".join([fv.counts, str(fv.table), fv.card, fv.canvas, fv.timeline])
    assert "CLIP score" not in words and "similarity to the closest example" in words
    c.close()
    ws.close()


def test_track_merge_and_split(ctrl):
    cfg = ctrl.run_config.replace(filters__clip_threshold=0.0)
    res = ctrl.result("clip", cfg)
    tid = res.instances.track_id
    r0, r1 = ctrl.frame_rows("clip", 0).start, ctrl.frame_rows("clip", 0).start + 1
    assert tid[r0] != tid[r1]
    ctrl.curate("clip", "merge", handlers.merge_payload((0, 0), (0, 1)))
    res = ctrl.result("clip", cfg)
    assert res.instances.track_id[r0] == res.instances.track_id[r1]
    ctrl.undo("clip")
    ctrl.curate("clip", "split", handlers.split_payload(4, 0))
    res = ctrl.result("clip", cfg)
    t = res.instances.track_id
    assert t[ctrl.frame_rows("clip", 3).start] != t[ctrl.frame_rows("clip", 4).start]
    with pytest.raises(BadInputError):
        handlers.merge_payload((1, 1), (1, 1))


# ----------------------------------------------------------------------------- uploads & paths
def test_upload_checks(tmp_path):
    good = tmp_path / "My Clip (1).MP4"
    good.write_bytes(b"x" * 100)
    assert handlers.check_upload(good, 1000) == good
    with pytest.raises(BadInputError, match="over the"):
        handlers.check_upload(good, 10)
    txt = tmp_path / "notes.txt"
    txt.write_text("hi")
    with pytest.raises(BadInputError, match="not a video type"):
        handlers.check_upload(txt, 1000)
    empty = tmp_path / "e.mp4"
    empty.write_bytes(b"")
    with pytest.raises(BadInputError, match="empty"):
        handlers.check_upload(empty, 1000)
    up = tmp_path / "ws" / "uploads"
    a = handlers.store_upload(good, up)
    b = handlers.store_upload(good, up)
    assert a.parent == up and b.parent == up and a != b and a.suffix == ".mp4" and " " not in a.name
    assert a.read_bytes() == good.read_bytes()


def test_resolve_inside_refuses_outside(tmp_path):
    root = tmp_path / "ws"
    (root / "vids").mkdir(parents=True)
    (root / "vids" / "a.mp4").write_bytes(b"1")
    (tmp_path / "secret.mp4").write_bytes(b"1")
    assert handlers.resolve_inside("vids/a.mp4", [root]) == (root / "vids" / "a.mp4").resolve()
    for bad in ("../secret.mp4", str(tmp_path / "secret.mp4"), "/etc/passwd"):
        with pytest.raises(BadInputError, match="inside the workspace"):
            handlers.resolve_inside(bad, [root])
    os.symlink(tmp_path / "secret.mp4", root / "link.mp4")
    with pytest.raises(BadInputError, match="inside the workspace"):
        handlers.resolve_inside("link.mp4", [root])
    with pytest.raises(BadInputError, match="no such file"):
        handlers.resolve_inside("vids/missing.mp4", [root])


# ----------------------------------------------------------------------------- backends banner
def test_backend_choice(tmp_path, monkeypatch):
    monkeypatch.setenv("UVIS_CACHE", str(tmp_path / "cache"))
    cfg, choice = choose_proposer(ProposerConfig(), explicit=False)
    assert cfg.backend == "motion" and choice.degraded
    assert choice.enable_cmd == "python -m uvis weights fetch cutler_cascade_final"
    weights = tmp_path / "cache" / "weights" / "cutler_cascade_final.pth"
    weights.parent.mkdir(parents=True)
    weights.write_bytes(b"w")
    cfg, choice = choose_proposer(ProposerConfig(), explicit=False)
    assert cfg.backend == "cutler" and not choice.degraded and str(weights) in choice.reason
    ecfg, echoice = choose_embedder(EmbedderConfig(), explicit=False)
    assert ecfg.backend == "efficientnet" and echoice.degraded and "ViT-B-32" in echoice.enable_cmd
    ecfg, echoice = choose_embedder(EmbedderConfig(clip_model="uvis-tiny-vit", clip_pretrained="none"), False)
    assert ecfg.backend == "clip" and not echoice.degraded
    text = banner_markdown([choose_proposer(ProposerConfig(cutler_weights="nope"), False)[1], echoice])
    assert "proposer: motion" in text and "embedder: clip" in text and "To enable **cutler**" in text


# ----------------------------------------------------------------------------- statistics
def test_stats_figure(ctrl):
    from app.plots import class_reason_counts, stats_figure

    res = ctrl.result("clip", ctrl.run_config.replace(filters__clip_threshold=0.8))
    names, table = class_reason_counts(res)
    assert names[0] == "cat" and table[Reason.KEPT][0] == N and table[Reason.CLIP_SCORE].sum() == N
    fig = stats_figure(res)
    assert len(fig.axes) == 5


# ----------------------------------------------------------------------------- jobs
def test_job_queue_labels_cancels_and_reports_corrupt(tmp_path, example_video):
    from app.jobs import JobQueue

    bad = tmp_path / "bad.mp4"
    bad.write_bytes(os.urandom(4096))
    cfg = Config.from_dict({"proposer": {"backend": "motion"}, "video": {"max_frames": 4},
                            "embedder": {"backend": "clip", "clip_model": "uvis-tiny-vit",
                                         "clip_pretrained": "none"}})
    from uvis.embedders.factory import make_embedder

    embedder = make_embedder(cfg.embedder)
    finished = []
    q = JobQueue(tmp_path / "ws", cfg, lambda: embedder, finished.append)
    try:
        j_bad = q.submit(bad, "bad")
        j_ok = q.submit(example_video, "example")
        j_cancel = q.submit(example_video, "example2")
        assert q.cancel(j_cancel.id)
        assert q.wait_idle(timeout=120)
    finally:
        q.stop()
    assert j_bad.state == "failed" and "cannot be opened as a video" in j_bad.message
    assert j_ok.state == "done" and j_ok.done == j_ok.total == 4
    assert j_cancel.state == "cancelled"
    assert [j.id for j in finished] == [j_bad.id, j_ok.id, j_cancel.id]
    ws = Workspace(tmp_path / "ws")
    assert ws.video_names() == ["example"] and ws.load_cache("example").num_cached == 4
    ws.close()


def test_dataset_name_check():
    from app.exports import check_dataset_name

    assert check_dataset_name(" uvis-run 1 ") == "uvis-run 1"
    for bad in ("", "../x", "a/b", "x" * 101):
        with pytest.raises(BadInputError):
            check_dataset_name(bad)


# ----------------------------------------------------------------------------- export & evaluation
def test_json_exports_and_table1(ctrl):
    import json

    from app import exports

    cfg = ctrl.run_config  # default filters: the ambiguous object 1 is dropped (CLIP score < 0.7)
    project = ctrl.project()
    results = project.decide(cfg)
    yt = exports.export_ytvis(results, ctrl.ws.exports_dir)
    data = json.loads(yt.read_text())
    assert yt.parent == ctrl.ws.exports_dir and len(data["videos"]) == 1
    kept_tracks = {int(t) for t in results["clip"].instances.track_id[results["clip"].kept]}
    assert len(data["annotations"]) == len(kept_tracks) >= 1
    coco = exports.export_coco(results, ctrl.ws.exports_dir)
    cdata = json.loads(coco.read_text())
    assert len(cdata["annotations"]) == int(results["clip"].kept.sum()) == N
    # the pseudo-labels of the default setting as ground truth: that row scores 100 %, "none" less
    md = exports.table1_markdown(ctrl.ws.root, yt, cfg, project.decide)
    lines = {ln.split("|")[1].strip(): [c.strip(" *") for c in ln.split("|")[2:-1]] for ln in md.splitlines()
             if ln.startswith("| ") and "---" not in ln}
    header = lines["class"]
    cat = lines["cat"]
    assert cat[header.index("score+pmf")].startswith("100")
    assert not cat[header.index("none")].startswith("100")


# ----------------------------------------------------------------------------- batch, track, draw (app -> uvis.batch)
def test_review_batch_reject_is_one_undo_step(ctrl):
    cfg = Config().replace(labeler__vocabulary=VOCAB, filters__clip_threshold=0.0)
    refs = [(t, 0) for t in range(0, N, 2)]
    report = ctrl.curate_refs("clip", cfg, refs, "reject")
    assert report.instances == len(refs)
    res = ctrl.result("clip", cfg)
    rows = [ctrl.frame_rows("clip", t).start for t, _ in refs]
    assert all(res.instances.decision[r] == Reason.USER_REJECT for r in rows)
    assert ctrl.curation_count("clip") == 1  # one log row for the whole selection
    ctrl.undo("clip")
    res = ctrl.result("clip", cfg)
    assert not any(res.instances.decision[r] == Reason.USER_REJECT for r in rows)


def test_whole_track_relabel_and_stale_similar_proposals(ctrl):
    cfg = Config().replace(labeler__vocabulary=VOCAB, filters__clip_threshold=0.0)
    res = ctrl.result("clip", cfg)
    track = int(res.instances.track_id[ctrl.frame_rows("clip", 3).start])
    ctrl.curate_track("clip", cfg, 3, 0, "relabel", "cow")
    res = ctrl.result("clip", cfg)
    members = np.flatnonzero(res.instances.track_id == track)
    assert len(members) == N and all(res.class_name(int(r)) == "cow" for r in members)
    proposal = ctrl.propose_similar("clip", cfg, 2, 1, "dog")
    ctrl.undo("clip")  # the proposals were made on a curation state that no longer exists
    with pytest.raises(BadInputError):
        ctrl.apply_similar("clip", cfg, proposal, 0.0)


def test_drawn_instance_reaches_the_ytvis_export(ctrl):
    import json

    from app import exports

    cfg = Config().replace(labeler__vocabulary=VOCAB, filters__clip_threshold=0.0)
    mask = np.zeros((H, W), bool)
    mask[2:8, 40:56] = True  # where no proposal is
    msg = ctrl.draw_instance("clip", cfg, 6, mask, "cow")
    assert "drawn instance saved on frame 6" in msg
    results = ctrl.project().decide(cfg)
    data = json.loads(exports.export_ytvis(results, ctrl.ws.exports_dir).read_text())
    names = {c["id"]: c["name"] for c in data["categories"]}
    hits = [a for a in data["annotations"] if names[a["category_id"]] == "cow" and a["segmentations"][6]]
    assert hits, "the drawn cow is not in the export"
    seg = hits[0]["segmentations"][6]
    drawn = M.decode({"size": seg["size"], "counts": seg["counts"]})
    assert drawn.shape == (H, W) and (drawn.astype(bool) == mask).all()
    with pytest.raises(BadInputError):
        ctrl.draw_instance("clip", cfg, 6, np.zeros((H, W), bool), "cow")
