"""Self-training rounds (DESIGN §1.9, after AutoQ-VIS): round k+1's proposals are round k's
model predictions on the workspace's videos, decided and curated like any proposals.

Round 1 is the workspace's own videos (the pseudo-labels of ``python -m uvis label``). Round k
(k >= 2) is made by ``python -m uvis predict --model RUN_DIR --workspace W --round k``: the
model trained on round k-1 predicts every round-(k-1) video (read with the settings its cache
was made with, so frames stay aligned with the first round and its ground truth), and the
predictions are imported as the video ``<base>-r<k>`` through the ``file`` proposer. The
workspace's ``rounds.json`` records, per round, the model and the video of each base video::

    {"rounds": {"2": {"model": "runs/r1", "videos": {"vtest": "vtest-r2"}, "results": "...",
                      "created": 1796180000.0}}}

``python -m uvis train --workspace W --round k`` trains on round k's videos only. The round
table (:func:`round_table`, ``python -m uvis rounds --workspace W``, the app's Train tab) shows
per round the videos, kept instances and tracks under the current config, frame-level mF1
against the imported ground truth of the base videos, and the class-agnostic YouTube-VIS AP
of the predictions that made the round (the previous round's model) where ground truth exists.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from uvis.errors import BadInputError

ROUNDS_FILE = "rounds.json"


def round_video_name(base: str, k: int) -> str:
    return f"{base}-r{k}"


def load_rounds(workspace: str | Path) -> dict[int, dict[str, Any]]:
    """Rounds >= 2 recorded in the workspace (round -> entry)."""
    path = Path(workspace) / ROUNDS_FILE
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
        return {int(k): v for k, v in data.get("rounds", {}).items()}
    except (ValueError, AttributeError) as exc:
        raise BadInputError(f"{path} is not a rounds file ({exc}); move it away to start the rounds afresh") from exc


def _save_rounds(workspace: str | Path, rounds: dict[int, dict[str, Any]]) -> None:
    from uvis.fsutil import atomic_write_json

    atomic_write_json(Path(workspace) / ROUNDS_FILE, {"rounds": {str(k): v for k, v in sorted(rounds.items())}},
                      indent=1)


def round_videos(workspace: str | Path, k: int, names: list[str]) -> dict[str, str]:
    """Base video -> workspace video of round ``k`` (``names``: the workspace's videos)."""
    rounds = load_rounds(workspace)
    made = {v for r in rounds.values() for v in r.get("videos", {}).values()}
    if k == 1:
        return {n: n for n in names if n not in made}
    if k not in rounds:
        known = ", ".join(str(r) for r in [1, *sorted(rounds)])
        raise BadInputError(f"workspace {workspace} has no round {k} (rounds: {known}); make it with "
                            f"python -m uvis predict --model RUN_DIR --workspace {workspace} --round {k}")
    return {b: v for b, v in rounds[k]["videos"].items() if v in names}


def latest_round(workspace: str | Path) -> int:
    return max([1, *load_rounds(workspace)])


def resolve_run(model: str | Path) -> tuple[Path, list[str] | None]:
    """(weights file, class names or None) for ``--model``: a training run folder (its
    ``model_final.pth``, else its last checkpoint's weights) or a weights file / registry name."""
    p = Path(model)
    if not p.is_dir():
        return p, None
    meta_path = p / "train_config.json"
    if not meta_path.is_file():
        raise BadInputError(f"--model {p}: a folder, but not a training run (no train_config.json)")
    classes = list(json.loads(meta_path.read_text())["classes"])
    final = p / "model_final.pth"
    if final.is_file():
        return final, classes
    from uvis.vis.trainer import last_checkpoint

    ckpt = last_checkpoint(p)
    if ckpt is None:
        raise BadInputError(f"--model {p}: the run has no model_final.pth and no checkpoint yet")
    return ckpt, classes


def round_args(workspace: str | Path, model: str | Path, k: int, *, device: str = "cpu", top_k: int = 10,
               tracking: str = "minvis") -> Any:
    """The ``predict --round`` arguments :func:`make_round` reads (for callers other than the CLI)."""
    import argparse

    return argparse.Namespace(workspace=str(workspace), model=str(model), round=int(k), inputs=[], device=device,
                              vocabulary=None, quiet=True, top_k=top_k, tracking=tracking, config=None,
                              embedder=None)


def make_round(args: Any) -> int:
    """``predict --round k``: predict round k-1's videos with ``args.model``, import as round k."""
    from uvis.export.frames import reading_parameters
    from uvis.fsutil import atomic_write_json
    from uvis.vis import cli as predict_cli
    from uvis.vis.checkpoint import load_model
    from uvis.workspace import Workspace

    k = int(args.round)
    if k < 2:
        raise BadInputError(f"--round must be >= 2 (round 1 is the workspace's own pseudo-labels), got {k}")
    if not args.workspace:
        raise BadInputError("--round needs --workspace W (the workspace whose videos are predicted)")
    if args.inputs:
        raise BadInputError("--round predicts the workspace's videos; give no video paths")
    root = Path(args.workspace)
    if not (root / "uvis.sqlite").is_file():
        raise BadInputError(f"workspace not found: {root}")
    rounds = load_rounds(root)
    if k in rounds:
        raise BadInputError(f"round {k} already exists in {root} ({ROUNDS_FILE}); predict round {max(rounds) + 1}")
    if k - 1 not in rounds and k != 2:
        raise BadInputError(f"round {k - 1} does not exist in {root}; predict round {latest_round(root) + 1}")
    ws = Workspace(root)
    try:
        prev = round_videos(root, k - 1, ws.video_names())
        infos = {b: ws.load_cache(v).info for b, v in prev.items()}
    finally:
        ws.close()
    if not prev:
        raise BadInputError(f"round {k - 1} of {root} has no videos")
    weights, classes = resolve_run(args.model)
    model = load_model(str(weights), device=predict_cli._device(args.device), progress=not args.quiet)
    vocabulary = ",".join(classes) if classes is not None else args.vocabulary
    classes = predict_cli.vocabulary_for(str(weights), model.num_classes, vocabulary)
    out = root / "rounds" / f"r{k}" / "results.json"
    results: list[dict[str, Any]] = []
    videos: list[dict[str, Any]] = []
    done = []
    for video_id, (base, info) in enumerate(infos.items(), start=1):
        stride, max_side = reading_parameters(info)
        vcfg = _VideoSettings(stride=stride, max_frames=info.num_frames, max_side=max_side)
        pinfo, preds = predict_cli._predict_one(model, Path(info.path), vcfg, args)
        results.extend(predict_cli.results_entries(video_id, preds))
        videos.append({**predict_cli.videos_entry(video_id, pinfo), "name": base})
        done.append((base, Path(info.path), pinfo, vcfg))
        print(f"{base}: {pinfo.num_frames} frames, {len(preds)} predictions")
    atomic_write_json(predict_cli.index_path(out), {
        "videos": videos, "annotations": [],
        "categories": [{"id": i + 1, "name": c, "supercategory": "object"} for i, c in enumerate(classes)]})
    atomic_write_json(out, results)
    made: dict[str, str] = {}
    for base, path, pinfo, vcfg in done:
        names = predict_cli.import_predictions(args, out, [(path, pinfo)], vcfg, suffix=f"-r{k}")
        made[base] = names[0]
    rounds[k] = {"model": str(Path(args.model).resolve()), "results": str(out.resolve()), "videos": made,
                 "created": time.time()}
    _save_rounds(root, rounds)
    print(f"round {k}: {len(made)} video(s) imported into {root} as {', '.join(made.values())}")
    return 0


@dataclass(frozen=True)
class _VideoSettings:
    """What ``predict``'s helpers read of a video config: stride, max_frames, max_side."""

    stride: int = 1
    max_frames: int | None = None
    max_side: int | None = None


# --------------------------------------------------------------------------- the table
@dataclass
class RoundRow:
    """One round: ``videos`` count, ``kept`` instances and ``tracks`` under the current config,
    ``mf1`` frame-level mF1 against ground truth (None without), ``ap`` class-agnostic
    YouTube-VIS AP of the predictions that made the round (None for round 1 / without GT),
    ``model`` the run that made it."""

    round: int
    videos: int
    kept: int
    tracks: int
    mf1: float | None
    ap: float | None
    model: str


def round_table(workspace: str | Path, config_path: str | Path | None = None) -> list[RoundRow]:
    """The round table of a workspace (see the module docstring)."""
    from uvis.eval.workspace_eval import f1_for_videos
    from uvis.eval.ytvis_io import load_ground_truth
    from uvis.pipeline import open_project
    from uvis.workspace import Workspace

    root = Path(workspace)
    ws = Workspace(root)
    try:
        names = ws.video_names()
        cfg = ws.current_config(config_path)
        results = open_project(ws).decide(cfg) if names else {}
        gts = {r.video: r for r in ws.db.ground_truths()}
    finally:
        ws.close()
    rounds = load_rounds(root)
    rows = []
    for k in [1, *sorted(rounds)]:
        vids = round_videos(root, k, names)
        res = {b: results[v] for b, v in vids.items() if v in results}
        kept = sum(int(r.kept.sum()) for r in res.values())
        tracks = sum(len(r.tracks) for r in res.values())
        mf1 = _mean_f1(res, gts, f1_for_videos, load_ground_truth)
        ap = _round_ap(rounds[k], gts, load_ground_truth) if k in rounds else None
        rows.append(RoundRow(k, len(vids), kept, tracks, mf1, ap, rounds.get(k, {}).get("model", "pseudo-labels")))
    return rows


def _mean_f1(res: dict[str, Any], gts: dict[str, Any], f1_for_videos: Any, load_gt: Any) -> float | None:
    """mF1 over the round's videos with ground truth (TP/FP/FN pooled over videos per class name);
    the result of round k's video is evaluated under its base video's ground-truth name."""
    pooled: dict[str, list[int]] = {}
    frames = 0
    for base, r in res.items():
        rec = gts.get(base)
        if rec is None:
            continue
        gt = load_gt(rec.path)
        gt_name = next(iter(gt.video_by_name()), base)
        f1, names, _notes = f1_for_videos({gt_name: r}, gt)
        frames += f1.num_frames
        for cid, c in f1.per_class.items():
            acc = pooled.setdefault(names.get(cid, str(cid)), [0, 0, 0, 0])
            acc[0] += c.tp
            acc[1] += c.fp
            acc[2] += c.fn
            acc[3] += int(c.in_gt)
    present = [v for v in pooled.values() if v[3]]
    if not present:
        return None
    return float(sum(2 * tp / max(2 * tp + fp + fn, 1) for tp, fp, fn, _ in present) / len(present))


def _round_ap(entry: dict[str, Any], gts: dict[str, Any], load_gt: Any) -> float | None:
    """Class-agnostic AP of the round's predictions on base videos with ground truth whose
    processed frames are the annotated frames (same count and size); None otherwise."""
    from uvis.eval.ytvis_ap import evaluate_ytvis

    results_path = Path(entry.get("results", ""))
    index_path = results_path.with_name(results_path.stem + ".videos.json")
    if not results_path.is_file() or not index_path.is_file():
        return None
    results = json.loads(results_path.read_text())
    index = {v["name"]: v for v in json.loads(index_path.read_text())["videos"]}
    gt_videos, gt_anns, preds = [], [], []
    for base, v in index.items():
        rec = gts.get(base)
        if rec is None:
            continue
        gt_json = json.loads(Path(rec.path).read_text())
        gv = next((x for x in gt_json["videos"] if x["id"] == rec.source_video_id), None)
        if gv is None or (gv["height"], gv["width"]) != (v["height"], v["width"]) or \
                int(gv.get("length", len(gv.get("file_names", [])))) != v["length"]:
            continue
        new_id = len(gt_videos) + 1
        gt_videos.append({**gv, "id": new_id})
        gt_anns += [{**a, "id": len(gt_anns) + i + 1, "video_id": new_id, "category_id": 1}
                    for i, a in enumerate(x for x in gt_json["annotations"] if x["video_id"] == gv["id"])]
        preds += [{**p, "video_id": new_id, "category_id": 1} for p in results if p["video_id"] == v["id"]]
    if not gt_videos:
        return None
    gt = {"videos": gt_videos, "annotations": gt_anns, "categories": [{"id": 1, "name": "object"}]}
    return float(evaluate_ytvis(gt, preds, class_agnostic=True).stats["AP"])


def format_round_table(rows: list[RoundRow]) -> str:
    def num(x: float | None) -> str:
        return "-" if x is None else f"{x:.3f}"

    lines = [f"{'round':>5}  {'videos':>6}  {'kept':>6}  {'tracks':>6}  {'mF1':>6}  {'AP':>6}  model",
             "-" * 60]
    for r in rows:
        lines.append(f"{r.round:>5}  {r.videos:>6}  {r.kept:>6}  {r.tracks:>6}  {num(r.mf1):>6}  {num(r.ap):>6}  "
                     f"{r.model}")
    return "\n".join(lines)
