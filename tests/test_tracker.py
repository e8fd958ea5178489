import numpy as np

from uvis import masks as M
from uvis.config import TrackerConfig
from uvis.tracker import MaskIoUMemo, summarise_tracks, track
from uvis.types import Instances

H, W = 60, 120


def _box_mask(x, y, s=12):
    m = np.zeros((H, W), bool)
    m[max(0, y):y + s, max(0, x):x + s] = True
    return m


def _video(objects, n_frames, dim=8, seed=0):
    """objects: list of (embedding, fn(t) -> (x, y) or None). Returns table + rows per object."""
    rng = np.random.default_rng(seed)
    masks, frames, embs, owner = [], [], [], []
    for t in range(n_frames):
        for k, (emb, pos) in enumerate(objects):
            p = pos(t)
            if p is None:
                continue
            masks.append(M.encode(_box_mask(*p)))
            frames.append(t)
            e = emb + 0.05 * rng.normal(size=dim)
            embs.append(e / np.linalg.norm(e))
            owner.append(k)
    inst = Instances(boxes=M.to_bbox(masks), masks=masks, objectness=np.ones(len(masks)), image_size=(H, W),
                     frame=np.array(frames), embeddings=np.array(embs, np.float32))
    return inst, np.array(owner)


def _run(inst, cfg=TrackerConfig()):
    memo = MaskIoUMemo(inst.masks, inst.frame_slices(int(inst.frame.max()) + 1))
    return track(inst.frame, np.arange(len(inst)), inst.embeddings, cfg, memo)


def _basis(i, dim=8):
    e = np.zeros(dim)
    e[i] = 1
    return e


def test_crossing_paths_keep_ids():
    objs = [(_basis(0), lambda t: (5 + 5 * t, 20)), (_basis(1), lambda t: (100 - 5 * t, 24))]
    inst, owner = _video(objs, 20)
    ids = _run(inst)
    for k in (0, 1):
        assert len(set(ids[owner == k])) == 1, f"object {k} switched ids: {ids[owner == k]}"
    assert ids[owner == 0][0] != ids[owner == 1][0]


def test_five_frame_occlusion_keeps_id_and_long_gap_does_not():
    occluded = lambda t: None if 10 <= t < 15 else (10 + 2 * t, 10)  # noqa: E731
    objs = [(_basis(0), occluded), (_basis(1), lambda t: (60, 40))]
    inst, owner = _video(objs, 30)
    ids = _run(inst)
    assert len(set(ids[owner == 0])) == 1
    # a gap longer than max_gap closes the track
    objs = [(_basis(0), lambda t: None if 5 <= t < 17 else (10, 10))]
    inst, owner = _video(objs, 25)
    ids = _run(inst)
    assert len(set(ids.tolist())) == 2
    assert len(set(_run(inst, TrackerConfig(max_gap=12)).tolist())) == 1


def test_new_object_mid_video_gets_new_id_and_cost_gate():
    objs = [(_basis(0), lambda t: (10, 10)), (_basis(1), lambda t: None if t < 8 else (70, 30))]
    inst, owner = _video(objs, 15)
    ids = _run(inst)
    assert len(set(ids[owner == 0])) == 1 and len(set(ids[owner == 1])) == 1
    assert ids[owner == 1][0] == 1 and ids[owner == 0][0] == 0
    # the same object with a totally different embedding and no overlap is refused (cost > 0.6)
    objs = [(_basis(0), lambda t: (10, 10) if t < 5 else None), (_basis(1), lambda t: None if t < 5 else (90, 40))]
    inst, owner = _video(objs, 10)
    assert len(set(_run(inst).tolist())) == 2


def test_track_label_is_score_weighted_vote():
    tids = np.array([0, 0, 0, 1])
    labels = np.array([2, 3, 3, 1])
    scores = np.array([0.95, 0.3, 0.3, 0.8])
    frames = np.array([0, 1, 2, 0])
    s = summarise_tracks(tids, labels, scores, frames)
    assert [(t.track_id, t.label, t.length) for t in s] == [(0, 2, 3), (1, 1, 1)]
    assert s[0].score == np.float64(0.95) and s[0].first_frame == 0 and s[0].last_frame == 2
