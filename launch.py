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
import sys
from pathlib import Path
from typing import Sequence

REPO = Path(__file__).resolve().parent
EXAMPLE = REPO / "assets" / "examples" / "vtest_150.mp4"


def make_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="launch.py", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workspace", "-w", default="workspace", help="workspace folder (default ./workspace)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=7860, help="port (default 7860)")
    p.add_argument("--video", help="label this video on start (instead of the bundled example)")
    p.add_argument("--no-example", action="store_true", help="do not label the bundled example on first start")
    p.add_argument("--fiftyone-port", type=int, default=5151, help="port of the FiftyOne App (default 5151)")
    p.add_argument("--max-upload-mb", type=int, default=512, help="upload size limit in MiB (default 512)")
    p.add_argument("--quiet", action="store_true", help="less console output")
    run = p.add_argument_group("labelling (as `python -m uvis label`)")
    run.add_argument("--config", help="YAML/JSON config file (partial files fill in defaults)")
    run.add_argument("--proposer", choices=["motion", "file", "cutler", "detectron2"])
    run.add_argument("--proposals-file", help="COCO/YouTube-VIS results JSON for --proposer file")
    run.add_argument("--cutler-weights", help="CutLER weights: registry name or local .pth path")
    run.add_argument("--min-size", type=int, help="CutLER short side (default 800)")
    run.add_argument("--embedder", choices=["clip", "efficientnet"])
    run.add_argument("--clip-model", help="open_clip model name (default ViT-B-32)")
    run.add_argument("--clip-pretrained", help="open_clip pretrained tag, local checkpoint, or 'none' (random)")
    run.add_argument("--vocabulary", help="preset name (ytvis2019, ytvis2021, ovis) or comma-separated classes")
    run.add_argument("--max-frames", type=int, help="process at most N frames per video")
    run.add_argument("--stride", type=int, help="keep every N-th frame")
    run.add_argument("--max-side", type=int, help="downscale frames so the longer side is at most N px")
    run.add_argument("--device", help="torch device for the models (cpu, cuda, ...)")
    return p


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


def main(argv: Sequence[str] | None = None) -> int:
    args = make_parser().parse_args(argv)
    workspace = Path(args.workspace).expanduser().resolve()
    workspace.mkdir(parents=True, exist_ok=True)
    # Gradio keeps uploads and served outputs in its cache folder: keep it inside the workspace.
    os.environ.setdefault("GRADIO_TEMP_DIR", str(workspace / ".gradio"))
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

    from dataclasses import replace

    from app.backends import BackendChoice, choose_embedder, choose_proposer
    from app.main import launch
    from app.state import AppController
    from uvis.cli import build_config
    from uvis.config import EmbedderConfig
    from uvis.errors import UvisError
    from uvis.workspace import Workspace, video_name_for

    try:
        cfg = build_config(args)
        ws = Workspace(workspace)
    except UvisError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    explicit_proposer = bool(args.proposer or args.proposals_file or _config_file_sets(args.config, "proposer"))
    explicit_embedder = bool(args.embedder or _config_file_sets(args.config, "embedder"))
    proposer_cfg, proposer_choice = choose_proposer(cfg.proposer, explicit_proposer)
    existing = [r for r in ws.db.videos() if r.cache_key]
    if existing and not explicit_embedder:
        # keep the workspace consistent: new videos use the embedder its videos were made with
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
    run_cfg = cfg.replace(proposer=proposer_cfg, embedder=embedder_cfg)
    ctrl = AppController(ws, run_cfg, [proposer_choice, embedder_choice])

    names = {r.name: r for r in ws.db.videos()}
    if args.video:
        target = Path(args.video).expanduser().resolve()
        name = video_name_for(target)
        if names.get(name) is None or names[name].status != "done":
            ctrl.add_video(target, name)
    elif not existing and not args.no_example:
        ctrl.add_video(EXAMPLE, video_name_for(EXAMPLE))
    for rec in names.values():  # a run killed mid-way resumes at its first missing frame
        if rec.status in ("running", "partial") and Path(rec.path).exists() and rec.name != (
                video_name_for(args.video) if args.video else None):
            ctrl.add_video(Path(rec.path), rec.name)
    if not args.quiet:
        for c in (proposer_choice, embedder_choice):
            print(f"{c.stage}: {c.live} — {c.reason}" + (f" (enable {c.preferred}: {c.enable_cmd})"
                                                         if c.degraded and c.enable_cmd else ""), file=sys.stderr)
        print(f"workspace: {ws.root}", file=sys.stderr)
    try:
        launch(ctrl, host=args.host, port=args.port, fiftyone_port=args.fiftyone_port,
               max_upload_mb=args.max_upload_mb, quiet=args.quiet)
    finally:
        ctrl.close()
        ws.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
