"""Issue 13, formats: no file can crash, hang or exhaust the CLI or the app.

* Regression cases through the real CLI (``python -m uvis eval`` / ``import`` in
  subprocesses with a memory limit and a timeout): a polygon with 1e300 (segfaulted),
  compressed RLE whose runs exceed H×W (hung), garbage counts (were scored), a 113-byte
  file declaring 10⁸ frames (6 GiB), deep nesting (RecursionError), file names leaving
  ``--frames``; each exits 2 with a message naming the JSON path and the value.
* The same through the app's Evaluate handler in its own process, which survives.
* A seeded fuzz test: a few hundred documents mutated from valid YouTube-VIS / COCO /
  results / config documents (type swaps, huge, negative and NaN numbers, deep nesting,
  truncated and oversized RLE, missing keys, wrong lengths, escaping file names) run
  through import, eval and the file proposer in-process (each succeeds or raises
  BadInputError, within a time and memory bound), a sample through the CLI, and a
  sample through the app's Evaluate handler.
"""
from __future__ import annotations

import copy
import json
import os
import random
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

import cv2
import numpy as np
import pytest
from pycocotools import mask as mask_utils

from app import handlers
from uvis.config import Config
from uvis.errors import BadInputError, ConfigError
from uvis.eval.frame_f1 import frame_f1
from uvis.eval.ytvis_ap import evaluate_ytvis
from uvis.eval.ytvis_io import frames_from_ytvis, load_ground_truth, load_results
from uvis.export.importers import (load_ytvis_ground_truth, read_coco_instances, read_coco_predictions,
                                   read_ytvis_instances, read_ytvis_predictions)
from uvis.proposers.file import FileProposer
from uvis.testing import column_runs
from uvis.types import VideoInfo

pytestmark = pytest.mark.reliability

REPO = Path(__file__).resolve().parents[1]
H, W, N = 48, 96, 8
CLI_MEMORY = 3 << 30  # address-space limit of CLI subprocesses
SEED = 13


# ----------------------------------------------------------------------------- valid documents
def _rle(x0: int, x1: int) -> dict[str, Any]:
    m = np.zeros((H, W), np.uint8)
    m[10:40, x0:x1] = 1
    return {"size": [H, W], "counts": mask_utils.encode(np.asfortranarray(m))["counts"].decode()}


def _runs(x0: int, x1: int) -> dict[str, Any]:
    m = np.zeros((H, W), np.uint8)
    m[10:40, x0:x1] = 1
    return {"size": [H, W], "counts": column_runs(m)}


def ytvis_gt() -> dict[str, Any]:
    segs: list[Any] = [None] * N
    segs[0], segs[1], segs[2] = _rle(4, 24), [[5, 10, 25, 10, 25, 40, 5, 40]], _runs(6, 26)
    return {"videos": [{"id": 1, "width": W, "height": H, "length": N,
                        "file_names": [f"clip/{t:05d}.jpg" for t in range(N)]}],
            "categories": [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}],
            "annotations": [{"id": 1, "video_id": 1, "category_id": 1, "iscrowd": 0, "segmentations": segs,
                             "areas": [600 if s is not None else None for s in segs]},
                            {"id": 2, "video_id": 1, "category_id": 2,
                             "segmentations": [_rle(60, 90) for _ in range(N)]}]}


def ytvis_pred() -> list[dict[str, Any]]:
    return [{"video_id": 1, "category_id": 1, "score": 0.9, "segmentations": [_rle(4 + t, 24 + t) for t in range(N)]},
            {"video_id": 1, "category_id": 2, "score": 0.4, "segmentations": [_rle(60, 90)] + [None] * (N - 1)}]


def coco_gt() -> dict[str, Any]:
    return {"images": [{"id": t + 1, "file_name": f"clip/{t:05d}.jpg", "height": H, "width": W} for t in range(N)],
            "categories": [{"id": 1, "name": "cat"}],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "segmentation": _rle(4, 24),
                             "bbox": [4, 10, 20, 30]},
                            {"id": 2, "image_id": 2, "category_id": 1,
                             "segmentation": [[5, 10, 25, 10, 25, 40, 5, 40]]}]}


