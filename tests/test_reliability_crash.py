"""Crash test (issue 13): SIGKILL at seeded random points of ``label``, ``export`` (FiftyOne,
YouTube-VIS, COCO) and curation writes, 20 times each.

After every kill: the workspace opens, nothing acknowledged is lost (cached frames of
earlier runs, the last complete export, logged curation actions), and the next,
uninterrupted run completes and leaves no temporary behind.

The commands run as real processes: children of a ``forkserver`` that imported the
heavy modules once (torch, open_clip, FiftyOne), so a kill costs milliseconds to start
instead of seconds of imports; each child runs ``uvis.cli.main`` exactly as
``python -m uvis`` does. The test prints the cases tried and passed per area.
"""
from __future__ import annotations

import json
import multiprocessing
import os
import random
import signal
import sqlite3
import time
from pathlib import Path

import pytest
from test_export_common import build_workspace
from test_reliability import TINY, write_clip

from uvis.workspace import Workspace

pytestmark = [pytest.mark.reliability, pytest.mark.slow]

KILLS = 20
SEED = 13
TMP = ".uvis-tmp-"
PRELOAD = ["uvis.cli", "uvis.export.cli", "uvis.pipeline", "uvis.embedders.clip", "uvis.proposers.motion",
           "uvis.export.fiftyone_export", "uvis.export.ytvis", "uvis.export.coco", "fiftyone", "open_clip",
           "test_reliability_crash"]


