"""Columnar cache store (issue 11, item 1): consolidation of a complete video cache into
memory-mapped columns, the same data and decisions from columns as from per-frame files,
partial and extended caches, damaged columns and killed consolidations."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from uvis import masks as M
from uvis.cache import CacheMeta, CacheWriter, VideoCache
from uvis.columns import ColumnsError, consolidate, latest_columns
from uvis.config import Config
from uvis.pipeline import open_project
from uvis.testing import ToyTextEncoder, unit
from uvis.types import Instances, Reason, VideoInfo
from uvis.workspace import Workspace

REPO = Path(__file__).resolve().parents[1]
H, W, D = 48, 96, 8
VOCAB = ["cat", "dog", "cow"]
ENCODER = ToyTextEncoder(tuple(VOCAB), D)


def _meta(name: str, n_frames: int) -> CacheMeta:
    info = VideoInfo(name=name, path=f"/{name}.mp4", width=W, height=H, num_frames=n_frames, fps=10,
                     source_width=W, source_height=H, source_indices=tuple(range(n_frames)),
                     frame_names=tuple(str(t) for t in range(n_frames)))
    return CacheMeta(info, "test-proposer", "test-embedder", {}, D, True, 5.0)


def _frame(t: int, seed: int) -> Instances:
    """Frame t of a synthetic video: 0-3 moving boxes (some frames empty), clustered embeddings."""
    rng = np.random.default_rng([seed, t])
    n = [2, 3, 0, 1][t % 4] if t % 7 else 3
    masks = []
    for i in range(n):
        m = np.zeros((H, W), bool)
        x = (5 + 3 * t + 25 * i) % (W - 12)
        m[8 + 10 * i % 30: 20 + 10 * i % 30, x:x + 12] = True
        masks.append(m)
    rles = M.encode_many(np.stack(masks)) if n else []
    base = np.eye(D)[[i % 3 for i in range(n)]]
    emb = unit(base + 0.3 * rng.normal(size=(n, D))) if n else np.zeros((0, D), np.float32)
    return Instances(boxes=M.to_bbox(rles) if n else np.zeros((0, 4), np.float32), masks=rles,
                     objectness=rng.uniform(0.3, 1.0, n), image_size=(H, W), embeddings=emb)


def _write(ws: Workspace, name: str, n_frames: int, *, upto: int | None = None, seed: int = 0) -> Path:
    directory = ws.cache_dir(name, "k")
    writer = CacheWriter(directory, _meta(name, n_frames))
    for t in range(writer.first_missing(), n_frames if upto is None else upto):
        writer.write_frame(t, _frame(t, seed))
    ws.db.upsert_video(name, f"/{name}.mp4", cache_key="k", num_frames=n_frames, width=W, height=H)
    return directory


def _assert_same_cache(a: VideoCache, b: VideoCache) -> None:
    assert a.num_cached == b.num_cached and a.frame_slices == b.frame_slices
    ia, ib = a.instances, b.instances
    for f in ("boxes", "objectness", "embeddings", "frame"):
        x, y = getattr(ia, f), getattr(ib, f)
        assert x.dtype == y.dtype and np.array_equal(x, y), f
    assert ia.masks == ib.masks


def _decisions(ws: Workspace, cfg: Config) -> dict:
    res = open_project(ws, text_encoder=ENCODER).decide(cfg)
    return {n: (r.instances.label, r.instances.clip_score, r.instances.decision, r.instances.similarity,
                r.instances.pmf_similarity, r.instances.track_id, r.user) for n, r in res.items()}


def test_consolidated_columns_give_the_same_cache_and_decisions(tmp_path):
    frames_ws, cols_ws = Workspace(tmp_path / "frames"), Workspace(tmp_path / "cols")
    for ws in (frames_ws, cols_ws):
        _write(ws, "a", 23, seed=1)
        _write(ws, "b", 9, seed=2)
        _write(ws, "c", 12, upto=7, seed=3)  # in progress: stays per-frame
        for v in ("a", "b", "c"):
            ws.db.log(v, "reject", {"frame": 1, "index": 0})
            ws.db.log(v, "relabel", {"frame": 4, "index": 0, "label": "cow"})
            ws.db.log(v, "accept", {"frame": 5, "index": 1})
    before = {v: VideoCache.load(frames_ws.cache_dir(v, "k")) for v in ("a", "b", "c")}
    for v in ("a", "b", "c"):
        out = consolidate(cols_ws.cache_dir(v, "k"))
        assert (out is None) == (v == "c")
    a_dir = cols_ws.cache_dir("a", "k")
    assert (a_dir / "columns-000023").is_dir() and not list((a_dir / "frames").glob("*.npz"))
    assert len(list((cols_ws.cache_dir("c", "k") / "frames").glob("*.npz"))) == 7
    for v in ("a", "b", "c"):
        after = VideoCache.load(cols_ws.cache_dir(v, "k"))
        _assert_same_cache(before[v], after)
        assert after.complete == (v != "c")
    # columns are memory maps, not copies
    assert isinstance(latest_columns(a_dir, D).embeddings, np.memmap)
    for cfg in (Config(), Config().replace(filters__clip_threshold=0.2, filters__objectness_threshold=0.5)):
        cfg = cfg.replace(labeler__vocabulary=VOCAB, labeler__templates=["{}"])
        x, y = _decisions(frames_ws, cfg), _decisions(cols_ws, cfg)
        assert set(x) == set(y) == {"a", "b", "c"}
        for v in x:
            for u, w in zip(x[v], y[v]):
                assert np.array_equal(u, w, equal_nan=True), v
        assert (y["a"][2] == Reason.USER_REJECT).any() and (y["a"][2] == Reason.KEPT).any()
    # consolidating again changes nothing
    stamp = (a_dir / "columns-000023" / "embeddings.npy").stat().st_mtime_ns
    assert consolidate(a_dir) == a_dir / "columns-000023"
    assert (a_dir / "columns-000023" / "embeddings.npy").stat().st_mtime_ns == stamp
    frames_ws.close()
    cols_ws.close()


def test_extended_cache_reads_columns_then_frames_and_reconsolidates(tmp_path):
    ws = Workspace(tmp_path / "ws")
    d = _write(ws, "v", 10)
    consolidate(d)
    # a longer run of the same settings extends the cache: columns hold 0..9, frames 10..15
    writer = CacheWriter(d, _meta("v", 16))
    assert writer.first_missing() == 10
    for t in range(10, 13):
        writer.write_frame(t, _frame(t, 0))
    partial = VideoCache.load(d)
    assert partial.num_cached == 13 and not partial.complete
    assert consolidate(d) is None and (d / "columns-000010").is_dir()
    for t in range(13, 16):
        writer.write_frame(t, _frame(t, 0))
    assert writer.first_missing() == 16
    full = VideoCache.load(d)
    assert consolidate(d) == d / "columns-000016"
    assert not (d / "columns-000010").exists() and not list((d / "frames").glob("*.npz"))
    _assert_same_cache(full, VideoCache.load(d))
    ref = Workspace(tmp_path / "ref")
    _assert_same_cache(VideoCache.load(_write(ref, "v", 16)), VideoCache.load(d))
    # a shorter run (fewer max_frames) reads only its frames from the columns
    CacheWriter(d, _meta("v", 6))
    short = VideoCache.load(d)
    assert short.num_cached == 6 and short.complete and short.frame_slices == full.frame_slices[:6]
    assert consolidate(d) == d / "columns-000016" and not (d / "columns-000006").exists()  # nothing dropped
    CacheWriter(d, _meta("v", 16))
    _assert_same_cache(full, VideoCache.load(d))
    ws.close()
    ref.close()


def test_damaged_columns_fall_back_to_frames_or_stop_at_the_gap(tmp_path):
    ws = Workspace(tmp_path / "ws")
    d = _write(ws, "v", 8)
    ref = VideoCache.load(d)
    cols = consolidate(d, keep_frames=True)
    np.save(cols / "boxes.npy", np.zeros((3, 4), np.float32))  # wrong row count
    assert latest_columns(d, D) is None
    _assert_same_cache(ref, VideoCache.load(d))  # per-frame files still there
    shutil.rmtree(cols)
    consolidate(d)
    (d / "columns-000008" / "mask_offsets.npy").write_bytes(b"garbage")
    damaged = VideoCache.load(d)  # frames were removed: nothing to read, the run resumes at frame 0
    assert damaged.num_cached == 0 and CacheWriter(d, _meta("v", 8)).first_missing() == 0
    ws.close()


def test_verification_failure_keeps_the_frames(tmp_path, monkeypatch):
    import uvis.columns as C

    ws = Workspace(tmp_path / "ws")
    d = _write(ws, "v", 6)
    ref = VideoCache.load(d)
    real = C.write_columns

    def corrupting(folder, offsets, boxes, obj, emb, counts):
        real(folder, offsets, boxes, obj, emb, counts[:-1] + ["x" + counts[-1]])  # one mask altered

    monkeypatch.setattr(C, "write_columns", corrupting)
    with pytest.raises(ColumnsError, match="differ"):
        consolidate(d)
    assert latest_columns(d, D) is None and not [p for p in d.iterdir() if "columns" in p.name]
    assert len(list((d / "frames").glob("*.npz"))) == 6
    _assert_same_cache(ref, VideoCache.load(d))
    ws.close()


_KILL = textwrap.dedent("""
    import os, signal, sys
    from pathlib import Path
    import uvis.columns as C
    point, directory = sys.argv[1], Path(sys.argv[2])
    if point == "write":
        real = C._write
        def dying(folder, name, array):
            if name == "embeddings":
                os.kill(os.getpid(), signal.SIGKILL)
            real(folder, name, array)
        C._write = dying
    else:
        real_unlink, seen = Path.unlink, []
        def dying_unlink(self, missing_ok=False):
            if self.suffix == ".npz":
                seen.append(self)
                if len(seen) == 3:
                    os.kill(os.getpid(), signal.SIGKILL)
            real_unlink(self, missing_ok=missing_ok)
        Path.unlink = dying_unlink
    C.consolidate(directory)
""")


@pytest.mark.parametrize("point", ["write", "cleanup"])
def test_killed_consolidation_leaves_a_usable_cache(tmp_path, point):
    ws = Workspace(tmp_path / "ws")
    d = _write(ws, "v", 9)
    ref = VideoCache.load(d)
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.run([sys.executable, "-c", _KILL, point, str(d)], env=env, capture_output=True, timeout=120)
    assert proc.returncode == -9, proc.stderr
    left = sorted(p.name for p in d.iterdir())
    if point == "write":  # only a hidden temporary folder, no column set under a real name
        assert latest_columns(d, D) is None and any(n.startswith(".columns-000009") for n in left), left
    else:  # columns complete, some frames already removed
        assert latest_columns(d, D) is not None and len(list((d / "frames").glob("*.npz"))) == 7
    _assert_same_cache(ref, VideoCache.load(d))
    writer = CacheWriter(d, _meta("v", 9))  # the next run cleans the killed one's temporaries
    assert writer.first_missing() == 9 and not [n for n in os.listdir(d) if n.startswith(".")]
    assert consolidate(d) == d / "columns-000009"
    _assert_same_cache(ref, VideoCache.load(d))
    ws.close()
