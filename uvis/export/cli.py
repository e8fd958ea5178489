"""``python -m uvis export`` and ``python -m uvis import``.

    python -m uvis export --workspace W [--video NAME ...] --to fiftyone --dataset NAME [--overwrite|--append]
    python -m uvis export --workspace W --to ytvis --out FILE.json [--results FILE.json] [--frames DIR] [--overwrite]
    python -m uvis export --workspace W --to coco --out DIR [--overwrite]
    python -m uvis import --workspace W --ytvis FILE.json --frames DIR
    python -m uvis import --workspace W --fiftyone DATASET [--dry-run]

Exports decide with the workspace's latest saved config (or ``--config FILE``) over
all the workspace's videos (the prototype memory is project-wide), then write the
selected videos.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any, Callable

from uvis.errors import BadInputError


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register the ``export`` and ``import`` sub-commands."""
    e = sub.add_parser("export", help="export decided pseudo-labels to FiftyOne, YouTube-VIS or COCO JSON",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    e.add_argument("--workspace", "-w", default="workspace", help="workspace folder (default ./workspace)")
    e.add_argument("--video", action="append", metavar="NAME", help="only this video (repeatable; default all)")
    e.add_argument("--config", help="decide with this config file (default: the workspace's latest config)")
    e.add_argument("--to", required=True, choices=["fiftyone", "ytvis", "coco"], help="export format")
    e.add_argument("--dataset", help="fiftyone: the dataset name")
    mode = e.add_mutually_exclusive_group()
    mode.add_argument("--overwrite", action="store_true",
                      help="replace an existing dataset (fiftyone) or existing output files and frame folders "
                           "(ytvis, coco); without it an existing output is refused")
    mode.add_argument("--append", action="store_true", help="fiftyone: add the videos to an existing dataset")
    e.add_argument("--media-dir", help="fiftyone: folder for the H.264 videos "
                                       "(default <workspace>/exports/fiftyone_media)")
    e.add_argument("--launch", action="store_true",
                   help="fiftyone: open the FiftyOne App on the dataset afterwards (Ctrl-C stops it)")
    e.add_argument("--port", type=int, default=5151, help="fiftyone: App port with --launch (default 5151)")
    e.add_argument("--out", help="ytvis: the annotation JSON to write; coco: the output folder")
    e.add_argument("--results", help="ytvis: also write a results JSON (one scored entry per track)")
    e.add_argument("--frames", help="ytvis: also write the processed frames as JPEG under this folder")
    e.add_argument("--quiet", action="store_true", help="no progress output")
    e.set_defaults(func=run_export)

    i = sub.add_parser("import", help="register YouTube-VIS ground-truth videos in a workspace, or bring "
                                      "curation tagged in FiftyOne back into it")
    i.add_argument("--workspace", "-w", default="workspace", help="workspace folder (default ./workspace)")
    src = i.add_mutually_exclusive_group(required=True)
    src.add_argument("--ytvis", metavar="FILE.json", help="YouTube-VIS annotation file (ground truth)")
    src.add_argument("--fiftyone", metavar="DATASET",
                     help="a dataset exported by UVIS Studio whose labels were tagged accept, reject or "
                          "relabel:<class> in the FiftyOne App: logs those as curation actions")
    i.add_argument("--frames", metavar="DIR", help="--ytvis: its image root (e.g. train/JPEGImages)")
    i.add_argument("--video", action="append", metavar="NAME", help="--ytvis: only this video (repeatable)")
    i.add_argument("--dry-run", action="store_true", help="--fiftyone: list the actions without logging them")
    i.set_defaults(func=run_import)


def _printer(quiet: bool) -> Callable[[str, str, int, int], None] | None:
    """A throttled progress line printer ``(stage, video, done, total)`` on stderr."""
    if quiet:
        return None
    last = [0.0]

    def show(stage: str, video: str, done: int, total: int) -> None:
        now = time.monotonic()
        if done < total and now - last[0] < 0.5:
            return
        last[0] = now
        end = "\n" if done >= total else "\r"
        print(f"{stage} {video}: {done}/{total}", end=end, file=sys.stderr, flush=True)

    return show


def _check_args(args: argparse.Namespace) -> None:
    to = args.to
    need = {"fiftyone": ("dataset",), "ytvis": ("out",), "coco": ("out",)}[to]
    for key in need:
        if not getattr(args, key):
            raise BadInputError(f"--to {to} needs --{key}")
    only = {"dataset": "fiftyone", "append": "fiftyone", "media_dir": "fiftyone",
            "launch": "fiftyone", "results": "ytvis", "frames": "ytvis"}
    for key, fmt in only.items():
        if getattr(args, key) and fmt != to:
            raise BadInputError(f"--{key.replace('_', '-')} applies to --to {fmt} only")


def _json_outputs(args: argparse.Namespace, videos: list[str]) -> tuple[list[Path], list[Path]]:
    """(files, folders) a ``ytvis``/``coco`` export writes: what ``--overwrite`` guards."""
    out = Path(args.out)
    if args.to == "coco":
        return [out / "annotations.json"], [out / "images" / v for v in videos]
    files = [out] + ([Path(args.results)] if args.results else [])
    return files, ([Path(args.frames) / v for v in videos] if args.frames else [])


def _prepare_json_outputs(args: argparse.Namespace, videos: list[str]) -> None:
    """Clean what killed exports left beside the outputs, then refuse existing outputs
    unless ``--overwrite`` (as for FiftyOne datasets)."""
    from uvis.fsutil import clean_stale_temps, restore_stale_aside

    files, folders = _json_outputs(args, videos)
    for parent in sorted({p.parent for p in files + folders}):
        restore_stale_aside(parent)
        clean_stale_temps(parent)
    existing = [p for p in files + folders if p.exists()]
    if existing and not args.overwrite:
        shown = ", ".join(str(p) for p in existing[:3]) + (f" and {len(existing) - 3} more" if len(existing) > 3 else "")
        raise BadInputError(f"{shown} already exist(s); pass --overwrite to replace, or choose another --out")
    for p in files:
        if p.is_dir():
            raise BadInputError(f"{p} is a folder; --out/--results name the JSON file to write")


def _decide(args: argparse.Namespace) -> tuple[Any, dict[str, Any], Any]:
    from uvis.pipeline import open_project
    from uvis.workspace import Workspace

    ws = Workspace.existing(args.workspace)
    cfg = ws.current_config(args.config)
    known = ws.video_names()
    if args.video:
        missing = [v for v in args.video if v not in known]
        if missing:
            raise BadInputError(f"video(s) {', '.join(missing)} not in workspace {ws.root} "
                                f"(videos: {', '.join(known) or 'none'})")
    project = open_project(ws)
    results = project.decide(cfg, videos=args.video)
    for name in results:
        cache = project.caches[name]
        if not cache.complete:
            print(f"warning: {name}: only {cache.num_cached}/{cache.info.num_frames} frames are labelled; "
                  "later frames are exported without labels", file=sys.stderr)
    return ws, results, cfg


def run_export(args: argparse.Namespace) -> int:
    """The ``export`` command; returns the exit code."""
    _check_args(args)
    ws, results, _ = _decide(args)
    show = _printer(args.quiet)
    try:
        if args.to in ("ytvis", "coco"):
            _prepare_json_outputs(args, list(results))
        n_kept = sum(int(r.kept.sum()) for r in results.values())
        if args.to == "ytvis":
            from uvis.export.ytvis import export_ytvis, export_ytvis_results

            path = export_ytvis(results, args.out, frames_dir=args.frames,
                                progress=None if show is None else (lambda v, d, t: show("frames", v, d, t)))
            print(f"wrote {path} ({len(results)} videos, {n_kept} kept instances)")
            if args.results:
                print(f"wrote {export_ytvis_results(results, args.results)}")
        elif args.to == "coco":
            from uvis.export.coco import export_coco

            path = export_coco(results, args.out,
                               progress=None if show is None else (lambda v, d, t: show("frames", v, d, t)))
            print(f"wrote {path} and {Path(args.out) / 'images'} ({len(results)} videos, {n_kept} kept instances)")
        else:
            from uvis.export.fiftyone_export import export_fiftyone

            media = Path(args.media_dir) if args.media_dir else ws.exports_dir / "fiftyone_media"
            name = export_fiftyone(results, args.dataset, overwrite=args.overwrite, append=args.append,
                                   media_dir=media,
                                   progress=None if show is None else (lambda p: show(p.stage, p.video, p.done,
                                                                                      p.total)))
            print(f"FiftyOne dataset '{name}': {len(results)} videos, {n_kept} kept instances (media in {media})")
            if args.launch:
                _serve(name, args.port)
    finally:
        ws.close()
    return 0


def _serve(dataset: str, port: int) -> None:
    from uvis.export.fiftyone_app import launch_app

    handle = launch_app(dataset, port=port)
    print(f"FiftyOne App: {handle.url}  (Ctrl-C to stop)")
    try:
        while True:
            time.sleep(1.0)
    except KeyboardInterrupt:
        pass
    finally:
        handle.stop()


def run_import(args: argparse.Namespace) -> int:
    """The ``import`` command; returns the exit code."""
    from uvis.export.importers import import_ytvis_into_workspace
    from uvis.workspace import Workspace

    if args.fiftyone:
        return _import_fiftyone(args)
    if not args.frames:
        raise BadInputError("--ytvis needs --frames DIR (the folder the file_names are relative to)")
    ws = Workspace(args.workspace)
    try:
        summary = import_ytvis_into_workspace(ws, args.ytvis, args.frames, videos=args.video)
    finally:
        ws.close()
    for w in summary.warnings:
        print(f"warning: {w}", file=sys.stderr)
    print(f"{len(summary.added)} videos registered, {len(summary.existing)} already present; ground truth in "
          f"{Path(ws.root) / 'ground_truth'}")
    if summary.added:
        folders = [str(summary.folders[n]) for n in summary.added[:3]]
        print("label them with: python -m uvis label --workspace " f"{args.workspace} " + " ".join(folders)
              + (" ..." if len(summary.added) > 3 else ""))
    return 0


def _import_fiftyone(args: argparse.Namespace) -> int:
    from uvis.export.importers import import_fiftyone_curation
    from uvis.workspace import Workspace

    ws = Workspace.existing(args.workspace)
    try:
        actions = import_fiftyone_curation(ws, args.fiftyone, dry_run=args.dry_run)
    finally:
        ws.close()
    for a in actions:
        print(f"{a.video}: {a.action} {json.dumps(a.payload)}")
    verb = "would log" if args.dry_run else "logged"
    print(f"{verb} {len(actions)} curation actions from FiftyOne dataset '{args.fiftyone}'")
    return 0
