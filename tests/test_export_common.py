"""Shared fixtures for the export tests (a model-free workspace on a real video) and
tests of the atomic-write and frame-reading helpers.

The workspace: one or two real MPEG-4 videos written with cv2.VideoWriter (100x60
source, processed at stride 2 and max_side 75 -> 75x45, odd on both sides), a cache
of hand-made instances per processed frame (a "cat" moving right, a "dog" with low
objectness on even frames, an ambiguous blob dropped for its CLIP score, a mask
sticking out of its box), curation (reject, relabel, accept) and a deterministic text
encoder, decided with the pipeline's real code.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from uvis import masks as M
from uvis.cache import CacheMeta, CacheWriter
from uvis.config import Config
from uvis.errors import BadInputError
from uvis.fsutil import atomic_dir, atomic_write_json
from uvis.export.frames import iter_processed_frames, reading_parameters
from uvis.pipeline import open_project
from uvis.types import Instances, Reason
from uvis.video import open_video
from uvis.testing import ToyTextEncoder, unit  # noqa: F401 (unit re-exported for tests)
from uvis.workspace import Workspace

VOCAB = ["cat", "dog", "cow"]
D = 6
SRC_W, SRC_H, SRC_FRAMES = 100, 60, 24
STRIDE, MAX_SIDE = 2, 75


text_encoder = ToyTextEncoder(tuple(VOCAB), D)


def write_video(path: Path, n_frames: int = SRC_FRAMES, seed: int = 0) -> Path:
    """A real MPEG-4 video: gradient background, two moving coloured rectangles."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (SRC_W, SRC_H))
    assert writer.isOpened()
    yy, xx = np.mgrid[0:SRC_H, 0:SRC_W]
    rng = np.random.default_rng(seed)
    for t in range(n_frames):
        img = np.stack([(xx * 2) % 256, (yy * 4) % 256, np.full_like(xx, 80 + seed * 40)], -1).astype(np.uint8)
        x = 5 + 2 * t
        img[15:35, x:x + 16] = (0, 0, 230)
        img[30:50, 60:80] = (0, 200, 0)
        img = np.clip(img.astype(int) + rng.integers(-3, 4, img.shape), 0, 255).astype(np.uint8)
        writer.write(img)
    writer.release()
    return path


def _frame_instances(t: int, h: int, w: int, rng: np.random.Generator) -> Instances:
    masks, boxes, obj, emb = [], [], [], []
    # 0: cat, moving right (rectangle with a notch)
    m = np.zeros((h, w), bool)
    x = 3 + t
    m[11:26, x:x + 12] = True
    m[11:14, x:x + 3] = False
    masks.append(m)
    boxes.append([x - 0.4, 10.6, x + 12.3, 26.2])
    obj.append(0.95)
    emb.append([1, 0.1, 0, 0, 0, 0])
    # 1: dog, low objectness on even frames (ellipse)
    yy, xx = np.mgrid[0:h, 0:w]
    m = ((xx - 52) / 8.0) ** 2 + ((yy - 30) / 6.0) ** 2 <= 1
    masks.append(m)
    boxes.append([44.2, 24.1, 60.7, 36.9])
    obj.append(0.5 if t % 2 == 0 else 0.9)
    emb.append([0.1, 1, 0, 0, 0, 0])
    # 2: ambiguous blob: equally close to every class -> low CLIP score
    m = np.zeros((h, w), bool)
    m[35:43, 5:20] = True
    masks.append(m)
    boxes.append([5, 35, 20, 43])
    obj.append(0.8)
    emb.append([1, 1, 1, 0, 0, 0])
    # 3: a cow whose mask sticks out of its (too small) box, touching the frame edge
    m = np.zeros((h, w), bool)
    m[0:9, w - 14:w] = True
    masks.append(m)
    boxes.append([w - 12.5, 1.5, w - 1.5, 7.5])
    obj.append(0.85)
    emb.append([0.05, 0, 1, 0, 0, 0])
    emb_arr = unit(np.asarray(emb, np.float32) + 0.02 * rng.normal(size=(4, D)))
    rles = M.encode_many(np.stack(masks))
    return Instances(boxes=np.asarray(boxes, np.float32), masks=rles, objectness=obj, image_size=(h, w),
                     embeddings=emb_arr)