def coco_pred() -> list[dict[str, Any]]:
    return [{"image_id": 1, "category_id": 1, "score": 0.8, "segmentation": _rle(4, 24), "bbox": [4, 10, 20, 30]},
            {"image_id": 3, "category_id": 1, "score": 0.3, "segmentation": _rle(50, 70)}]


def _info() -> dict[str, Any]:
    return VideoInfo(name="clip", path="/videos/clip.mp4", width=W, height=H, num_frames=N, fps=10.0,
                     source_width=W, source_height=H, source_indices=tuple(range(N))).to_dict()


def _columns(frames: list[int]) -> dict[str, list[Any]]:
    n = len(frames)
    return {"frame": frames, "proposal_index": [0] * n, "track_id": [3] * n, "label": [0] * n,
            "objectness": [0.9] * n, "clip_score": [0.8] * n, "best_prompt": [0] * n, "decision": ["kept"] * n,
            "similarity": [None] * n, "pmf_similarity": [0.5] * n, "box": [[4.0, 10.0, 24.0, 40.0]] * n,
            "curated": [False] * n}


def ytvis_export() -> dict[str, Any]:
    """A YouTube-VIS file with the ``uvis`` extension fields our exporter writes."""
    doc = ytvis_gt()
    doc["videos"][0]["uvis"] = {"name": "clip", "info": _info()}
    doc["annotations"] = [{"id": 1, "video_id": 1, "category_id": 1, "iscrowd": 0,
                           "segmentations": [_rle(4, 24), _rle(5, 25)] + [None] * (N - 2),
                           "uvis": {"track_id": 3, "track_label": 0, "track_score": 0.8,
                                    "instances": _columns([0, 1])}}]
    doc["uvis"] = {"version": "test", "config": config_doc(), "vocabulary": ["cat", "dog"],
                   "prompts": ["a photo of cat", "a photo of dog"]}
    return doc


def coco_export() -> dict[str, Any]:
    """A COCO file with the ``uvis`` extension fields our exporter writes."""
    doc = coco_gt()
    for im in doc["images"]:
        im.update(video_id=1, frame_index=im["id"] - 1, video="clip")
    doc["videos"] = [{"id": 1, "name": "clip"}]
    doc["annotations"] = [{"id": 1, "image_id": 1, "category_id": 1, "iscrowd": 0, "segmentation": _rle(4, 24),
                           "area": 600, "bbox": [4, 10, 20, 30],
                           "uvis": {k: v[0] for k, v in _columns([0]).items()}}]
    doc["uvis"] = {"config": config_doc(), "vocabulary": ["cat"], "prompts": ["a photo of cat"],
                   "videos": {"clip": _info()}}
    return doc


def config_doc() -> dict[str, Any]:
    return Config().replace(labeler__vocabulary=["cat", "dog"]).to_dict()


def _write(path: Path, data: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(data if isinstance(data, str) else json.dumps(data))  # NaN/Infinity allowed on purpose
    return path


@pytest.fixture(scope="module")
def frames_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("frames")
    (root / "clip").mkdir()
    for t in range(N):
        cv2.imwrite(str(root / "clip" / f"{t:05d}.jpg"), np.full((H, W, 3), 30 * t, np.uint8))
    return root


def _cli(args: list[str], *, timeout: float = 120, memory: int = CLI_MEMORY) -> subprocess.CompletedProcess:
    """``python -m uvis ARGS`` in a subprocess limited to ``memory`` bytes of address space."""
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),
               OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (memory, memory))

    return subprocess.run([sys.executable, "-m", "uvis", *args], capture_output=True, text=True, timeout=timeout,
                          env=env, cwd=REPO, preexec_fn=limit)


