"""Command line: ``python -m uvis {label,show,config,weights,eval,export,import,predict}``.

Exit codes: 0 success, 2 bad input (:class:`BadInputError`), 1 internal error.
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys
from pathlib import Path
from typing import Callable, Sequence

from uvis.config import Config
from uvis.errors import BadInputError, MissingDependencyError, UvisError

# Sub-command modules that register themselves with ``add_parser(subparsers)``, and the
# sub-commands each adds (shown, with the install command, when a package it needs is missing).
_PLUGIN_MODULES: dict[str, tuple[str, ...]] = {
    "uvis.weights_cli": ("weights",), "uvis.eval.cli": ("eval",), "uvis.export.cli": ("export", "import"),
    "uvis.vis.cli": ("predict",), "uvis.vis.train_cli": ("train", "rounds"),
}
# Import names whose pip package is named otherwise.
_PIP_NAMES = {"cv2": "opencv-python-headless", "yaml": "PyYAML", "PIL": "Pillow", "bson": "pymongo"}


def _add_label(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("label", help="run proposals + embeddings on videos into a workspace, then decide")
    p.add_argument("inputs", nargs="+", help="video files (mp4/avi/webm/mkv/mov), frame folders, dataset roots "
                   "(YouTube-VIS JPEGImages/) or list files (.txt, one video per line)")
    p.add_argument("--workspace", "-w", default="workspace", help="workspace folder (default ./workspace)")
    p.add_argument("--config", help="YAML/JSON config file (partial files fill in defaults)")
    p.add_argument("--proposer", choices=["motion", "file", "cutler", "detectron2"])
    p.add_argument("--proposals-file", help="COCO/YouTube-VIS results JSON for --proposer file")
    p.add_argument("--proposals-index", help="dataset JSON mapping the proposals' ids to videos and frames")
    p.add_argument("--cutler-weights", help="CutLER weights: registry name or local .pth path")
    p.add_argument("--min-size", type=int, help="CutLER short side (default 800)")
    p.add_argument("--embedder", choices=["clip", "efficientnet"])
    p.add_argument("--clip-model", help="open_clip model name (default ViT-B-32)")
    p.add_argument("--clip-pretrained", help="open_clip pretrained tag or local checkpoint path")
    p.add_argument("--vocabulary", help="preset name (ytvis2019, ytvis2021, ovis) or comma-separated classes")
    p.add_argument("--max-frames", type=int, help="process at most N frames per video")
    p.add_argument("--stride", type=int, help="keep every N-th frame")
    p.add_argument("--max-side", type=int, help="downscale frames so the longer side is at most N px")
    p.add_argument("--device", help="torch device for the models (cpu, cuda, cuda:1, ...)")
    p.add_argument("--max-videos", type=int, help="label only the first N videos of the inputs (trials)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    from uvis.engines import DEFAULT_ENGINE, ENGINES

    g = p.add_argument_group("engine", "where the models run (docs/scale-out.md)")
    g.add_argument("--engine", choices=ENGINES, default=DEFAULT_ENGINE,
                   help="local: this process (default); ray: a pool of Ray workers (pip install ray)")
    g.add_argument("--address", help="ray: 'auto' (cluster running here) or HEAD_HOST:PORT; default: a new local "
                   "Ray instance")
    g.add_argument("--workers", type=int, help="ray: number of workers (default: as many as the free CPUs/GPUs)")
    g.add_argument("--cpus-per-worker", type=float, default=1.0, help="ray: CPUs (= torch threads) per worker")
    g.add_argument("--gpus-per-worker", type=float, default=0.0,
                   help="ray: GPUs per worker (> 0: models run on the GPU Ray assigns; fractions share one)")
    g.add_argument("--chunk-frames", type=int, default=8,
                   help="ray: frames per work unit (stateless proposers; motion gets whole videos)")
    p.set_defaults(func=_run_label)


def _add_show(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("show", help="print per-class kept/dropped counts and tracks of a workspace")
    p.add_argument("--workspace", "-w", default="workspace")
    p.add_argument("--video", help="only this video")
    p.add_argument("--config", help="decide with this config (default: the workspace's latest)")
    p.set_defaults(func=_run_show)


def _add_config(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("config", help="configuration helpers")
    csub = p.add_subparsers(dest="config_cmd", required=True)
    d = csub.add_parser("dump", help="print the default config (or --config FILE merged with defaults)")
    d.add_argument("--format", choices=["yaml", "json"], default="yaml")
    d.add_argument("--config", help="a config file to validate and print in full")
    d.set_defaults(func=_run_config_dump)


def build_config(args: argparse.Namespace) -> Config:
    """The config from ``--config`` plus command-line overrides, validated."""
    from uvis.config import load_preset

    cfg = Config.load(args.config) if getattr(args, "config", None) else Config()
    data = cfg.to_dict()
    pairs = {
        ("proposer", "backend"): args.proposer, ("proposer", "file"): args.proposals_file,
        ("proposer", "file_index"): args.proposals_index,
        ("proposer", "cutler_weights"): args.cutler_weights, ("proposer", "min_size"): args.min_size,
        ("embedder", "backend"): args.embedder, ("embedder", "clip_model"): args.clip_model,
        ("embedder", "clip_pretrained"): args.clip_pretrained, ("video", "max_frames"): args.max_frames,
        ("video", "stride"): args.stride, ("video", "max_side"): args.max_side,
        ("proposer", "device"): args.device, ("embedder", "device"): args.device,
    }
    for (section, key), value in pairs.items():
        if value is not None:
            data[section][key] = value
    if args.proposals_file and not args.proposer:
        data["proposer"]["backend"] = "file"
    if args.vocabulary:
        from uvis.config import vocabulary_presets

        presets = vocabulary_presets()
        data["labeler"]["vocabulary"] = load_preset(args.vocabulary) if args.vocabulary in presets else [
            c.strip() for c in args.vocabulary.split(",") if c.strip()]
    return Config.from_dict(data)


def _run_label(args: argparse.Namespace) -> int:
    from uvis.engines.dataset import enumerate_videos
    from uvis.pipeline import open_project
    from uvis.stats import format_counts
    from uvis.workspace import Workspace

    cfg = build_config(args)
    inputs = enumerate_videos(args.inputs, max_videos=args.max_videos)
    if args.engine == "ray":
        from uvis.engines.ray_engine import require_ray

        require_ray()  # before touching the workspace: says which pip command installs it
    ws = Workspace(args.workspace)
    saved: list[int] = []

    def save_config() -> None:  # only once a run has started: a failing command changes nothing
        if not saved:
            saved.append(ws.db.save_config(cfg.to_json(), note="label"))

    label = _label_ray if args.engine == "ray" else _label_local
    names, failed = label(args, ws, cfg, inputs, save_config)
    if not names:
        raise BadInputError(f"no video could be labelled ({len(failed)} failed)")
    results = open_project(ws).decide(cfg)
    print(format_counts({n: results[n] for n in names if n in results}))
    for n in names:
        r = results[n]
        frames_with = len(set(r.instances.frame[r.kept].tolist()))
        print(f"{n}: {r.info.num_frames} frames, {len(r.instances)} proposals, {int(r.kept.sum())} kept, "
              f"{len(r.tracks)} tracks, {frames_with} frames with kept instances")
    ws.close()
    if failed:
        print(f"{len(failed)} of {len(inputs)} videos failed: {', '.join(failed)}", file=sys.stderr)
        return 2
    return 0


def _label_ray(args: argparse.Namespace, ws, cfg: Config, inputs: list[Path],
               on_started: Callable[[], None]) -> tuple[list[str], list[str]]:
    """Label on Ray with one progress bar over all frames; (labelled names, failed inputs)."""
    from uvis.engines.ray_engine import RayOptions, label_with_ray

    options = RayOptions(address=args.address, workers=args.workers, cpus_per_worker=args.cpus_per_worker,
                         gpus_per_worker=args.gpus_per_worker, chunk_frames=args.chunk_frames)
    bars: list = []  # one bar over all frames, made once the total is known

    def progress(done: int, total: int) -> None:
        if args.quiet:
            return
        if not bars:
            from tqdm import tqdm

            bars.append(tqdm(total=total, initial=done, unit="frame", desc=f"{len(inputs)} videos",
                             file=sys.stderr, dynamic_ncols=True))
        bars[0].update(done - bars[0].n)

    def log(msg: str) -> None:
        (bars[0].write if bars else print)(msg, file=sys.stderr)

    try:
        run = label_with_ray(ws, cfg, inputs, options, progress=progress, log=log, on_started=on_started)
    finally:
        for bar in bars:
            bar.close()
    print(f"ray: {len(run.workers)} workers, {run.frames_written} frames labelled ({run.frames_computed} computed "
          f"by workers), {run.frames_cached_before} already cached, start-up {run.start_seconds:.1f} s, labelling {run.label_seconds:.1f} s", file=sys.stderr)
    for f in run.failures:
        print(f"failed: {f.describe()}", file=sys.stderr)
    return run.videos, run.failed


def _label_local(args: argparse.Namespace, ws, cfg: Config, inputs: list[Path],
                 on_started: Callable[[], None]) -> tuple[list[str], list[str]]:
    """Label in this process, one progress bar per video; (labelled names, failed inputs)."""
    from uvis.pipeline import Runner

    runner = Runner(ws, cfg)
    names, failed = [], []
    for item in inputs:
        bar = None
        if not args.quiet:
            from tqdm import tqdm

            bar = tqdm(unit="frame", desc=item.name, file=sys.stderr)

        def progress(p, bar=bar) -> None:
            if p.done == p.resumed_from and p.resumed_from > 0:
                print(f"{p.video}: resuming at frame {p.resumed_from} of {p.total} (earlier frames cached)",
                      file=sys.stderr, flush=True)
            if bar is not None:
                bar.total = p.total
                bar.n = p.done
                bar.refresh()

        try:
            cache = runner.label_video(item, progress=progress, on_started=on_started)
        except BadInputError as exc:  # one bad video of a batch: report it, go on with the rest
            if len(inputs) == 1:
                raise
            print(f"error: {exc}", file=sys.stderr)
            failed.append(str(item))
            continue
        finally:
            if bar is not None:
                bar.close()
        names.append(cache.info.name)
        for w in cache.warnings:
            print(f"warning: {w}", file=sys.stderr)
        if cache.num_cached < cache.info.num_frames:
            print(f"warning: {cache.info.name}: only {cache.num_cached}/{cache.info.num_frames} frames cached",
                  file=sys.stderr)
    return names, failed


def _run_show(args: argparse.Namespace) -> int:
    from uvis.pipeline import open_project
    from uvis.stats import format_counts
    from uvis.workspace import Workspace

    ws = Workspace.existing(args.workspace)
    cfg = ws.current_config(args.config)
    videos = [args.video] if args.video else None
    results = open_project(ws, videos).decide(cfg)
    print(format_counts(results))
    from uvis.curation import unresolved_message

    for name, r in results.items():
        print(f"{name}: {r.info.num_frames} frames, {len(r.instances)} proposals, "
              f"{int(r.kept.sum())} kept, {len(r.tracks)} tracks (labels: {r.label_source})")
        notice = unresolved_message(r.unresolved)
        if notice:
            print(f"  {name}: {notice}")
    ws.close()
    return 0


def _run_config_dump(args: argparse.Namespace) -> int:
    cfg = Config.load(args.config) if args.config else Config()
    print(cfg.to_yaml() if args.format == "yaml" else cfg.to_json())
    return 0


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m uvis", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    _add_label(sub)
    _add_show(sub)
    _add_config(sub)
    for mod_name, commands in _PLUGIN_MODULES.items():
        try:
            mod = importlib.import_module(mod_name)
        except ModuleNotFoundError as exc:
            if not exc.name or exc.name.split(".")[0] == "uvis":
                raise  # the project's own module is missing: a broken checkout must fail loudly
            _add_missing(sub, commands, exc.name)
            continue
        mod.add_parser(sub)
    return parser


def _add_missing(sub: argparse._SubParsersAction, commands: Sequence[str], module: str) -> None:
    """Register ``commands`` as stubs that say which package is missing and how to install it."""
    top = module.split(".")[0]
    install = f"pip install {_PIP_NAMES.get(top, top)}  (or: pip install -r requirements.txt)"

    def fail(args: argparse.Namespace) -> int:
        raise MissingDependencyError(f"'{args.command}' needs the package '{top}', which is not installed; "
                                     f"install it with: {install}")

    for cmd in commands:
        p = sub.add_parser(cmd, help=f"(unavailable: needs '{top}', install with {install})", add_help=False,
                           prefix_chars="\0")  # every argument is taken as is: the command only explains
        p.add_argument("rest", nargs="*")
        p.set_defaults(func=fail)


def _short(text: object, limit: int = 300) -> str:
    s = str(text)
    return s if len(s) <= limit else f"{s[:limit // 2]}...{s[-limit // 4:]} ({len(s)} characters)"


def main(argv: Sequence[str] | None = None) -> int:
    parser = make_parser()
    args = parser.parse_args(argv)
    try:
        code = int(args.func(args) or 0)
        sys.stdout.flush()  # a closed pipe shows here, not as an "Exception ignored" at exit
        return code
    except BadInputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except MissingDependencyError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except UvisError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted; finished frames are cached and a re-run resumes", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `config dump | head`: the reader left; no traceback
        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except OSError:
            pass
        print("error: the output was closed before everything was written (broken pipe)", file=sys.stderr)
        return 2
    except OSError as exc:  # the file system refused (permissions, name too long, disk full, ...)
        where = f" {_short(exc.filename)}:" if exc.filename else ""
        print(f"error:{where} {exc.strerror or exc}", file=sys.stderr)
        return 2
