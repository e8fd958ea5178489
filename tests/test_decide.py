"""Decisions from a real on-disk cache written frame by frame (hand-made instances)."""
import numpy as np
import pytest

from uvis import masks as M
from uvis.cache import CacheMeta, CacheWriter, VideoCache
from uvis.config import Config
from uvis.pipeline import open_project
from uvis.testing import ToyTextEncoder, unit
from uvis.text_cache import TextEmbeddingCache
from uvis.types import Instances, Reason, VideoInfo
from uvis.workspace import Workspace

H, W, D = 40, 80, 6
VOCAB = ["cat", "dog", "cow"]


_unit = unit
_encoder = ToyTextEncoder(tuple(VOCAB), D)


def _write_video(ws, name, n_frames=12, has_text=True):
    info = VideoInfo(name=name, path=f"/{name}.mp4", width=W, height=H, num_frames=n_frames, fps=10,
                     source_width=W, source_height=H)
    meta = CacheMeta(info, "test-proposer", "test-embedder", {}, D, has_text, 5.0)  # soft scores
    writer = CacheWriter(ws.cache_dir(name, "k"), meta)
    rng = np.random.default_rng(0)
    for t in range(n_frames):
        ms = []
        for x in (5 + t, 50):
            m = np.zeros((H, W), bool)
            m[10:22, x:x + 10] = True
            ms.append(m)
        # object 0 looks like a cat, object 1 like a dog but with low objectness on even frames
        emb = _unit([[1, 0.1, 0, 0, 0, 0], [0.1, 1, 0, 0, 0, 0]] + 0.02 * rng.normal(size=(2, D)))
        rles = M.encode_many(np.stack(ms))
        inst = Instances(boxes=M.to_bbox(rles), masks=rles, objectness=[0.9, 0.5 if t % 2 == 0 else 0.9],
                         image_size=(H, W), embeddings=emb)
        writer.write_frame(t, inst)
    ws.db.upsert_video(name, info.path, cache_key="k", num_frames=n_frames, width=W, height=H)


@pytest.fixture
def project(tmp_path):
    ws = Workspace(tmp_path / "ws")
    _write_video(ws, "a")
    _write_video(ws, "b")
    yield ws, open_project(ws, text_encoder=_encoder)
    ws.close()


def test_cache_resume_point(tmp_path):
    ws = Workspace(tmp_path)
    _write_video(ws, "v", n_frames=5)
    cache_dir = ws.cache_dir("v", "k")
    (cache_dir / "frames" / "000003.npz").unlink()
    writer = CacheWriter(cache_dir, VideoCache.load(cache_dir).meta)
    assert writer.first_missing() == 3
    cache = VideoCache.load(cache_dir)
    assert cache.num_cached == 3 and len(cache.instances) == 6 and not cache.complete
    assert cache.row(2, 1) == 5


def test_labels_filters_tracks(project):
    ws, proj = project
    cfg = Config().replace(labeler__vocabulary=VOCAB)
    res = proj.decide(cfg)["a"]
    inst = res.instances
    assert set(inst.label[0::2].tolist()) == {0} and set(inst.label[1::2].tolist()) == {1}
    assert res.prompts[inst.best_prompt[0]].startswith("a photo of cat")
    dec = inst.decision
    # dog instances on even frames have objectness 0.5 -> dropped for objectness
    assert all(dec[1::4] == Reason.OBJECTNESS) and all(dec[3::4] == Reason.KEPT)
    assert all(dec[0::2] == Reason.KEPT)
    cat_tracks = set(inst.track_id[0::2].tolist())
    assert len(cat_tracks) == 1  # one cat track through 12 frames
    assert {t.label for t in res.tracks} == {0, 1}
    assert res.top_classes.shape == (24, 3) and res.top_classes[0, 0] == 0
    # raising the CLIP threshold above every score drops all for clip_score, without models
    strict = proj.decide(cfg.replace(filters__clip_threshold=1.0))["a"]
    assert set(Reason(d).key for d in strict.instances.decision) == {"clip_score", "objectness"}
    assert proj.text_cache.encoded_count == 21  # 3 classes x 7 templates, encoded once


def test_vocabulary_edit_encodes_only_new_prompts(project):
    ws, proj = project
    proj.decide(Config().replace(labeler__vocabulary=["cat", "dog"]))
    n = proj.text_cache.encoded_count
    proj.decide(Config().replace(labeler__vocabulary=VOCAB))
    assert proj.text_cache.encoded_count - n == 7  # only the 7 'cow' prompts