# ----------------------------------------------------------------------------- regression cases
def _polygon_1e300() -> dict[str, Any]:
    gt = ytvis_gt()
    gt["annotations"][0]["segmentations"][1] = [[5, 10, 1e300, 10, 25, 40, 5, 40]]
    return gt


def _runs_exceed() -> dict[str, Any]:
    gt = ytvis_gt()
    big = np.zeros((4 * H, 4 * W), np.uint8)
    big[5:100, 7:300] = 1
    gt["annotations"][0]["segmentations"][0] = {
        "size": [H, W], "counts": mask_utils.encode(np.asfortranarray(big))["counts"].decode()}
    return gt


def _garbage_pred() -> list[dict[str, Any]]:
    pred = ytvis_pred()
    pred[0]["segmentations"][0] = {"size": [H, W], "counts": "this is not RLE~~~"}
    return pred


HUGE_LENGTH = '{"videos":[{"id":1,"width":9,"height":9,"length":100000000}],"annotations":[],"categories":[]}'

EVAL_CASES = {
    "polygon_1e300": (_polygon_1e300, ytvis_pred,
                      ["annotations[0].segmentations[1][0]: polygon x coordinates", "1e+300"]),
    "runs_exceed_hw": (_runs_exceed, ytvis_pred,
                       ["annotations[0].segmentations[0].counts: compressed RLE runs sum to 73728 pixels but size "
                        "48x96 has 4608"]),
    "garbage_counts": (ytvis_gt, _garbage_pred, ["[0].segmentations[0].counts: compressed RLE 'counts' is garbage"]),
    "length_1e8": (lambda: HUGE_LENGTH, lambda: [], ["videos[0].length: must be <= 100000 (got 100000000)"]),
    "deep_nesting": (lambda: "[" * 50_000 + "]" * 50_000, lambda: [], ["nests JSON 50000 levels deep"]),
}


@pytest.mark.parametrize("case", sorted(EVAL_CASES))
def test_eval_cli_refuses_with_exit_2(tmp_path, case):
    make_gt, make_pred, expected = EVAL_CASES[case]
    gt = _write(tmp_path / "gt.json", make_gt())
    pred = _write(tmp_path / "pred.json", make_pred())
    if case == "length_1e8":
        assert gt.stat().st_size <= 113
    t0 = time.monotonic()
    proc = _cli(["eval", "--gt", str(gt), "--pred", str(pred)], timeout=60, memory=2 << 30)
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
    assert time.monotonic() - t0 < 60
    for text in expected:
        assert text in proc.stderr, proc.stderr


IMPORT_CASES = {
    "polygon_1e300": (_polygon_1e300, "annotations[0].segmentations[1][0]: polygon x coordinates"),
    "garbage_counts": (lambda: _with(ytvis_gt(), lambda d: d["annotations"][1]["segmentations"][3].update(
        counts="1234garbage")), "annotations[1].segmentations[3].counts: compressed RLE"),
    "file_names_outside": (lambda: _with(ytvis_gt(), lambda d: d["videos"][0]["file_names"].__setitem__(
        2, "../outside/00002.jpg")), "videos[0].file_names[2]: file names must be relative paths inside the image "
                                     "root (no '..', not absolute) (got '../outside/00002.jpg')"),
}


def _with(doc: Any, change: Callable[[Any], Any]) -> Any:
    change(doc)
    return doc


@pytest.mark.parametrize("case", sorted(IMPORT_CASES))
def test_import_cli_refuses_with_exit_2(tmp_path, frames_dir, case):
    make, expected = IMPORT_CASES[case]
    gt = _write(tmp_path / "gt.json", make())
    ws = tmp_path / "ws"
    proc = _cli(["import", "--workspace", str(ws), "--ytvis", str(gt), "--frames", str(frames_dir)])
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
    assert expected in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    assert not (ws / "ground_truth").exists()  # nothing written for a refused file


