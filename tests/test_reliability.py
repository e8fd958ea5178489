"""Reliability suite (issues 9 and 13): workspace integrity under clashing names, changed
settings, failing commands, hostile paths and killed exports.

Every case reproduces a reported failure on real components (real videos written with
OpenCV, the motion proposer, the open_clip code path with the tiny random ViT, SQLite,
subprocesses of ``python -m uvis``) and asserts the behaviour the issues ask for.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from uvis.cache import CacheWriter, VideoCache
from uvis.config import Config
from uvis.errors import BadInputError
from uvis.runner import Runner
from uvis.video import open_video
from uvis.workspace import Workspace

pytestmark = pytest.mark.reliability

REPO = Path(__file__).resolve().parents[1]
TINY = ["--embedder", "clip", "--clip-model", "uvis-tiny-vit", "--clip-pretrained", "none"]
FOURCC = {".mp4": "mp4v", ".mov": "mp4v", ".avi": "MJPG"}


def _config(**over) -> Config:
    base = {"embedder__backend": "clip", "embedder__clip_model": "uvis-tiny-vit",
            "embedder__clip_pretrained": "none", "proposer__backend": "motion"}
    base.update(over)
    return Config().replace(**base)


def write_clip(path: Path, example: Path, start: int, n: int = 8, fps: float = 10.0) -> Path:
    """A small real video: ``n`` frames of the bundled clip from ``start``, 128x96."""
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*FOURCC[path.suffix.lower()]), fps, (128, 96))
    with open_video(example, max_frames=start + n) as reader:
        for t, rgb in reader.frames(start=start):
            writer.write(cv2.cvtColor(cv2.resize(rgb, (128, 96), interpolation=cv2.INTER_AREA), cv2.COLOR_RGB2BGR))
    writer.release()
    assert path.stat().st_size > 0
    return path


@pytest.fixture(scope="module")
def embedder():
    from uvis.embedders.factory import make_embedder

    return make_embedder(_config().embedder)


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.update({"UVIS_OFFLINE": "1", "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)})
    return env


def uvis(*args: str, timeout: float = 300, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "uvis", *args], capture_output=True, text=True, env=_env(),
                          timeout=timeout, cwd=cwd)


def _mtimes(cache_dir: Path) -> dict[str, int]:
    files = [*(cache_dir / "frames").glob("*.npz"), *cache_dir.glob("columns-*/*")]  # per-frame or consolidated
    return {f"{p.parent.name}/{p.name}": p.stat().st_mtime_ns for p in sorted(files)}


# ============================================================================ video identity (13.1)
@pytest.mark.parametrize("first, second, base", [
    ("a/clip.mp4", "b/clip.mp4", "clip"),
    ("clip.mp4", "clip.avi", "clip"),
    ("名前.mp4", "テスト.mp4", "video"),
])
def test_clashing_names_never_share_a_cache(tmp_path, example_video, embedder, first, second, base):
    v1 = write_clip(tmp_path / "in" / first, example_video, 0)
    v2 = write_clip(tmp_path / "in" / second, example_video, 60)
    ws = Workspace(tmp_path / "ws")
    runner = Runner(ws, _config(), embedder=embedder)
    c1 = runner.label_video(v1)
    before = _mtimes(c1.directory)
    c2 = runner.label_video(v2)
    assert c1.info.name == base and c2.info.name == f"{base}_2"
    assert any(f"labelled as '{base}_2'" in w for w in c2.warnings), c2.warnings
    assert c2.directory != c1.directory and c2.num_cached == 8 and c2.complete
    # each name's cache holds its own video's frames, and the database says so
    assert Path(ws.load_cache(base).info.path).resolve() == v1.resolve()
    assert Path(ws.load_cache(f"{base}_2").info.path).resolve() == v2.resolve()
    assert Path(ws.db.video(f"{base}_2").path) == v2.resolve()
    assert not np.array_equal(ws.load_cache(base).instances.boxes[:5], ws.load_cache(f"{base}_2").instances.boxes[:5])
    # labelling either again resumes its own cache and changes nothing
    again1, again2 = runner.label_video(v1), runner.label_video(v2)
    assert (again1.info.name, again2.info.name) == (base, f"{base}_2")
    assert _mtimes(c1.directory) == before and not again1.warnings[1:]
    ws.close()


def test_clash_is_reported_by_the_cli(tmp_path, example_video):
    v1 = write_clip(tmp_path / "a" / "clip.mp4", example_video, 0, n=6)
    v2 = write_clip(tmp_path / "b" / "clip.mp4", example_video, 60, n=6)
    ws = tmp_path / "ws"
    out1 = uvis("label", str(v1), "-w", str(ws), "--quiet", *TINY)
    assert out1.returncode == 0, out1.stderr
    out2 = uvis("label", str(v2), "-w", str(ws), "--quiet", *TINY)
    assert out2.returncode == 0, out2.stderr
    assert "resuming" not in out2.stderr
    assert "the name 'clip' belongs to another video" in out2.stderr and "labelled as 'clip_2'" in out2.stderr
    assert "clip_2: 6 frames" in out2.stdout


def test_same_content_elsewhere_keeps_its_name_and_cache(tmp_path, example_video, embedder):
    v1 = write_clip(tmp_path / "a" / "clip.mp4", example_video, 0)
    copy = tmp_path / "b" / "clip.mp4"
    copy.parent.mkdir()
    copy.write_bytes(v1.read_bytes())
    ws = Workspace(tmp_path / "ws")
    runner = Runner(ws, _config(), embedder=embedder)
    c1 = runner.label_video(v1)
    stamps = _mtimes(c1.directory)
    c2 = runner.label_video(copy)
    assert c2.info.name == "clip" and c2.directory == c1.directory and _mtimes(c2.directory) == stamps
    ws.close()


def test_explicit_names_refused_when_taken_or_unsafe(tmp_path, example_video, embedder):
    v1 = write_clip(tmp_path / "a" / "clip.mp4", example_video, 0)
    v2 = write_clip(tmp_path / "b" / "clip.mp4", example_video, 60)
    ws = Workspace(tmp_path / "ws")
    runner = Runner(ws, _config(), embedder=embedder)
    runner.label_video(v1)
    with pytest.raises(BadInputError, match="already belongs to another video"):
        runner.label_video(v2, name="clip")
    for bad in ("../../x", "a/b", "..", ".hidden", "", "x" * 300, "名前"):
        with pytest.raises(BadInputError, match="is not allowed"):
            runner.label_video(v2, name=bad)
    assert not (tmp_path / "x").exists() and not (ws.root.parent / "x").exists()
    assert sorted(p.name for p in ws.videos_dir.iterdir()) == ["clip"]
    ws.close()


def test_app_add_by_path_claims_a_distinct_name(tmp_path, example_video):
    """The app claims a name when it queues a video (app/main.py calls this)."""
    v1 = write_clip(tmp_path / "ws" / "a" / "clip.mp4", example_video, 0)
    v2 = write_clip(tmp_path / "ws" / "b" / "clip.mp4", example_video, 60)
    ws = Workspace(tmp_path / "ws")
    assert ws.claim_video_name(v1) == ("clip", None)
    name, note = ws.claim_video_name(v2)
    assert name == "clip_2" and "labelled as 'clip_2'" in note
    assert ws.claim_video_name(v1) == ("clip", None) and ws.claim_video_name(v2)[0] == "clip_2"
    ws.close()


# ============================================================================ cache identity (9.6)
def test_crop_setting_change_makes_a_new_cache(tmp_path, example_video, embedder):
    from uvis.embedders.factory import make_embedder

    v = write_clip(tmp_path / "clip.mp4", example_video, 0)
    ws = Workspace(tmp_path / "ws")
    c1 = Runner(ws, _config(), embedder=embedder).label_video(v)
    stamps = _mtimes(c1.directory)
    cfg2 = _config(embedder__crop_padding=0.4, embedder__grey_background=True)
    c2 = Runner(ws, cfg2, embedder=make_embedder(cfg2.embedder)).label_video(v)
    assert c2.key != c1.key and c2.num_cached == 8
    assert _mtimes(c1.directory) == stamps  # the old cache is untouched
    for cache, pad, grey in ((c1, 0.1, False), (c2, 0.4, True)):  # meta.json tells the truth
        meta = json.loads((cache.directory / "meta.json").read_text())
        assert meta["settings"]["embedder_settings"]["crop_padding"] == pad
        assert meta["settings"]["embedder_settings"]["grey_background"] is grey
    assert not np.allclose(c1.instances.embeddings, c2.instances.embeddings)
    assert ws.current_cache_key("clip") == c2.key
    # settings that do not change outputs keep the cache: device and batch size
    c3 = Runner(ws, _config(embedder__batch_size=3), embedder=embedder).label_video(v)
    assert c3.key == c1.key
    ws.close()


@pytest.mark.parametrize("over", [{"video__stride": 2}, {"video__max_side": 64}, {"proposer__motion_mode": "flow"}])
def test_output_settings_change_the_key(tmp_path, example_video, embedder, over):
    v = write_clip(tmp_path / "clip.mp4", example_video, 0)
    ws = Workspace(tmp_path / "ws")
    k1 = Runner(ws, _config(), embedder=embedder).label_video(v).key
    k2 = Runner(ws, _config(**over), embedder=embedder).label_video(v).key
    assert k1 != k2
    ws.close()


def test_cache_writer_refuses_to_resume_other_settings(tmp_path, example_video, embedder):
    v = write_clip(tmp_path / "clip.mp4", example_video, 0)
    ws = Workspace(tmp_path / "ws")
    cache = Runner(ws, _config(), embedder=embedder).label_video(v)
    meta_before = (cache.directory / "meta.json").read_text()
    other = VideoCache.load(cache.directory).meta
    other.settings = {**other.settings, "embedder_settings": {**other.settings["embedder_settings"],
                                                              "crop_padding": 0.9}}
    with pytest.raises(BadInputError, match="crop_padding"):
        CacheWriter(cache.directory, other)
    assert (cache.directory / "meta.json").read_text() == meta_before
    ws.close()


# ============================================================================ failing commands (13.4)
def _configs(ws: Path) -> int:
    w = Workspace(ws)
    n = len(w.db.config_versions())
    w.close()
    return n


def test_failing_label_commands_change_nothing(tmp_path, example_video):
    v = write_clip(tmp_path / "clip.mp4", example_video, 0, n=6)
    ws = tmp_path / "ws"
    ok = uvis("label", str(v), "-w", str(ws), "--quiet", *TINY)
    assert ok.returncode == 0, ok.stderr
    w = Workspace(ws)
    key, latest = w.current_cache_key("clip"), w.db.latest_config()
    w.close()
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(os.urandom(2048))
    weird = tmp_path / "weights_dir"
    weird.mkdir()
    failing = [
        ["label", str(bad), "--vocabulary", "cat,dog", *TINY],                       # cannot be opened
        ["label", str(v), "--proposer", "cutler", "--cutler-weights", str(tmp_path / "none.pth")],  # missing weights
        ["label", str(v), "--device", "cuda:7", "--vocabulary", "cat,dog", *TINY],  # missing device
        ["label", str(v), "--embedder", "clip", "--clip-model", "uvis-tiny-vit",    # failing embedder change
         "--clip-pretrained", str(tmp_path / "missing.pt")],
    ]
    for args in failing:
        out = uvis(*args, "-w", str(ws), "--quiet")
        assert out.returncode == 2, (args, out.returncode, out.stderr[-2000:])
        assert "Traceback" not in out.stderr
    w = Workspace(ws)
    assert w.db.latest_config() == latest and len(w.db.config_versions()) == 1
    assert w.current_cache_key("clip") == key and w.video_names() == ["clip"]
    w.close()
    show = uvis("show", "-w", str(ws))
    assert show.returncode == 0 and "clip: 6 frames" in show.stdout


class _FailingEmbedder:
    """The tiny CLIP embedder, failing from the ``fail_at``-th frame on (a device dying mid-run)."""

    def __init__(self, inner, fail_at: int) -> None:
        self.inner, self.fail_at, self.calls = inner, fail_at, 0
        self.name, self.dim, self.has_text, self.logit_scale = "clip:other", inner.dim, True, inner.logit_scale

    def embed_crops(self, frame, boxes, masks):
        self.calls += 1
        if self.calls >= self.fail_at:
            raise RuntimeError("CUDA error: device lost")
        return self.inner.embed_crops(frame, boxes, masks)

    def encode_text(self, prompts):
        return self.inner.encode_text(prompts)


def test_failing_embedder_change_keeps_the_cache_pointer(tmp_path, example_video, embedder):
    v = write_clip(tmp_path / "clip.mp4", example_video, 0)
    ws = Workspace(tmp_path / "ws")
    good = Runner(ws, _config(), embedder=embedder).label_video(v)
    with pytest.raises(RuntimeError, match="device lost"):
        Runner(ws, _config(), embedder=_FailingEmbedder(embedder, 4)).label_video(v)
    rec = ws.db.video("clip")
    assert rec.cache_key == good.key and rec.status == "failed"
    assert ws.load_cache("clip").complete
    # a new video whose run fails on its first frame is not listed as labelled
    v2 = write_clip(tmp_path / "other.mp4", example_video, 60)
    with pytest.raises(RuntimeError):
        Runner(ws, _config(), embedder=_FailingEmbedder(embedder, 1)).label_video(v2)
    assert ws.db.video("other").status == "failed" and ws.video_names() == ["clip"]
    ws.close()


def test_corrupt_frame_deep_in_a_folder_marks_the_video_failed(tmp_path, example_video):
    folder = tmp_path / "frames"
    folder.mkdir()
    with open_video(example_video, max_frames=10, max_side=128) as reader:
        for t, rgb in reader.frames():
            cv2.imwrite(str(folder / f"{t:05d}.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    png = (folder / "00007.png").read_bytes()
    (folder / "00007.png").write_bytes(png[:33] + os.urandom(200))  # header intact, pixels garbage
    ws = tmp_path / "ws"
    out = uvis("label", str(folder), "-w", str(ws), "--quiet", *TINY)
    assert out.returncode == 2 and "00007.png" in out.stderr and "Traceback" not in out.stderr
    w = Workspace(ws)
    rec = w.db.video("frames")
    assert rec.status == "failed" and len(w.db.config_versions()) == 1  # it had started: config saved
    w.close()


# ============================================================================ clear messages (13.6, 9.9)
def test_hostile_paths_exit_2_with_a_message(tmp_path, example_video):
    long_path = str(tmp_path / ("x" * 5000 + ".mp4"))
    deep_ws = str(tmp_path / ("d/" * 2100))
    cases = [
        (["label", "/dev/null", "-w", str(tmp_path / "ws")], "/dev/null: not a video file"),
        (["label", str(example_video), "-w", "/proc/uvis-workspace", "--max-frames", "2"], "/proc/uvis-workspace"),
        (["label", long_path, "-w", str(tmp_path / "ws")], "5"),
        (["label", str(example_video), "-w", deep_ws, "--max-frames", "2"], "cannot be used"),
        (["show", "-w", str(tmp_path / ("y" * 5000))], "workspace"),
    ]
    for args, needle in cases:
        out = uvis(*args)
        assert out.returncode == 2, (args[:2], out.returncode, out.stderr[-1500:])
        assert "Traceback" not in out.stderr and needle in out.stderr and len(out.stderr) < 2000


def test_unreadable_clip_checkpoint_exit_2(tmp_path, example_video):
    if os.geteuid() == 0:  # root reads any mode-000 file: a file whose read fails for everyone
        unreadable = "/proc/self/mem"
    else:
        p = tmp_path / "weights.pt"
        p.write_bytes(b"0" * 100)
        p.chmod(0)
        unreadable = str(p)
    out = uvis("label", str(example_video), "-w", str(tmp_path / "ws"), "--max-frames", "2", "--quiet",
               "--embedder", "clip", "--clip-model", "uvis-tiny-vit", "--clip-pretrained", unreadable)
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr[-2000:]
    assert "cannot read" in out.stderr and "clip-pretrained" in out.stderr


def test_closed_pipe_exit_2_without_traceback():
    r, w = os.pipe()
    os.close(r)  # the reader is gone before anything is written (`config dump | head` after head exits)
    proc = subprocess.run([sys.executable, "-m", "uvis", "config", "dump"], stdout=w, stderr=subprocess.PIPE,
                          text=True, env=_env(), timeout=120)
    os.close(w)
    assert proc.returncode == 2 and "broken pipe" in proc.stderr and "Traceback" not in proc.stderr


def test_mov_files_are_accepted(tmp_path, example_video, embedder):
    from uvis.video import VIDEO_EXTENSIONS, find_videos

    mov = write_clip(tmp_path / "clip.mov", example_video, 0)
    assert ".mov" in VIDEO_EXTENSIONS
    assert find_videos([tmp_path]) == [mov]
    ws = Workspace(tmp_path / "ws")
    cache = Runner(ws, _config(), embedder=embedder).label_video(mov)
    assert cache.complete and cache.info.num_frames == 8
    ws.close()


def test_reader_warnings_reach_the_cli_and_the_app(tmp_path, example_video, embedder, monkeypatch, capsys):
    """What the reader tolerated at open (VideoReader.warnings) is printed by ``label`` and
    shown in the app's job message, not dropped."""
    import uvis.video as video_mod
    from app.jobs import JobQueue
    from uvis import cli

    real_open = video_mod.open_video

    def open_with_warning(*a, **k):
        reader = real_open(*a, **k)
        reader.warnings.append(f"{reader.info.path}: the container has no valid frame rate; assuming 30 fps")
        return reader

    monkeypatch.setattr(video_mod, "open_video", open_with_warning)
    v = write_clip(tmp_path / "clip.mp4", example_video, 0, n=4)
    assert cli.main(["label", str(v), "-w", str(tmp_path / "ws"), "--quiet", *TINY]) == 0
    err = capsys.readouterr().err
    assert "warning: " in err and "no valid frame rate" in err
    q = JobQueue(tmp_path / "ws2", _config(), lambda: embedder)
    try:
        job = q.submit(v, "clip")
        assert q.wait_idle(timeout=120)
    finally:
        q.stop()
    assert job.state == "done" and "no valid frame rate" in job.message, job.message