def test_curation_reject_relabel_merge_split(project):
    ws, proj = project
    cfg = Config().replace(labeler__vocabulary=VOCAB)
    ws.db.log("a", "reject", {"frame": 0, "index": 0})
    ws.db.log("a", "relabel", {"frame": 1, "index": 1, "label": "cow"})
    ws.db.log("a", "split", {"at": [6, 0]})
    ws.db.log("a", "accept", {"frame": 0, "index": 1})  # low objectness, but a person accepted it
    res = proj.decide(cfg)["a"]
    inst = res.instances
    assert inst.decision[0] == Reason.USER_REJECT and res.user[0]
    assert inst.label[3] == 2 and inst.decision[3] == Reason.KEPT
    assert inst.decision[1] == Reason.KEPT and res.user[1]
    cat_rows = [r for r in range(2, 24, 2)]
    before = {inst.track_id[r] for r in cat_rows if inst.frame[r] < 6}
    after = {inst.track_id[r] for r in cat_rows if inst.frame[r] >= 6}
    assert len(before) == 1 and len(after) == 1 and before != after
    ws.db.log("a", "merge", {"a": [1, 0], "b": [7, 0]})
    res2 = proj.decide(cfg)["a"]
    assert len({res2.instances.track_id[r] for r in cat_rows}) == 1
    ws.db.undo("a")
    res3 = proj.decide(cfg)["a"]
    assert len({res3.instances.track_id[r] for r in cat_rows}) == 2
    # curation of video a never touches video b
    assert not proj.decide(cfg)["b"].user.any()


def test_pmf_is_project_wide_and_records_similarity(project):
    ws, proj = project
    cfg = Config().replace(labeler__vocabulary=VOCAB, filters__pmf_min_members=3)
    res = proj.decide(cfg)
    kept = res["a"].instances[res["a"].kept]
    assert np.all(kept.pmf_similarity >= 0.7)
    # an impossible PMF threshold drops every survivor of filtered classes for 'pmf'
    res_hi = proj.decide(cfg.replace(filters__pmf_threshold=1.0))["a"].instances
    assert (res_hi.decision == Reason.PMF).sum() > 0
    assert np.all(res_hi.similarity[res_hi.decision == Reason.PMF] < 1.0)


def test_missing_text_cache_entries_without_encoder(tmp_path):
    ws = Workspace(tmp_path)
    _write_video(ws, "v", n_frames=2)
    proj = open_project(ws, text_encoder=_encoder)
    proj.text_encoder_factory = None
    proj.text_cache = TextEmbeddingCache(ws.text_cache_dir, "test-embedder")
    with pytest.raises(LookupError):
        proj.decide(Config().replace(labeler__vocabulary=["zebra"]))


def test_label_by_example_without_text_encoder(tmp_path):
    ws = Workspace(tmp_path)
    _write_video(ws, "v", has_text=False)
    proj = open_project(ws)
    assert proj.text_cache is None
    cfg = Config().replace(labeler__vocabulary=VOCAB)
    # no text encoder, no example yet: class-agnostic (label source auto -> none)
    res = proj.decide(cfg)["v"]
    assert res.label_source == "none" and res.vocabulary == ["object"]
    assert set(res.classes.tolist()) == {0}
    passing = res.instances.objectness >= cfg.filters.objectness_threshold
    assert np.array_equal(res.kept, passing) and passing.sum() == 18  # 12 cats + 6 dogs with objectness 0.9
    assert np.isnan(res.instances.clip_score).all()  # not scored: no class to score
    # an explicit 'examples' source with no example yet keeps nothing
    strict = proj.decide(cfg.replace(labeler__label_source="examples"))["v"]
    assert set(strict.instances.label.tolist()) == {-1} and not strict.kept.any()
    ws.db.log("v", "relabel", {"frame": 1, "index": 0, "label": "cow"})  # one example
    full = proj.decide(cfg)["v"]
    assert full.label_source == "examples" and full.vocabulary == VOCAB
    res = full.instances
    cats = np.arange(0, 24, 2)  # the same object in every frame: similar embeddings
    dogs = np.arange(1, 24, 2)
    assert set(res.label[cats].tolist()) == {2}
    assert np.all(res.clip_score[cats] > 0.9)  # similarity to the example is the score
    assert np.all(res.clip_score[dogs] < 0.3) and not np.any(res.decision[dogs] == Reason.KEPT)
    assert np.all(res.decision[cats] == Reason.KEPT)
    ws.close()