def add_video(ws: Workspace, name: str, video_path: Path, cache_frames: int | None = None) -> None:
    """Open a real video (stride 2, max_side 75) and cache hand-made instances for it."""
    with open_video(video_path, stride=STRIDE, max_side=MAX_SIDE, name=name) as reader:
        info = reader.info
    meta = CacheMeta(info, "test-proposer", "test-embedder", {}, D, True, 5.0)
    writer = CacheWriter(ws.cache_dir(name, "k"), meta)
    rng = np.random.default_rng(len(name))
    for t in range(info.num_frames if cache_frames is None else cache_frames):
        writer.write_frame(t, _frame_instances(t, info.height, info.width, rng))
    ws.db.upsert_video(name, str(video_path), cache_key="k", num_frames=info.num_frames, width=info.width,
                       height=info.height, status="done")


def make_config() -> Config:
    return Config().replace(labeler__vocabulary=VOCAB, video__stride=STRIDE, video__max_side=MAX_SIDE)


def build_workspace(root: Path, videos: tuple[str, ...] = ("alpha",), curate: bool = True) -> Path:
    """Create the test workspace under ``root`` (see the module docstring); returns its folder."""
    ws = Workspace(root / "ws")
    for k, name in enumerate(videos):
        add_video(ws, name, write_video(root / f"{name}.mp4", seed=k))
    cfg = make_config()
    ws.db.save_config(cfg.to_json(), note="test")
    if curate:
        first = videos[0]
        ws.db.log(first, "reject", {"frame": 3, "index": 0})  # a cat a person rejected
        ws.db.log(first, "relabel", {"frame": 5, "index": 1, "label": "cow"})  # a dog relabelled as cow
        ws.db.log(first, "accept", {"frame": 2, "index": 1})  # a low-objectness dog a person accepted
    # encode the prompts once into the workspace's text cache (the CLI then needs no model)
    open_project(ws, text_encoder=text_encoder).decide(cfg)
    ws.close()
    return root / "ws"


def decide(ws_dir: Path, videos=None):
    ws = Workspace(ws_dir)
    try:
        return open_project(ws, text_encoder=text_encoder).decide(make_config(), videos=videos)
    finally:
        ws.close()


def assert_same_table(src, got, rows: np.ndarray) -> None:
    """``got`` (an ImportedVideo) equals rows ``rows`` of ``src`` (a VideoResult), exactly."""
    s = src.instances[rows]
    g = got.instances
    assert len(g) == len(s)
    assert [m["counts"] for m in g.masks] == [m["counts"] for m in s.masks]  # bit-identical RLE
    assert all(list(m["size"]) == list(n["size"]) for m, n in zip(g.masks, s.masks))
    for name in ("frame", "track_id", "label", "best_prompt", "decision"):
        np.testing.assert_array_equal(getattr(g, name), getattr(s, name), err_msg=name)
    for name in ("objectness", "clip_score", "similarity", "pmf_similarity", "boxes"):
        np.testing.assert_array_equal(getattr(g, name), getattr(s, name), err_msg=name)  # NaN == NaN here
    np.testing.assert_array_equal(got.user, src.user[rows])
    from uvis.export._common import proposal_indices

    np.testing.assert_array_equal(got.proposal_index, proposal_indices(src.instances.frame)[rows])
    assert got.vocabulary == src.vocabulary


@pytest.fixture(scope="module")
def workspace_dir(tmp_path_factory) -> Path:
    return build_workspace(tmp_path_factory.mktemp("export-ws"), videos=("alpha", "beta"))


# ---------------------------------------------------------------------------- tests
def test_fixture_has_every_kind_of_decision(workspace_dir):
    res = decide(workspace_dir)
    a = res["alpha"]
    reasons = {Reason(d).key for d in a.instances.decision}
    assert {"kept", "objectness", "clip_score", "user_reject"} <= reasons
    assert a.user.sum() == 3 and len(a.tracks) >= 3
    assert a.info.width == 75 and a.info.height == 45 and a.info.num_frames == SRC_FRAMES // STRIDE