def test_missing_package_keeps_the_sub_command_and_names_the_install(monkeypatch, capsys):
    import importlib

    from uvis import cli

    real = importlib.import_module

    def fake(name, *a, **k):
        if name == "uvis.export.cli":
            raise ModuleNotFoundError("No module named 'pycocotools'", name="pycocotools")
        return real(name, *a, **k)

    monkeypatch.setattr(cli.importlib, "import_module", fake)
    assert cli.main(["export", "--workspace", "w", "--to", "coco", "--out", "x"]) == 2
    err = capsys.readouterr().err
    assert "'export' needs the package 'pycocotools'" in err and "pip install pycocotools" in err

    def own_missing(name, *a, **k):
        if name == "uvis.export.cli":
            raise ModuleNotFoundError("No module named 'uvis.export.cli'", name="uvis.export.cli")
        return real(name, *a, **k)

    monkeypatch.setattr(cli.importlib, "import_module", own_missing)
    with pytest.raises(ModuleNotFoundError):  # the project's own module missing is a broken checkout
        cli.make_parser()


def test_no_importorskip_of_own_modules():
    import re

    own = re.compile(r"importorskip\(\s*[\"'](uvis|app)\b")
    offenders = []
    for path in sorted((REPO / "tests").glob("*.py")):
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if own.search(line):
                offenders.append(f"{path.name}:{n}")
    assert not offenders, offenders


