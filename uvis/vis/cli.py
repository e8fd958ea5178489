"""``python -m uvis predict``: run a MinVIS model on videos, write YouTube-VIS results, import them.

    python -m uvis predict --model NAME_OR_PATH VIDEO_OR_FRAME_DIR... [--out results.json]
        [--workspace W] [--device cpu|cuda] [--tracking minvis|memory] [--top-k 10]
        [--short-side 360] [--vocabulary ytvis2019|ytvis2021|ovis|"a,b,..."] [--max-frames N]

Writes the results list (``[{video_id, category_id, score, segmentations}]``, one entry per
prediction, ``category_id`` = label + 1, masks as compressed RLE at the processed frame size) and
beside it ``<out stem>.videos.json`` (a YouTube-VIS dataset file without annotations naming the
videos: ``videos[{id, name, width, height, length, file_names}]`` and the categories). With
``--workspace`` every video is also imported as ``<name>-vis`` through the ``file`` proposer, so
the app shows the model's tracks beside the pseudo-labels. Exit 2 (with a message) for a bad
checkpoint, a class count that does not fit the vocabulary, weights missing offline, an
unreadable video or an existing output file (pass ``--overwrite``).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from uvis.errors import BadInputError

IMPORT_SUFFIX = "-vis"
"""Suffix of the workspace video that holds a model's predictions for a video."""
DEFAULT_VOCABULARY = {"minvis_ytvis19_R50": "ytvis2019", "minvis_ytvis21_R50": "ytvis2021",
                      "minvis_ovis_R50": "ovis"}


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``predict`` on the sub-parsers of ``python -m uvis``."""
    p = sub.add_parser("predict", help="run a MinVIS video instance segmentation model on videos",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("inputs", nargs="*", help="video files (mp4/avi/webm/mkv) or frame folders")
    p.add_argument("--model", required=True,
                   help="weights: registry name (minvis_ytvis19_R50, ...; `weights list`) or a local .pth/.pkl")
    p.add_argument("--out", type=Path, default=Path("results.json"), help="results JSON (default results.json)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    p.add_argument("--workspace", "-w", help="also import the predictions into this workspace as proposals")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1 ... (AMP float16 on CUDA)")
    p.add_argument("--tracking", choices=["minvis", "memory"], default="minvis",
                   help="minvis: match each frame to the previous one (reference); memory: tracking memory "
                        "with the config's tracker.memory_lambda")
    p.add_argument("--top-k", type=int, default=10, help="predictions per video (default 10)")
    p.add_argument("--short-side", type=int, help="test-time short side (default 360)")
    p.add_argument("--vocabulary", help="class names: preset (ytvis2019, ytvis2021, ovis) or comma-separated")
    p.add_argument("--max-frames", type=int, help="process at most N frames per video")
    p.add_argument("--stride", type=int, help="keep every N-th frame")
    p.add_argument("--embedder", choices=["clip", "efficientnet"], help="embedder for the workspace import")
    p.add_argument("--config", help="config (video reading, tracker lambda, workspace import); "
                                    "default: the workspace's latest, else the defaults")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--round", type=int, help="self-training (uvis.vis.rounds): predict the workspace's videos of the "
                                             "previous round with --model (a training run folder or weights) and "
                                             "import them as this round's proposals; no video paths")
    p.set_defaults(func=run)
    return p


def vocabulary_for(model: str, num_classes: int, vocabulary: str | None) -> list[str]:
    """Class names for the model's ``num_classes`` outputs; raises BadInputError on a mismatch."""
    from uvis.config import load_preset, vocabulary_presets

    name = vocabulary or DEFAULT_VOCABULARY.get(Path(model).stem) or ("ytvis2019" if num_classes == 40 else None)
    if name is None:
        raise BadInputError(f"model {model} has {num_classes} classes: name them with --vocabulary "
                            "(a preset or a comma-separated list of that many names)")
    classes = load_preset(name) if name in vocabulary_presets() else [c.strip() for c in name.split(",") if c.strip()]
    if len(classes) != num_classes:
        raise BadInputError(f"model {model} has {num_classes} classes but the vocabulary {name!r} has "
                            f"{len(classes)}; pass --vocabulary with {num_classes} names (or the matching preset)")
    return classes


def _device(name: str) -> str:
    import torch

    if name.startswith("cuda") and not torch.cuda.is_available():
        raise BadInputError(f"--device {name}: CUDA is not available on this machine; use --device cpu")
    try:
        torch.device(name)
    except RuntimeError as exc:
        raise BadInputError(f"--device {name!r} is not a torch device ({exc})") from exc
    return name


def _video_config(args: argparse.Namespace, base: Any) -> Any:
    from dataclasses import replace

    changes = {k: v for k, v in (("max_frames", args.max_frames), ("stride", args.stride)) if v is not None}
    return replace(base, **changes)


def _base_config(args: argparse.Namespace) -> Any:
    """``--config``, else the workspace's latest config (when it exists), else the defaults."""
    from uvis.config import Config

    if args.config:
        return Config.load(args.config)
    if args.workspace and Path(args.workspace, "uvis.sqlite").is_file():
        from uvis.workspace import Workspace

        ws = Workspace(args.workspace)
        try:
            return ws.current_config()
        finally:
            ws.close()
    return Config()


def _predict_one(model: Any, path: Path, vcfg: Any, args: argparse.Namespace,
                 memory_lambda: float | None = None) -> tuple[Any, list[dict[str, Any]]]:
    from uvis.video import open_video

    with open_video(path, stride=vcfg.stride, max_frames=vcfg.max_frames, max_side=vcfg.max_side) as reader:
        info = reader.info
        bar = None
        if not args.quiet:
            from tqdm import tqdm

            bar = tqdm(total=info.num_frames, unit="frame", desc=info.name, file=sys.stderr)
        try:
            preds = model.predict_video((frame for _, frame in reader.frames()), top_k=args.top_k,
                                        tracking=args.tracking, memory_lambda=memory_lambda,
                                        progress=None if bar is None else (lambda n: bar.update(n - bar.n)))
        finally:
            if bar is not None:
                bar.close()
    return info, preds