def test_templates_with_other_fields_are_refused_in_validation():
    with pytest.raises(ConfigError, match=r"labeler\.templates\[1\] 'a \{\} photo \{x\}': may contain only '\{\}'"):
        Config.from_dict({"labeler": {"templates": ["a photo of {}", "a {} photo {x}"]}})
    with pytest.raises(ConfigError, match=r"template 'a \{\} photo \{x\}' may contain only"):
        handlers.parse_templates("a photo of {}\na {} photo {x}")
    ok = Config.from_dict({"labeler": {"templates": ["a {{literal}} {}"], "vocabulary": ["cat"]}})
    assert ok.prompts() == ["a {literal} cat"]


# ----------------------------------------------------------------------------- fuzzing
_SWAPS: list[Any] = ["x", [], {}, None, True, 3, -1, 1.5, 1e300, -1e300, 10 ** 30, 2 ** 63, 100_000_000,
                     float("nan"), float("inf"), "../../etc/passwd", [[0, 0, 1e300, 0, 5, 5]]]


def _nodes(doc: Any, path: tuple = ()) -> list[tuple]:
    out = [path]
    if isinstance(doc, dict):
        for k, v in doc.items():
            out += _nodes(v, path + (k,))
    elif isinstance(doc, list):
        for i, v in enumerate(doc[:12]):
            out += _nodes(v, path + (i,))
    return out


def _get(doc: Any, path: tuple) -> Any:
    for k in path:
        doc = doc[k]
    return doc