# ============================================================================ cleanup and refusal (13.5)
def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _plant_temporaries(folder: Path, stem: str, suffix: str, dead: int, reused: int) -> dict[str, Path]:
    """Leftovers of killed writers: a dead PID, a reused PID (alive, but the process
    started after the file was last written), and one of a live writer that must stay."""
    from uvis.fsutil import TMP_MARK

    folder.mkdir(parents=True, exist_ok=True)
    made = {"dead": folder / f".{stem}{TMP_MARK}{dead}-0000dead{suffix}",
            "reused": folder / f".{stem}{TMP_MARK}{reused}-0000beef{suffix}",
            "live": folder / f".{stem}{TMP_MARK}1-0000aaaa{suffix}"}  # PID 1 runs since before the file
    for p in made.values():
        p.write_bytes(b"partial")
    past = os.path.getmtime(made["reused"]) - 3600
    os.utime(made["reused"], (past, past))
    return made


@pytest.mark.parametrize("to", ["ytvis", "coco"])
def test_json_exports_refuse_existing_out_and_clean_dead_temporaries(tmp_path, to):
    from test_export_common import build_workspace

    from uvis.cli import main

    ws = build_workspace(tmp_path, videos=("alpha",))
    out = tmp_path / ("out.json" if to == "ytvis" else "coco")
    extra = ["--frames", str(tmp_path / "frames")] if to == "ytvis" else []
    args = ["export", "-w", str(ws), "--to", to, "--out", str(out), "--quiet", *extra]
    assert main(args) == 0
    target = out if to == "ytvis" else out / "annotations.json"
    first = target.read_bytes()
    assert main(args) == 2  # an existing --out is refused, untouched
    assert target.read_bytes() == first
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])  # a live, reused PID
    try:
        planted = _plant_temporaries(target.parent, target.stem, ".json", _dead_pid(), sleeper.pid)
        frames_parent = tmp_path / "frames" if to == "ytvis" else out / "images"
        aside = frames_parent / f".alpha.uvis-tmp-{_dead_pid()}-0000cafe.old"  # a killed swap's old folder
        os.replace(frames_parent / "alpha", aside)
        assert main([*args, "--overwrite"]) == 0
    finally:
        sleeper.kill()
        sleeper.wait()
    assert not planted["dead"].exists() and not planted["reused"].exists() and planted["live"].exists()
    assert (frames_parent / "alpha").is_dir() and not aside.exists()
    assert json.loads(target.read_text())
    planted["live"].unlink()
    leftovers = [p for p in tmp_path.rglob("*") if ".uvis-tmp-" in p.name]
    assert leftovers == []