def results_entries(video_id: int, preds: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """YouTube-VIS results entries of one video's predictions (``category_id`` = label + 1)."""
    return [{"video_id": video_id, "category_id": p["label"] + 1, "score": p["score"],
             "segmentations": p["masks"]} for p in preds]


def videos_entry(video_id: int, info: Any) -> dict[str, Any]:
    """The ``videos[]`` entry describing one processed video."""
    from uvis.export.frames import frame_file_name

    return {"id": video_id, "name": info.name, "width": info.width, "height": info.height,
            "length": info.num_frames, "file_names": [frame_file_name(info.name, t) for t in range(info.num_frames)]}


def index_path(out: Path) -> Path:
    """The videos file written beside the results: ``<stem>.videos.json``."""
    return out.with_name(out.stem + ".videos.json")


def run(args: argparse.Namespace) -> int:
    """Carry out ``predict``; returns the exit code (errors are raised as BadInputError)."""
    from uvis.formats.ytvis import write_ytvis_dataset, write_ytvis_results
    from uvis.video import find_videos
    from uvis.vis.checkpoint import load_model
    from uvis.vis.config import MinVISConfig

    if args.top_k < 1:
        raise BadInputError(f"--top-k must be >= 1, got {args.top_k}")
    if args.round is not None:
        from uvis.vis.rounds import make_round

        return make_round(args)
    if not args.inputs:
        raise BadInputError("give the videos to predict (or --workspace W --round K)")
    out: Path = args.out
    for target in (out, index_path(out)):
        if target.exists() and not args.overwrite:
            raise BadInputError(f"{target} exists; pass --overwrite to replace it or choose another --out")
    inputs = find_videos(args.inputs)
    device = _device(args.device)
    from uvis import weights

    entry = weights.lookup(args.model)
    if entry is not None and entry.notice:
        print(f"note: {entry.notice}", file=sys.stderr)
    cfg = MinVISConfig() if args.short_side is None else MinVISConfig(test_short_side=args.short_side)
    model = load_model(args.model, device=device, cfg=cfg, progress=not args.quiet)
    classes = vocabulary_for(args.model, model.num_classes, args.vocabulary)
    base = _base_config(args)
    vcfg = _video_config(args, base.video)
    results: list[dict[str, Any]] = []
    videos: list[dict[str, Any]] = []
    infos = []
    for video_id, path in enumerate(inputs, start=1):
        info, preds = _predict_one(model, path, vcfg, args, base.tracker.memory_lambda)
        results.extend(results_entries(video_id, preds))
        videos.append(videos_entry(video_id, info))
        infos.append((path, info))
        print(f"{info.name}: {info.num_frames} frames, {len(preds)} predictions "
              f"(best {preds[0]['score']:.3f} {classes[preds[0]['label']]})" if preds else
              f"{info.name}: {info.num_frames} frames, no predictions")
    out.parent.mkdir(parents=True, exist_ok=True)
    write_ytvis_dataset(index_path(out), {
        "info": {"description": f"videos of the predictions in {out.name} (model {args.model})"},
        "videos": videos, "annotations": [],
        "categories": [{"id": i + 1, "name": c, "supercategory": "object"} for i, c in enumerate(classes)]})
    write_ytvis_results(out, results)
    print(f"wrote {len(results)} predictions for {len(videos)} video(s) to {out} (videos: {index_path(out)})")
    if args.workspace:
        import_predictions(args, out, infos, vcfg)
    return 0


def import_predictions(args: argparse.Namespace, out: Path, infos: list[tuple[Path, Any]], vcfg: Any,
                       suffix: str = IMPORT_SUFFIX) -> list[str]:
    """Label every video again into the workspace as ``<name><suffix>`` (``-vis``; ``-r<k>`` for a
    self-training round) with the ``file`` proposer serving the predictions (class-agnostic,
    objectness = the prediction's score), then decide with the workspace's config (its
    vocabulary, embedder, filters and tracker). Returns the workspace video names."""
    from uvis.config import Config
    from uvis.pipeline import Runner, open_project
    from uvis.proposers.file import FileProposer
    from uvis.stats import format_counts
    from uvis.workspace import Workspace

    ws = Workspace(args.workspace)
    try:
        cfg = Config.load(args.config) if args.config else ws.current_config()
        data = cfg.to_dict()
        data["video"] = {**data["video"], "max_frames": vcfg.max_frames, "stride": vcfg.stride}
        data["proposer"] = {**data["proposer"], "backend": "file", "file": str(out.resolve()),
                            "file_index": str(index_path(out).resolve())}
        if args.embedder:
            data["embedder"] = {**data["embedder"], "backend": args.embedder}
        cfg = Config.from_dict(data)

        def factory(video: str, info: Any) -> FileProposer:
            return FileProposer(out, video[: -len(suffix)], index=index_path(out))

        runner = Runner(ws, cfg, proposer_factory=factory)
        names = []
        for path, info in infos:
            cache = runner.label_video(path, name=info.name + suffix)
            names.append(cache.info.name)
        results = open_project(ws).decide(cfg)
        print(format_counts({n: results[n] for n in names if n in results}))
        for n in names:
            r = results[n]
            print(f"{n}: imported into {ws.root}: {len(r.instances)} proposals, {int(r.kept.sum())} kept, "
                  f"{len(r.tracks)} tracks")
    finally:
        ws.close()
    return names