# ----------------------------------------------------------------------------- children
def run_cli(argv: list[str]) -> None:
    """Child: ``python -m uvis ARGV`` in a forked, pre-imported interpreter."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    import torch

    torch.set_num_threads(1)
    from uvis.cli import main

    os._exit(main(argv))


def log_curation(ws_dir: str, video: str, ack_path: str, seed: int) -> None:
    """Child: log curation actions (with undos and redos) as fast as it can; after each
    committed write, append its id to ``ack_path`` (what the user was told is saved)."""
    from uvis.db import WorkspaceDB

    db = WorkspaceDB(Path(ws_dir) / "uvis.sqlite")
    rng = random.Random(seed)
    with open(ack_path, "a") as ack:
        for _ in range(100000):
            r = rng.random()
            if r < 0.15:
                target = db.undo(video)
                aid = None
            elif r < 0.25:
                target = db.redo(video)
                aid = None
            else:
                target = None
                aid = db.log(video, rng.choice(["accept", "reject"]), {"frame": rng.randrange(4),
                                                                       "index": rng.randrange(3)})
            ack.write(f"{aid if aid is not None else ('u' if target else '-')}\n")
            ack.flush()
            os.fsync(ack.fileno())
    os._exit(0)


class Pool:
    """Starts children from one forkserver (heavy imports done once) and kills them."""

    def __init__(self) -> None:
        self.ctx = multiprocessing.get_context("forkserver")
        self.ctx.set_forkserver_preload(PRELOAD)

    def run(self, target, args, kill_after: float | None, timeout: float = 120.0) -> int | None:
        """Run ``target(*args)``; SIGKILL it after ``kill_after`` s (None: let it finish).
        Returns the exit code (-9 when killed)."""
        p = self.ctx.Process(target=target, args=args)
        p.start()
        p.join(kill_after if kill_after is not None else timeout)
        if p.is_alive():
            if kill_after is None:
                os.kill(p.pid, signal.SIGKILL)
                p.join()
                raise AssertionError(f"{target.__name__}{args} did not finish in {timeout} s")
            os.kill(p.pid, signal.SIGKILL)
            p.join()
        return p.exitcode

    def timed(self, target, args) -> float:
        t0 = time.monotonic()
        code = self.run(target, args, None)
        assert code == 0, (target.__name__, args, code)
        return time.monotonic() - t0


@pytest.fixture(scope="module")
def pool():
    return Pool()


@pytest.fixture(scope="module")
def tally():
    counts: dict[str, list[int]] = {}
    yield counts
    print("\ncrash test: area | kills tried | passed")
    for area, (tried, passed) in counts.items():
        print(f"crash test: {area} | {tried} | {passed}")


def _temporaries(*roots: Path) -> list[Path]:
    return [p for root in roots if root.exists() for p in root.rglob(f"*{TMP}*")]


def _frames(ws: Path) -> dict[str, int]:
    return {str(p.relative_to(ws)): p.stat().st_mtime_ns for p in ws.glob("videos/*/*/frames/[0-9]*.npz")}


def _workspace_opens(ws: Path) -> None:
    conn = sqlite3.connect(ws / "uvis.sqlite")
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    conn.close()
    w = Workspace(ws)
    for name in w.video_names():
        cache = w.load_cache(name)
        assert cache.num_cached >= 1
    w.close()


# ----------------------------------------------------------------------------- label
def test_kill_label(tmp_path, example_video, pool, tally):
    clip = write_clip(tmp_path / "clip.mp4", example_video, 0, n=24)
    rng = random.Random(SEED)
    full = pool.timed(run_cli, (["label", str(clip), "-w", str(tmp_path / "probe"), "--quiet", *TINY],))
    print(f"crash test: an uninterrupted label takes {full:.1f} s")
    tried = passed = 0
    ws = tmp_path / "ws0"
    for k in range(KILLS):
        if k % 5 == 0:  # a fresh workspace now and then, so kills also land in the first frames
            ws = tmp_path / f"ws{k}"
        before = _frames(ws) if ws.exists() else {}
        argv = ["label", str(clip), "-w", str(ws), "--quiet", *TINY]
        pool.run(run_cli, (argv,), kill_after=rng.uniform(0.0, full))
        tried += 1
        if ws.exists():
            _workspace_opens(ws)
        after = _frames(ws) if ws.exists() else {}
        assert all(after.get(f) == m for f, m in before.items()), "a cached frame was lost or rewritten"
        assert pool.run(run_cli, (argv,), kill_after=None) == 0  # the next run completes ...
        w = Workspace(ws)
        cache = w.load_cache("clip")
        assert cache.complete and cache.num_cached == 24 and w.db.video("clip").status == "done"
        assert len(w.db.config_versions()) >= 1
        w.close()
        assert all(_frames(ws).get(f) == m for f, m in after.items())  # ... resuming, not redoing
        assert _temporaries(ws) == []  # ... and leaves nothing behind
        passed += 1
    tally["label"] = [tried, passed]


# ----------------------------------------------------------------------------- exports
@pytest.fixture(scope="module")
def export_ws(tmp_path_factory):
    return build_workspace(tmp_path_factory.mktemp("crash-export"), videos=("alpha", "beta"))


def _read_json(path: Path):
    return json.loads(path.read_text()) if path.exists() else None


@pytest.mark.parametrize("to", ["ytvis", "coco"])
def test_kill_json_export(tmp_path, export_ws, pool, tally, to):
    out = tmp_path / ("train.json" if to == "ytvis" else "coco")
    frames = tmp_path / "frames"
    argv = ["export", "-w", str(export_ws), "--to", to, "--out", str(out), "--quiet", "--overwrite"]
    if to == "ytvis":
        argv += ["--frames", str(frames)]
    target = out if to == "ytvis" else out / "annotations.json"
    image_root = frames if to == "ytvis" else out / "images"
    full = pool.timed(run_cli, (argv,))
    print(f"crash test: an uninterrupted {to} export takes {full:.1f} s")
    reference = _read_json(target)
    n_images = {v: len(list((image_root / v).iterdir())) for v in ("alpha", "beta")}
    rng = random.Random(SEED + (1 if to == "ytvis" else 2))
    tried = passed = 0
    for _ in range(KILLS):
        pool.run(run_cli, (argv,), kill_after=rng.uniform(0.0, full))
        tried += 1
        _workspace_opens(export_ws)
        # the acknowledged export is never lost: the JSON is the complete one, and every
        # video's image folder is complete (a killed swap leaves it aside, restored next run)
        assert _read_json(target) == reference
        for v, n in n_images.items():
            folder = image_root / v
            assert not folder.exists() or len(list(folder.iterdir())) == n
        assert pool.run(run_cli, (argv,), kill_after=None) == 0
        assert _read_json(target) == reference
        assert all(len(list((image_root / v).iterdir())) == n for v, n in n_images.items())
        assert _temporaries(tmp_path) == []
        passed += 1
    tally[f"export {to}"] = [tried, passed]


def test_kill_fiftyone_export(tmp_path, export_ws, pool, tally):
    import fiftyone as fo

    from uvis.export.fiftyone_export import OLD_MARK, TMP_MARK, load_exported

    fo.list_datasets()  # the parent starts the database service before any child connects
    name = f"uvis-crash-{os.getpid()}"
    media = tmp_path / "media"
    argv = ["export", "-w", str(export_ws), "--to", "fiftyone", "--dataset", name, "--overwrite", "--quiet",
            "--media-dir", str(media), "--video", "alpha"]
    pool.timed(run_cli, (argv,))  # encodes the media once; the kills hit the dataset writes
    full = pool.timed(run_cli, (argv,))
    print(f"crash test: an uninterrupted FiftyOne export takes {full:.1f} s")
    reference = load_exported(name).count("frames.pseudo_labels.detections")
    rng = random.Random(SEED + 3)
    tried = passed = 0
    try:
        for _ in range(KILLS):
            pool.run(run_cli, (argv,), kill_after=rng.uniform(0.0, full))
            tried += 1
            _workspace_opens(export_ws)
            ds = load_exported(name)  # the next access finds the complete dataset under its name
            assert len(ds) == 1 and ds.count("frames.pseudo_labels.detections") == reference
            assert pool.run(run_cli, (argv,), kill_after=None) == 0
            assert load_exported(name).count("frames.pseudo_labels.detections") == reference
            assert [n for n in fo.list_datasets() if n.startswith(name) and (TMP_MARK in n or OLD_MARK in n)] == []
            assert _temporaries(media) == []
            passed += 1
    finally:
        for n in fo.list_datasets():
            if n.startswith(name):
                fo.delete_dataset(n)
    tally["export fiftyone"] = [tried, passed]


# ----------------------------------------------------------------------------- curation writes
def test_kill_curation_writes(tmp_path, export_ws, pool, tally):
    import shutil

    ws = tmp_path / "ws"
    shutil.copytree(export_ws, ws)
    rng = random.Random(SEED + 4)
    ack = tmp_path / "ack.txt"
    tried = passed = 0
    for k in range(KILLS):
        pool.run(log_curation, (str(ws), "alpha", str(ack), SEED + k), kill_after=rng.uniform(0.2, 1.0))
        tried += 1
        _workspace_opens(ws)
        acknowledged = [int(x) for x in ack.read_text().split() if x.isdigit()] if ack.exists() else []
        w = Workspace(ws)
        logged = {e.id for e in w.db.entries("alpha")}
        assert set(acknowledged) <= logged, "an acknowledged curation action was lost"
        w.db.active("alpha")  # the log replays
        w.close()
        passed += 1
    assert len([x for x in ack.read_text().split() if x.isdigit()]) > KILLS  # the kills hit running writers
    tally["curation writes"] = [tried, passed]
