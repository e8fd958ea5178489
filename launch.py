"""UVIS Studio in the browser: ``python launch.py [--workspace W] [--host 127.0.0.1] [--port 7860] [--video PATH]``.

On first start the bundled example (``assets/examples/vtest_150.mp4``) is labelled in
the background (progress in the page) with the best backends available: CutLER and
CLIP where their weights are present, else the offline motion proposer and
EfficientNet embedder; the page's banner says which and how to enable the others.
The server binds 127.0.0.1 by default, never shares, and serves only the workspace
and ``assets/``. Run-time options (``--proposer``, ``--embedder``, ``--max-frames``,
...) are those of ``python -m uvis label``.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

if TYPE_CHECKING:
    from app.backends import BackendChoice
    from app.state import AppController
    from uvis.config import Config
    from uvis.workspace import Workspace

REPO = Path(__file__).resolve().parent
EXAMPLE = REPO / "assets" / "examples" / "vtest_150.mp4"


def make_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="launch.py", description=__doc__.split("\n\n")[0], allow_abbrev=False,
        epilog="Every option of `python -m uvis label` is accepted too (e.g. --proposer motion, --embedder "
               "efficientnet, --clip-model uvis-tiny-vit --clip-pretrained none, --max-frames 40, --vocabulary "
               "ytvis2021, --config FILE); see `python -m uvis label --help`.")
    p.add_argument("--workspace", "-w", default="workspace", help="workspace folder (default ./workspace)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=7860, help="port (default 7860)")
    p.add_argument("--video", help="label this video on start (instead of the bundled example)")
    p.add_argument("--no-example", action="store_true", help="do not label the bundled example on first start")
    p.add_argument("--fiftyone-port", type=int, default=5151, help="port of the FiftyOne App (default 5151)")
    p.add_argument("--max-upload-mb", type=int, default=512, help="upload size limit in MiB (default 512)")
    p.add_argument("--quiet", action="store_true", help="less console output")
    return p


def label_options(rest: Sequence[str]) -> argparse.Namespace:
    """The labelling options (``python -m uvis label``'s flags) among the arguments ``rest``."""
    from uvis.cli import make_parser as cli_parser

    return cli_parser().parse_args(["label", str(EXAMPLE), *rest])


def _config_file_sets(path: str | None, section: str) -> bool:
    """True when a config file names ``section.backend`` itself (then it is explicit)."""
    if not path:
        return False
    import yaml

    try:
        text = Path(path).read_text()
        data = yaml.safe_load(text) if path.endswith((".yaml", ".yml")) else json.loads(text)
    except (OSError, ValueError, yaml.YAMLError):
        return False
    return isinstance(data, dict) and isinstance(data.get(section), dict) and "backend" in data[section]


def run_config(run_args: argparse.Namespace, ws: "Workspace") -> tuple["Config", list["BackendChoice"]]:
    """The labelling config with the best available backends, and the banner entries.

    A backend named by a flag or the config file is kept as asked. New videos of a
    workspace that already has videos use the embedder those were made with (decisions
    need one embedding space).
    """
    from dataclasses import replace

    from app.backends import BackendChoice, choose_embedder, choose_proposer
    from uvis.cli import build_config
    from uvis.config import EmbedderConfig

    cfg = build_config(run_args)
    config_file = getattr(run_args, "config", None)
    explicit_proposer = bool(getattr(run_args, "proposer", None) or getattr(run_args, "proposals_file", None)
                             or _config_file_sets(config_file, "proposer"))
    explicit_embedder = bool(getattr(run_args, "embedder", None) or _config_file_sets(config_file, "embedder"))
    proposer_cfg, proposer_choice = choose_proposer(cfg.proposer, explicit_proposer)
    existing = [r for r in ws.db.videos() if r.cache_key]
    if existing and not explicit_embedder:
        meta = ws.load_cache(existing[0].name).meta
        embedder_cfg = EmbedderConfig(**meta.embedder_config)
        embedder_choice = BackendChoice("embedder", embedder_cfg.backend, "clip",
                                        f"{meta.embedder}, as the workspace's videos were embedded with it")
        if embedder_cfg.backend != "clip":
            _, fresh = choose_embedder(cfg.embedder, False)
            embedder_choice = replace(embedder_choice, enable_cmd=fresh.enable_cmd or "",
                                      reason=embedder_choice.reason + "; labels come from your examples "
                                      "(relabel an instance and similar ones follow)")
    else:
        embedder_cfg, embedder_choice = choose_embedder(cfg.embedder, explicit_embedder)
    return cfg.replace(proposer=proposer_cfg, embedder=embedder_cfg), [proposer_choice, embedder_choice]


def queue_start_jobs(ctrl: "AppController", ws: "Workspace", video: str | None, example: bool) -> None:
    """Label ``video`` (or, in an empty workspace, the bundled example) and resume runs that
    were cut off (status ``running``/``partial``) at their first missing frame."""
    from uvis.workspace import video_name_for

    records = {r.name: r for r in ws.db.videos()}
    wanted = None
    if video:
        target = Path(video).expanduser().resolve()
        wanted = video_name_for(target)
        if wanted not in records or records[wanted].status != "done":
            ctrl.add_video(target, wanted)
    elif example and not any(r.cache_key for r in records.values()):
        ctrl.add_video(EXAMPLE, video_name_for(EXAMPLE))
    for rec in records.values():
        if rec.status in ("running", "partial") and rec.name != wanted and Path(rec.path).exists():
            ctrl.add_video(Path(rec.path), rec.name)


def main(argv: Sequence[str] | None = None) -> int:
    args, rest = make_parser().parse_known_args(argv)
    run_args = label_options(rest)
    if args.video and not Path(args.video).expanduser().exists():
        print(f"error: --video {args.video}: no such file or folder", file=sys.stderr)
        return 2
    workspace = Path(args.workspace).expanduser().resolve()
    workspace.mkdir(parents=True, exist_ok=True)
    # Gradio keeps uploads and served outputs in its cache folder: keep it inside the workspace.
    os.environ["GRADIO_TEMP_DIR"] = str(workspace / ".gradio")
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

    from app.main import launch
    from app.state import AppController
    from uvis.errors import UvisError
    from uvis.workspace import Workspace

    try:
        ws = Workspace(workspace)
        cfg, backends = run_config(run_args, ws)
    except UvisError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    ctrl = AppController(ws, cfg, backends)
    queue_start_jobs(ctrl, ws, args.video, example=not args.no_example)
    if not args.quiet:
        for c in backends:
            print(f"{c.stage}: {c.live} — {c.reason}" + (f" (enable {c.preferred}: {c.enable_cmd})"
                                                         if c.degraded and c.enable_cmd else ""), file=sys.stderr)
        print(f"workspace: {ws.root}", file=sys.stderr)
    # SIGTERM ends the server like Ctrl-C: external services (FiftyOne App) are stopped; a
    # running labelling job is left as is, so the next start resumes it at its first missing frame
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        launch(ctrl, host=args.host, port=args.port, fiftyone_port=args.fiftyone_port,
               max_upload_mb=args.max_upload_mb, quiet=args.quiet)
    except KeyboardInterrupt:
        pass
    finally:
        ctrl.close(cancel_jobs=False)
        ws.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