def mutate(doc: Any, rng: random.Random) -> tuple[Any, str]:
    """One random mutation of a deep copy of ``doc``; returns (new doc, description)."""
    doc = copy.deepcopy(doc)
    paths = _nodes(doc)
    path = rng.choice(paths[1:]) if len(paths) > 1 else ()
    parent, key = (_get(doc, path[:-1]), path[-1]) if path else (None, None)
    value = _get(doc, path)
    op = rng.choice(["swap", "swap", "swap", "delete", "nest", "length", "rle", "rle", "counts", "size"])
    if op == "delete" and isinstance(parent, dict):
        del parent[key]
    elif op == "delete" and isinstance(parent, list):
        parent.pop(key)
    elif op == "nest" and parent is not None:
        depth = rng.choice([3, 40, 200])
        for _ in range(depth):
            value = [value]
        parent[key] = value
    elif op == "length" and isinstance(value, list):
        if value and rng.random() < 0.5:
            value.pop()
        else:
            value.extend(copy.deepcopy(value[:1]) * rng.choice([1, 5]) or [None])
    elif op in ("rle", "counts", "size"):
        rles = [p for p in paths if isinstance(_get(doc, p), dict) and "counts" in _get(doc, p)]
        if not rles:
            return mutate(doc, rng)
        rle = _get(doc, rng.choice(rles))
        c = rle["counts"]
        if op == "size":
            rle["size"] = rng.choice([[H, W + 1], [H * 10, W], [0, W], [-H, W], [H], [1e300, W], "HxW",
                                      [10 ** 9, 10 ** 9]])
        elif isinstance(c, str) and len(c) > 1:
            rle["counts"] = rng.choice([c[: len(c) // 2], c + c, c[::-1], "~" * len(c), c.replace(c[1], "\\"),
                                        "", c[:-1], "0" * 500])
        elif not isinstance(c, list):
            rle["counts"] = rng.choice(["", "0" * 500, [H * W], [H * W + 1]])
        elif all(isinstance(x, int) for x in c):
            rle["counts"] = rng.choice([c[:-1], c + [5], [-x for x in c], [x * 1000 for x in c], [1.5] * 4, c[::-1]])
        else:
            rle["counts"] = rng.choice([c[:-1], c + [5], "0" * 500])
    elif parent is not None:
        parent[key] = copy.deepcopy(rng.choice(_SWAPS))
    else:
        return rng.choice(_SWAPS), "top-level swap"
    return doc, f"{op} at {'/'.join(map(str, path))}"


def _fuzz_corpus(n_per_kind: int) -> list[tuple[str, Any, str]]:
    rng = random.Random(SEED)
    bases = {"ytvis_gt": ytvis_gt(), "ytvis_pred": ytvis_pred(), "coco_gt": coco_gt(), "coco_pred": coco_pred(),
             "config": config_doc(), "ytvis_export": ytvis_export(), "coco_export": coco_export()}
    out = []
    for kind, base in bases.items():
        for _ in range(n_per_kind):
            doc, what = base, ""
            for _ in range(rng.choice([1, 1, 2, 3])):
                doc, w = mutate(doc, rng)
                what += w + "; "
            out.append((kind, doc, what))
    return out


def _run_library(kind: str, path: Path, valid: dict[str, Path], frames: Path) -> str:
    """Feed one document to every reader of its kind, as the CLI does; 'ok' or the error message."""
    if kind == "ytvis_gt":
        gt = load_ground_truth(path)
        results = load_results(valid["ytvis_pred"], gt)
        frames_ = frames_from_ytvis(gt, results)
        frame_f1(frames_.gt, frames_.pred)
        evaluate_ytvis(gt, results)
        read_ytvis_instances(path)
        load_ytvis_ground_truth(path, frames)
        FileProposer(path, "clip").propose(np.zeros((H, W, 3), np.uint8), 0)
    elif kind == "ytvis_pred":
        gt = load_ground_truth(valid["ytvis_gt"])
        results = load_results(path, gt)
        evaluate_ytvis(gt, results, class_agnostic=True)
        read_ytvis_predictions(path, valid["ytvis_gt"])
        FileProposer(path, 1, index=valid["ytvis_gt"]).propose(np.zeros((H, W, 3), np.uint8), 0)
    elif kind == "ytvis_export":
        read_ytvis_instances(path)
        FileProposer(path, "clip").propose(np.zeros((H, W, 3), np.uint8), 1)
    elif kind in ("coco_gt", "coco_export"):
        read_coco_instances(path)
        FileProposer(path, "clip").propose(np.zeros((H, W, 3), np.uint8), 0)
    elif kind == "coco_pred":
        read_coco_predictions(path, valid["coco_gt"])
        FileProposer(path, "clip", index=valid["coco_gt"]).propose(np.zeros((H, W, 3), np.uint8), 0)
    else:
        data = json.loads(path.read_text())
        Config.from_dict(data).prompts()
    return "ok"


def _valid_files(root: Path) -> dict[str, Path]:
    return {"ytvis_gt": _write(root / "valid_gt.json", ytvis_gt()),
            "ytvis_pred": _write(root / "valid_pred.json", ytvis_pred()),
            "coco_gt": _write(root / "valid_coco.json", coco_gt())}


def test_fuzzed_documents_succeed_or_raise_bad_input(tmp_path, frames_dir):
    valid = _valid_files(tmp_path)
    bases = {"ytvis_gt": ytvis_gt, "ytvis_pred": ytvis_pred, "coco_gt": coco_gt, "coco_pred": coco_pred,
             "config": config_doc, "ytvis_export": ytvis_export, "coco_export": coco_export}
    for kind, make in bases.items():  # the bases themselves pass
        assert _run_library(kind, _write(tmp_path / f"base_{kind}.json", make()), valid, frames_dir) == "ok"
    exported = read_ytvis_instances(tmp_path / "base_ytvis_export.json")["clip"]
    assert exported.instances.track_id.tolist() == [3, 3] and exported.prompts == ["a photo of cat", "a photo of dog"]
    corpus = _fuzz_corpus(50)
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    outcomes: dict[str, list[int]] = {}
    slowest = 0.0
    for i, (kind, doc, what) in enumerate(corpus):
        path = _write(tmp_path / "fuzz" / f"{i:04d}.json", doc)
        t0 = time.perf_counter()
        try:
            _run_library(kind, path, valid, frames_dir)
            ok = 1
        except BadInputError as exc:
            assert str(exc), what
            ok = 0
        except Exception as exc:  # noqa: BLE001 - the point of the test
            pytest.fail(f"document {i} ({kind}: {what}) raised {type(exc).__name__}: {exc}")
        dt = time.perf_counter() - t0
        slowest = max(slowest, dt)
        assert dt < 10, f"document {i} ({kind}: {what}) took {dt:.1f} s"
        outcomes.setdefault(kind, [0, 0])[ok] += 1
    grown = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0) * 1024
    assert grown < 1 << 30, f"peak memory grew by {grown / 2**20:.0f} MiB"
    print(f"fuzz: {len(corpus)} documents, [refused, accepted] per kind {outcomes}, slowest {slowest:.2f} s")
    assert all(r > 0 for r, _ in outcomes.values())  # every kind produced refusals, not only successes