def test_killed_fiftyone_overwrite_is_restored_on_next_access(tmp_path, monkeypatch):
    fo = pytest.importorskip("fiftyone")
    from test_export_common import build_workspace, decide

    from uvis.cli import main
    from uvis.export import fiftyone_export as fe

    ws = build_workspace(tmp_path, videos=("alpha",))
    name = f"uvis-reliability-{os.getpid()}"
    fe.export_fiftyone(decide(ws), name, media_dir=tmp_path / "media")
    n_before = len(fo.load_dataset(name))
    dead = _dead_pid()
    # what a kill inside the overwrite's swap leaves: the old dataset aside, the new one unnamed
    fo.load_dataset(name).name = f"{name}{fe.OLD_MARK}{dead}-0000dead"
    fo.Dataset(f"{name}{fe.TMP_MARK}{dead}-0000beef", persistent=True)
    media_tmp = tmp_path / "media" / f".alpha.uvis-tmp-{dead}-0000f00d.mp4"
    media_tmp.write_bytes(b"half a video")
    assert not fo.dataset_exists(name)
    # the next access (here: importing curation back) finds the dataset, not "does not exist"
    assert main(["import", "-w", str(ws), "--fiftyone", name, "--dry-run"]) == 0
    assert fo.dataset_exists(name) and len(fo.load_dataset(name)) == n_before
    assert [n for n in fo.list_datasets() if n.startswith(name + ".")] == []
    assert main(["export", "-w", str(ws), "--to", "fiftyone", "--dataset", name, "--overwrite", "--quiet",
                 "--media-dir", str(tmp_path / "media")]) == 0
    assert not media_tmp.exists()
    fo.delete_dataset(name)
