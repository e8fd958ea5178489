"""``uvis label --engine ray`` on a real local Ray cluster (127.0.0.1, 2 CPUs).

The dataset: the bundled clip and two short real clips cut from OpenCV's ``vtest.avi``
and ``Megamind.avi`` with ffmpeg. The oracle is the local engine run in another
process with one torch thread (the workers' thread count: CPU kernels split their
reductions by thread count, so only same-thread runs are bit-identical); caches are
compared array by array, bit for bit.
"""
from __future__ import annotations

import os
import re
import signal
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pytest

from uvis.cache import VideoCache
from uvis.engines.chunks import FrameRange, contiguous_runs, plan_chunks
from uvis.engines.dataset import enumerate_videos
from uvis.engines.ray_engine import INSTALL_RAY
from uvis.errors import BadInputError

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "assets" / "examples" / "vtest_150.mp4"
OPENCV_DATA = Path("/usr/share/doc/opencv-doc/examples/data")
CUTLER_FIXTURES = REPO.parent / "shared" / "fixtures" / "cutler-ref"

MOTION = ["--proposer", "motion", "--embedder", "efficientnet", "--max-frames", "20", "--max-side", "320"]
MOTION_FRAMES = 3 * 20


# ---- helpers ---------------------------------------------------------------------------
def _uvis(args: list[str], env: dict[str, str] | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "uvis", "label", *args, "--quiet"], env=env, capture_output=True,
                          text=True, timeout=timeout, cwd=REPO)


def _one_thread_env() -> dict[str, str]:
    return dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")


def _frame_files(ws: Path) -> dict[str, Path]:
    """``video/frames/NNNNNN.npz`` -> path, over every cache of a workspace."""
    return {f"{p.parents[2].name}/{p.name}": p for p in ws.glob("videos/*/*/frames/*.npz")}


def _caches(ws: Path, only: set[str] | None = None) -> dict[str, VideoCache]:
    """Every video cache of a workspace (per-frame files and consolidated columns alike)."""
    out = {}
    for meta in ws.glob("videos/*/*/meta.json"):
        name = meta.parents[1].name
        if only is None or name in only:
            out[name] = VideoCache.load(meta.parent)
    return out


def _assert_same_caches(ws: Path, reference: Path, only: set[str] | None = None) -> None:
    mine, ref = _caches(ws, only), _caches(reference)
    assert sorted(mine) == sorted(ref)
    for name, a in ref.items():
        b = mine[name]
        assert (a.num_cached, a.frame_slices) == (b.num_cached, b.frame_slices), name
        for field in ("boxes", "objectness", "embeddings", "frame"):
            x, y = getattr(a.instances, field), getattr(b.instances, field)
            assert x.dtype == y.dtype and np.array_equal(x, y), f"{name}: {field} differs from the local engine"
        assert a.instances.masks == b.instances.masks, f"{name}: masks differ from the local engine"


def _assert_every_frame_once(ws: Path, videos: dict[str, int]) -> None:
    for name, n in videos.items():
        (cache_dir,) = [d for d in (ws / "videos" / name).iterdir() if d.is_dir()]  # beside source.json
        cache = VideoCache.load(cache_dir)
        assert cache.complete and cache.num_cached == n and len(cache.frame_slices) == n, name
        assert (cache_dir / f"columns-{n:06d}").is_dir()  # consolidated: every frame once, in order
        leftovers = [p.name for p in cache_dir.rglob("*") if p.is_file() and "tmp" in p.name]
        assert not leftovers and not list((cache_dir / "frames").glob("*.npz")), (name, leftovers)


def _statuses(ws: Path) -> dict[str, str]:
    with sqlite3.connect(ws / "uvis.sqlite") as conn:
        return dict(conn.execute("SELECT name, status FROM videos"))


def _wait_for_frames(ws: Path, at_least: int, proc: subprocess.Popen, timeout: float = 300) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        n = len(_frame_files(ws))
        if n >= at_least:
            return n
        if proc.poll() is not None:
            pytest.fail(f"the run ended (rc {proc.returncode}) before {at_least} frames were cached: "
                        f"{proc.stderr.read() if proc.stderr else ''}")
        time.sleep(0.05)
    pytest.fail(f"fewer than {at_least} frames cached after {timeout} s")