def test_fuzzed_documents_through_the_cli(tmp_path):
    valid = _valid_files(tmp_path)
    rng = random.Random(SEED + 1)
    sample = [c for c in _fuzz_corpus(20) if c[0] in ("ytvis_gt", "ytvis_pred")]
    for i, (kind, doc, what) in enumerate(rng.sample(sample, 6)):
        path = _write(tmp_path / f"cli_{i}.json", doc)
        gt, pred = (path, valid["ytvis_pred"]) if kind == "ytvis_gt" else (valid["ytvis_gt"], path)
        proc = _cli(["eval", "--gt", str(gt), "--pred", str(pred), "--level", "both"], timeout=90)
        assert proc.returncode in (0, 2), f"{kind}: {what}: exit {proc.returncode}\n{proc.stderr[-1500:]}"
        if proc.returncode == 2:
            assert proc.stderr.startswith("error: ") and "Traceback" not in proc.stderr, proc.stderr


def test_app_evaluate_handler_survives_malformed_ground_truth(tmp_path):
    docs = [("polygon_1e300", _polygon_1e300()), ("runs_exceed", _runs_exceed()), ("length_1e8", HUGE_LENGTH),
            ("deep", "[" * 50_000 + "]" * 50_000), ("valid", ytvis_gt())]
    rng = random.Random(SEED + 2)
    docs += [(f"fuzz{i}: {what}", doc) for i, (_, doc, what) in
             enumerate(rng.sample([c for c in _fuzz_corpus(40) if c[0] == "ytvis_gt"], 30))]
    paths = [str(_write(tmp_path / "docs" / f"gt_{i:03d}.json", doc)) for i, (_, doc) in enumerate(docs)]
    listing = _write(tmp_path / "list.json", paths)
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run([sys.executable, str(REPO / "tests" / "app_eval_driver.py"), str(tmp_path / "app"),
                           str(listing)], capture_output=True, text=True, timeout=300, env=env, cwd=REPO)
    assert proc.returncode == 0, (proc.returncode, proc.stderr[-3000:])  # the app process survived every file
    lines = [json.loads(ln) for ln in proc.stdout.splitlines() if ln.startswith("{")]
    assert lines[-1] == {"done": len(docs)}
    replies = {docs[i][0]: r for i, r in enumerate(lines[:-1])}
    assert "polygon x coordinates" in replies["polygon_1e300"]["reply"]
    assert "annotations[0].segmentations[1][0]" in replies["polygon_1e300"]["reply"]
    assert "runs sum to 73728 pixels" in replies["runs_exceed"]["reply"]
    assert "videos[0].length: must be <= 100000" in replies["length_1e8"]["reply"]
    assert "nests JSON" in replies["deep"]["reply"]
    assert replies["valid"]["reply"].startswith("| class |")
    for name, r in replies.items():
        assert r["seconds"] < 30, (name, r)
        assert "internal error" not in r["reply"], (name, r["reply"])
        assert r["reply"].startswith("| class |") or r["reply"].startswith("⚠️"), (name, r["reply"])
