"""Behaviour the method defines (DESIGN §1.5–1.6) that the suite did not check:
tracker λ and w change assignments as defined, the ``pmf_max_samples`` sampling path,
and PMF being project-wide (one video's members change another video's decisions)."""
import numpy as np

from uvis import masks as M
from uvis.cache import CacheMeta, CacheWriter
from uvis.config import Config, FilterConfig, TrackerConfig
from uvis.filters import pmf_filter
from uvis.pipeline import open_project
from uvis.pmf import PrototypeMemory
from uvis.testing import ToyTextEncoder, unit
from uvis.tracker import MaskIoUMemo, track
from uvis.types import Instances, Reason, VideoInfo
from uvis.workspace import Workspace

H, W, D = 40, 160, 6


def _box(x):
    m = np.zeros((H, W), bool)
    m[10:30, x:x + 16] = True
    return m


def _track(frames, xs, embs, cfg):
    rles = [M.encode(_box(x)) for x in xs]
    inst = Instances(boxes=M.to_bbox(rles), masks=rles, objectness=np.ones(len(rles)), image_size=(H, W),
                     frame=np.asarray(frames), embeddings=unit(embs))
    memo = MaskIoUMemo(inst.masks, inst.frame_slices(int(max(frames)) + 1))
    return track(inst.frame, np.arange(len(inst)), inst.embeddings, cfg, memo)


def _e(i):
    v = np.zeros(D)
    v[i] = 1.0
    return v


def test_memory_lambda_weighs_the_last_embedding_against_the_track_mean():
    # one object in one place, seen as e0 in frames 0-3 and as e1 in frame 4 (linked through
    # its mask: cost 0.5 <= 0.6); in frame 5 two candidates overlap it equally, one looks
    # like e0 and one like e1: which continues the track is decided by Q*
    ea, eb = _e(0), _e(1)
    frames = [0, 1, 2, 3, 4, 5, 5]
    xs = [0, 0, 0, 0, 0, 0, 0]
    embs = [ea, ea, ea, ea, eb, ea, eb]
    last = _track(frames, xs, embs, TrackerConfig(embedding_weight=0.5, memory_lambda=1.0, max_cost=0.6))
    mean = _track(frames, xs, embs, TrackerConfig(embedding_weight=0.5, memory_lambda=0.0, max_cost=0.6))
    assert len(set(last[:5])) == len(set(mean[:5])) == 1
    assert last[6] == last[0] and last[5] != last[0]  # λ = 1: Q* is the last embedding (e1)
    assert mean[5] == mean[0] and mean[6] != mean[0]  # λ = 0: Q* is the running mean (mostly e0)


def test_embedding_weight_trades_appearance_against_mask_overlap():
    # frame 1: candidate A looks like the track but is elsewhere, candidate B overlaps the
    # last mask exactly but looks different
    frames = [0, 1, 1]
    xs = [10, 120, 10]
    embs = [_e(0), _e(0), _e(2)]
    look = _track(frames, xs, embs, TrackerConfig(embedding_weight=1.0, max_cost=0.6))
    place = _track(frames, xs, embs, TrackerConfig(embedding_weight=0.0, max_cost=0.6))
    assert look[1] == look[0] and look[2] != look[0]
    assert place[2] == place[0] and place[1] != place[0]
    # in between (w = 0.5) both costs are 0.5; a stricter max cost refuses both
    strict = _track(frames, xs, embs, TrackerConfig(embedding_weight=0.5, max_cost=0.4))
    assert len(set(strict.tolist())) == 3


def test_pmf_max_samples_caps_what_kmeans_sees_not_the_member_count():
    rng = np.random.default_rng(0)
    members = unit(_e(0) + 0.3 * rng.normal(size=(600, D)))
    labels = np.zeros(600, np.int32)
    ex = unit(np.stack([_e(0), _e(1)]) + 0.01)
    full = PrototypeMemory.build(members, labels, k=8, max_samples=2048, exemplar_embeddings=ex,
                                 exemplar_labels=np.array([0, 0]))
    capped = PrototypeMemory.build(members, labels, k=8, max_samples=3, exemplar_embeddings=ex,
                                   exemplar_labels=np.array([0, 0]))
    assert full.member_counts[0] == capped.member_counts[0] == 602  # every member counts
    assert full.prototypes[0].shape == (8, D)
    assert capped.prototypes[0].shape == (5, D)  # K = the 3 sampled members + 2 exemplars
    # exemplars always enter: with K = M every member is a prototype, the far exemplar too
    assert capped.similarity(ex[1:2], np.array([0]))[0] > 0.999
    assert full.similarity(ex[1:2], np.array([0]))[0] < 0.999  # among 602 members it is absorbed
    # the full count decides whether the class is filtered (pmf_min_members = 100)
    cfg = FilterConfig(pmf_min_members=100, pmf_threshold=0.99)
    q = unit(np.stack([_e(3)]))
    dec, _, sim = pmf_filter(np.array([Reason.KEPT], np.int8), np.array([0.9], np.float32), q,
                             np.array([0]), capped, cfg)
    assert np.isfinite(sim[0]) and dec[0] == Reason.PMF


VOCAB = ["cat", "dog", "cow"]


def _video(ws, name, direction, per_frame, n_frames=6):
    info = VideoInfo(name=name, path=f"/{name}.mp4", width=W, height=H, num_frames=n_frames, fps=10,
                     source_width=W, source_height=H, source_indices=tuple(range(n_frames)))
    writer = CacheWriter(ws.cache_dir(name, "k"), CacheMeta(info, "p", "test-embedder", {}, D, True, 20.0))
    for t in range(n_frames):
        rles = M.encode_many(np.stack([_box(4 + 18 * j) for j in range(per_frame)]))
        emb = unit(np.tile(direction, (per_frame, 1)))
        writer.write_frame(t, Instances(boxes=M.to_bbox(rles), masks=rles, objectness=np.full(per_frame, 0.9),
                                        image_size=(H, W), embeddings=emb))
    ws.db.upsert_video(name, info.path, cache_key="k", num_frames=n_frames, width=W, height=H, status="done")


def test_pmf_memory_is_project_wide(tmp_path):
    # both videos' instances are "cat" (axis 0) but look different (cosine 0.5); video a has many
    u = np.array([1.0, 0, 0, 1.0, 0, 0])
    v = np.array([1.0, 0, 0, 0, 0, 1.0])
    ws = Workspace(tmp_path / "ws")
    _video(ws, "b", u, per_frame=1)
    _video(ws, "a", v, per_frame=8)
    cfg = Config().replace(labeler__vocabulary=VOCAB, filters__clip_threshold=0.0, filters__pmf_k=1,
                           filters__pmf_threshold=0.7)
    enc = ToyTextEncoder(tuple(VOCAB), D)
    alone = open_project(ws, ["b"], text_encoder=enc).decide(cfg)["b"]
    together = open_project(ws, ["a", "b"], text_encoder=enc).decide(cfg)
    assert (alone.instances.label == 0).all() and alone.kept.all()  # b's own prototype: kept
    b = together["b"]
    assert (b.instances.decision == Reason.PMF).all()  # a's 48 members pull the cat prototype away
    assert together["a"].kept.all()
    ws.close()