# ---- fixtures --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """The bundled clip plus two 24-frame clips cut from OpenCV's sample videos (MJPEG)."""
    if shutil.which("ffmpeg") is None:
        pytest.fail("ffmpeg is needed to cut the test clips (Debian package ffmpeg; `make test` installs it)")
    out = tmp_path_factory.mktemp("clips")
    clips = [EXAMPLE]
    for src, start, name in (("vtest.avi", 0, "walk.avi"), ("Megamind.avi", 2, "megamind.avi")):
        if not (OPENCV_DATA / src).is_file():
            pytest.fail(f"{OPENCV_DATA / src} missing (Debian package opencv-doc; `make test` installs it)")
        subprocess.run(["ffmpeg", "-v", "error", "-y", "-ss", str(start), "-i", str(OPENCV_DATA / src), "-an",
                        "-frames:v", "24", "-c:v", "mjpeg", "-q:v", "3", str(out / name)], check=True)
        clips.append(out / name)
    return clips


@pytest.fixture(scope="module")
def broken_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 10-frame PNG folder whose frame 7 has an intact header but garbage pixels."""
    import cv2

    from uvis.video import open_video

    folder = tmp_path_factory.mktemp("broken") / "broken"
    folder.mkdir()
    with open_video(EXAMPLE, max_frames=10, max_side=160) as reader:
        for t, rgb in reader.frames():
            cv2.imwrite(str(folder / f"{t:05d}.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    png = (folder / "00007.png").read_bytes()
    (folder / "00007.png").write_bytes(png[:33] + bytes(range(200)))
    return folder


@pytest.fixture(scope="module")
def cluster():
    from uvis.engines.testing import LocalRayCluster

    with LocalRayCluster(num_cpus=2) as c:
        yield c


class Reference(NamedTuple):
    ws: Path
    stdout: str


@pytest.fixture(scope="module")
def motion_reference(dataset: list[Path], tmp_path_factory: pytest.TempPathFactory) -> Reference:
    """The local engine's caches of the dataset (motion + EfficientNet) and what it printed."""
    ws = tmp_path_factory.mktemp("motion-local") / "ws"
    r = _uvis([*map(str, dataset), "-w", str(ws), *MOTION], env=_one_thread_env())
    assert r.returncode == 0, r.stderr
    return Reference(ws, r.stdout)


def _ray_args(cluster, ws: Path, *extra: str) -> list[str]:
    return ["-w", str(ws), "--engine", "ray", "--address", cluster.address, "--workers", "2", *extra]


# ---- fast tests: no cluster ------------------------------------------------------------
def test_chunks_cover_every_missing_frame_once() -> None:
    assert contiguous_runs([7, 1, 2, 3, 9, 8, 3]) == [(1, 4), (7, 10)]
    missing = [0, 1, 2, 3, 4, 7, 8, 9]
    chunks = plan_chunks(missing, chunk_frames=3, stateful=False)
    assert chunks == [FrameRange(0, 3, 0), FrameRange(3, 5, 3), FrameRange(7, 10, 7)]
    covered = [t for c in chunks for t in range(c.start, c.stop)]
    assert covered == missing
    # a stateful proposer gets the whole missing span, fed from frame 0
    assert plan_chunks([5, 6, 12], chunk_frames=2, stateful=True) == [FrameRange(5, 13, 0)]
    assert plan_chunks([], chunk_frames=2, stateful=True) == []
    with pytest.raises(ValueError):
        plan_chunks([1], chunk_frames=0, stateful=False)


def test_dataset_inputs_jpegimages_root_list_file_and_max_videos(tmp_path: Path) -> None:
    import cv2

    root = tmp_path / "JPEGImages"
    for name in ("b10", "a2", "b9"):
        (root / name).mkdir(parents=True)
        for t in range(2):
            cv2.imwrite(str(root / name / f"{t:05d}.jpg"), np.full((16, 24, 3), 40 * t, np.uint8))
    assert [p.name for p in enumerate_videos([root])] == ["a2", "b9", "b10"]  # natural order
    assert [p.name for p in enumerate_videos([root], max_videos=2)] == ["a2", "b9"]
    listing = tmp_path / "train.txt"
    listing.write_text(f"# two videos\nJPEGImages/b10\n\n{EXAMPLE}\nJPEGImages/b10\n")
    assert enumerate_videos([listing]) == [root / "b10", EXAMPLE]  # relative to the list, once each
    bad = tmp_path / "bad.txt"
    bad.write_text("JPEGImages/a2\nJPEGImages/nope\n")
    with pytest.raises(BadInputError, match=r"bad\.txt:2: JPEGImages/nope: no such"):
        enumerate_videos([bad])
    with pytest.raises(BadInputError, match="max-videos"):
        enumerate_videos([root], max_videos=0)