def test_write_json_atomic_leaves_no_temp_on_failure(tmp_path):
    target = tmp_path / "out.json"
    atomic_write_json(target, {"a": 1})
    with pytest.raises(ValueError):
        atomic_write_json(target, {"a": float("nan")})  # strict JSON: refused
    assert json.loads(target.read_text()) == {"a": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.json"]


def test_atomic_dir_replaces_whole_folder_or_nothing(tmp_path):
    target = tmp_path / "frames"
    with atomic_dir(target) as d:
        (d / "a.jpg").write_bytes(b"1")
        (d / "b.jpg").write_bytes(b"2")
    with pytest.raises(RuntimeError):
        with atomic_dir(target) as d:
            (d / "c.jpg").write_bytes(b"3")
            raise RuntimeError("killed mid-way")
    assert sorted(p.name for p in target.iterdir()) == ["a.jpg", "b.jpg"]
    with atomic_dir(target) as d:
        (d / "z.jpg").write_bytes(b"9")
    assert sorted(p.name for p in target.iterdir()) == ["z.jpg"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["frames"]


def test_processed_frames_are_reproduced_and_changes_detected(tmp_path):
    video = write_video(tmp_path / "v.mp4")
    with open_video(video, stride=STRIDE, max_side=MAX_SIDE) as reader:
        info = reader.info
        ref = [f for _, f in reader.frames()]
    assert reading_parameters(info) == (STRIDE, MAX_SIDE)
    got = [f for _, f in iter_processed_frames(info)]
    assert len(got) == len(ref) and all(np.array_equal(a, b) for a, b in zip(got, ref))
    write_video(video, n_frames=10)  # the file changed on disk: fewer frames
    os.utime(video)
    with pytest.raises(BadInputError, match="changed since it was labelled"):
        list(iter_processed_frames(info))
    video.unlink()
    with pytest.raises(BadInputError, match="no longer exists"):
        list(iter_processed_frames(info))


def test_mask_areas_of_more_than_255_masks():
    # regression: pycocotools' area() overflows a uint8 for > 255 RLEs under numpy 2; tracks
    # longer than 255 frames hit it in every export
    from uvis.masks import area, encode_many

    masks = np.zeros((600, 6, 5), bool)
    for k in range(600):
        masks[k].flat[: k % 30] = True
    np.testing.assert_array_equal(area(encode_many(masks)), [k % 30 for k in range(600)])


def test_export_modules_do_not_import_fiftyone():
    import subprocess
    import sys

    code = ("import sys, uvis.export, uvis.export.cli, uvis.export.ytvis, uvis.export.coco, "
            "uvis.export.importers, uvis.export.fiftyone_export, uvis.export.fiftyone_app, uvis.cli; "
            "uvis.cli.make_parser(); print('fiftyone' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_frames_never_overwrite_a_frame_folder_source(tmp_path):
    from uvis.export.frames import write_video_frames

    folder = tmp_path / "JPEGImages" / "clip"
    folder.mkdir(parents=True)
    for t in range(3):
        cv2.imwrite(str(folder / f"{t:05d}.jpg"), np.full((8, 10, 3), 40 * t, np.uint8))
    with open_video(folder) as reader:
        info = reader.info
    with pytest.raises(BadInputError, match="would overwrite its source"):
        write_video_frames(info, tmp_path / "JPEGImages")
    assert sorted(p.name for p in folder.iterdir()) == ["00000.jpg", "00001.jpg", "00002.jpg"]
    out = write_video_frames(info, tmp_path / "export")
    assert sorted(p.name for p in out.iterdir()) == ["00000.jpg", "00001.jpg", "00002.jpg"]


def test_unsafe_video_names_are_refused(tmp_path):
    from uvis.export.ytvis import export_ytvis

    ws_dir = build_workspace(tmp_path, curate=False)
    r = decide(ws_dir)["alpha"]
    with pytest.raises(BadInputError, match="cannot be used as a file name"):
        export_ytvis({"../evil": r}, tmp_path / "x.json")
    assert not (tmp_path / "x.json").exists()