def test_max_videos_on_the_command_line(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    r = _uvis([str(EXAMPLE), str(EXAMPLE.parent), "-w", str(ws), "--max-videos", "1", "--max-frames", "2",
               "--proposer", "motion", "--embedder", "efficientnet"])
    assert r.returncode == 0, r.stderr
    assert list(_statuses(ws)) == ["vtest_150"]


def test_import_uvis_never_imports_ray() -> None:
    code = ("import sys, uvis, uvis.cli, uvis.engines, uvis.engines.ray_engine, uvis.engines.ray_worker; "
            "uvis.cli.make_parser().parse_args(['label', 'x', '--engine', 'ray']); "
            "print('ray' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    assert out.stdout.strip() == "False"


def test_engine_ray_without_ray_names_the_pip_command(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    code = ("import sys; sys.modules['ray'] = None  # ray not installed\n"
            "from uvis.cli import main\n"
            f"sys.exit(main(['label', {str(EXAMPLE)!r}, '-w', {str(ws)!r}, '--engine', 'ray']))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 2, r.stderr
    assert INSTALL_RAY in r.stderr and "pip install" in INSTALL_RAY
    assert not ws.exists()  # nothing touched before the check


# ---- on the cluster --------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.ray
def test_ray_motion_efficientnet_equals_local(cluster, dataset: list[Path], motion_reference: Reference,
                                              broken_folder: Path, tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    r = _uvis([*map(str, dataset), str(broken_folder), *_ray_args(cluster, ws), *MOTION], env=cluster.env())
    assert r.returncode == 2, r.stderr  # one video failed, the others are labelled
    assert len(re.findall(r"ray: worker \d: pid \d+ on 127\.0\.0\.1", r.stderr)) == 2, r.stderr
    # the failure names the worker, the video and the frame
    assert re.search(r"failed: worker \d \(pid \d+ on 127\.0\.0\.1\) failed on broken frame 7: .*00007\.png", r.stderr)
    # on disk: the good videos and frames 0-6 of the broken one; computed: the chunks that finished
    assert f"{MOTION_FRAMES + 7} frames labelled ({MOTION_FRAMES} computed by workers), 0 already cached" in r.stderr
    _assert_same_caches(ws, motion_reference.ws, only={"vtest_150", "walk", "megamind"})
    assert _statuses(ws) == {"vtest_150": "done", "walk": "done", "megamind": "done", "broken": "failed"}
    assert r.stdout == motion_reference.stdout  # the decisions printed from the caches too


@pytest.mark.slow
@pytest.mark.ray
def test_ray_cutler_tiny_clip_equals_local(cluster, dataset: list[Path], tmp_path: Path) -> None:
    from uvis.proposers.cutler.testing import write_recipe_checkpoint

    weights = write_recipe_checkpoint(tmp_path / "cutler_recipe.pth", CUTLER_FIXTURES / "dev_astronaut.json", seed=7)
    args = [*map(str, dataset), "--proposer", "cutler", "--cutler-weights", str(weights), "--min-size", "128",
            "--embedder", "clip", "--clip-model", "uvis-tiny-vit", "--clip-pretrained", "none",
            "--vocabulary", "person,car", "--max-frames", "2", "--stride", "5", "--max-side", "320"]
    local = _uvis([*args, "-w", str(tmp_path / "local")], env=_one_thread_env())
    assert local.returncode == 0, local.stderr
    # one frame per chunk: chunks start mid-video (a seek into the file), on both workers
    r = _uvis([*args, *_ray_args(cluster, tmp_path / "ray", "--chunk-frames", "1")], env=cluster.env())
    assert r.returncode == 0, r.stderr
    assert "6 frames labelled" in r.stderr
    _assert_same_caches(tmp_path / "ray", tmp_path / "local")
    assert r.stdout == local.stdout


@pytest.mark.slow
@pytest.mark.ray
def test_killed_worker_is_restarted_and_every_frame_written_once(cluster, dataset: list[Path],
                                                                 motion_reference: Reference, tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    proc = subprocess.Popen([sys.executable, "-m", "uvis", "label", *map(str, dataset), *_ray_args(cluster, ws),
                             *MOTION, "--quiet"], env=cluster.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, cwd=REPO)
    pids = []
    for line in proc.stderr:  # the driver names its workers before giving them work
        m = re.match(r"ray: worker (\d): pid (\d+)", line)
        if m:
            pids.append(int(m.group(2)))
        if len(pids) == 2:
            break
    assert len(pids) == 2, "the driver did not report its workers"
    _wait_for_frames(ws, 3, proc)
    os.kill(pids[0], signal.SIGKILL)
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err
    assert re.search(rf"worker 0 \(pid {pids[0]} on 127\.0\.0\.1\) died; Ray restarted it as pid \d+", err), err
    _assert_every_frame_once(ws, {"vtest_150": 20, "walk": 20, "megamind": 20})
    _assert_same_caches(ws, motion_reference.ws)


@pytest.mark.slow
@pytest.mark.ray
def test_killed_driver_resumes_without_recomputing_cached_frames(cluster, dataset: list[Path],
                                                                 motion_reference: Reference, tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    argv = [sys.executable, "-m", "uvis", "label", *map(str, dataset), *_ray_args(cluster, ws), *MOTION, "--quiet"]
    proc = subprocess.Popen(argv, env=cluster.env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            cwd=REPO)
    _wait_for_frames(ws, 10, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    # Ray ends the dead driver's workers; wait until nothing is written any more
    before, stable_since = len(_frame_files(ws)), time.monotonic()
    while time.monotonic() - stable_since < 3:
        time.sleep(0.2)
        now = len(_frame_files(ws))
        if now != before:
            before, stable_since = now, time.monotonic()
    snapshot = {}
    for key, path in _frame_files(ws).items():
        with np.load(path) as d:
            snapshot[key] = {f: d[f] for f in d.files}
    assert 10 <= len(snapshot) < MOTION_FRAMES
    r = _uvis([*map(str, dataset), *_ray_args(cluster, ws), *MOTION], env=cluster.env())
    assert r.returncode == 0, r.stderr
    todo = MOTION_FRAMES - len(snapshot)  # the workers' own count: cached frames were not recomputed
    assert f"{todo} frames labelled ({todo} computed by workers), {len(snapshot)} already cached" in r.stderr
    caches = _caches(ws)
    for key, arrays in snapshot.items():  # the cached frames are in the final cache as they were
        video, t = key.split("/")[0], int(key.split("/")[1][:6])
        rows = caches[video].frame_slices[t]
        assert np.array_equal(caches[video].instances.boxes[rows], arrays["boxes"]), key
    _assert_every_frame_once(ws, {"vtest_150": 20, "walk": 20, "megamind": 20})
    _assert_same_caches(ws, motion_reference.ws)


@pytest.mark.slow
@pytest.mark.ray
def test_worker_that_cannot_see_the_workspace_fails_the_run(tmp_path: Path) -> None:
    from uvis.engines.testing import LocalRayCluster

    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("needs root and unshare to hide the workspace from the Ray node (CI runs as root)")
    shared = tmp_path / "shared"
    shared.mkdir()
    ws = shared / "ws"
    with LocalRayCluster(num_cpus=1, hidden=shared) as hidden_cluster:  # the node sees an empty folder there
        r = _uvis([str(EXAMPLE), "-w", str(ws), "--engine", "ray", "--address", hidden_cluster.address,
                   "--workers", "1", "--max-frames", "2", "--proposer", "motion", "--embedder", "efficientnet"],
                  env=hidden_cluster.env())
    assert r.returncode == 2, r.stderr
    assert re.search(rf"worker 0: pid \d+ on 127\.0\.0\.1 .* cannot see the workspace {re.escape(str(ws))}", r.stderr)
    assert "docs/scale-out.md" in r.stderr
    assert not list(ws.glob("videos/*/*/frames/*.npz"))
