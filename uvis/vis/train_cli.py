"""The ``train`` command: train the VIS model on a workspace's curated pseudo-labels.

    python -m uvis train --workspace W --out RUN_DIR [--config train.yaml] [--preset default|tiny]
                         [--init NAME_OR_PATH] [--device cpu|cuda] [--max-iter N] [--resume]
    python -m uvis train --ytvis ANNOTATIONS.json --frames FRAMES_DIR --out RUN_DIR ...
    torchrun --nproc-per-node N -m uvis train ...      (DDP: gloo on CPU, NCCL on GPUs)

Exit codes: 0 done, 2 bad input, 130 interrupted (the last checkpoint stays; ``--resume``).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from uvis.errors import BadInputError


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``train`` on ``subparsers``."""
    p = subparsers.add_parser("train", help="train the VIS model (MinVIS) on the curated pseudo-labels",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--workspace", "-w", help="workspace folder: train on its decided, curated pseudo-labels")
    src.add_argument("--ytvis", help="YouTube-VIS annotation JSON to train on (with --frames)")
    p.add_argument("--frames", help="folder the --ytvis file_names are relative to")
    p.add_argument("--out", required=True, help="run folder (checkpoints, metrics.jsonl, model_final.pth)")
    p.add_argument("--config", help="training YAML/JSON (keys of TrainConfig; see docs/training.md)")
    p.add_argument("--ws-config", help="decide the workspace with this config instead of its current one")
    p.add_argument("--preset", choices=["default", "tiny"], default="default",
                   help="default: MinVIS R50 recipe; tiny: the small CPU model of the overfit test")
    p.add_argument("--init", help="start from a MinVIS/Mask2Former checkpoint (registry name or .pth path); "
                                  "default: the frozen backbone alone")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N (default cpu)")
    p.add_argument("--max-iter", type=int, help="override train.max_iter")
    p.add_argument("--batch-size", type=int, help="override train.batch_size (images over all processes)")
    p.add_argument("--workers", type=int, help="override train.num_workers")
    p.add_argument("--class-agnostic", action="store_true", help="train one class 'object'")
    p.add_argument("--round", type=int, help="train on this self-training round's videos (default: the latest; "
                                             "round 1 = the workspace's own pseudo-labels)")
    p.add_argument("--resume", action="store_true", help="continue from the run folder's last checkpoint")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)
    r = subparsers.add_parser("rounds", help="the self-training round table of a workspace (kept, mF1, AP)")
    r.add_argument("--workspace", "-w", required=True)
    r.add_argument("--config", help="decide with this config (default: the workspace's current one)")
    r.add_argument("--json", action="store_true", help="print JSON instead of a table")
    r.set_defaults(func=run_rounds)
    return p


def run_rounds(args: argparse.Namespace) -> int:
    import json
    from dataclasses import asdict

    from uvis.vis.rounds import format_round_table, round_table

    if not (Path(args.workspace) / "uvis.sqlite").is_file():
        raise BadInputError(f"workspace not found: {args.workspace}")
    rows = round_table(args.workspace, args.config)
    print(json.dumps([asdict(r) for r in rows], indent=1) if args.json else format_round_table(rows))
    return 0


def build_train_config(args: argparse.Namespace) -> Any:
    from uvis.vis.train_config import TrainConfig, preset

    cfg = preset(args.preset)
    if args.config:
        cfg = TrainConfig.load(args.config, base=cfg)
    over: dict[str, Any] = {}
    if args.max_iter is not None:
        over["max_iter"] = args.max_iter
    if args.batch_size is not None:
        over["batch_size"] = args.batch_size
    if args.workers is not None:
        over["num_workers"] = args.workers
    return TrainConfig.from_dict(over, base=cfg) if over else cfg


def load_train_set(args: argparse.Namespace, run_dir: Path, max_frames: int | None) -> Any:
    from uvis.vis.train_data import TrainSet, from_ytvis
    from uvis.vis.train_job import prepare_train_set

    if args.workspace:
        return prepare_train_set(args.workspace, run_dir, resume=args.resume, round=args.round,
                                 class_agnostic=True if args.class_agnostic else None, ws_config=args.ws_config,
                                 max_frames=max_frames)
    saved = run_dir / "data.json"
    if args.resume and saved.is_file():
        return TrainSet.load(saved)
    if not args.frames:
        raise BadInputError("--ytvis needs --frames FRAMES_DIR (the folder its file_names are relative to)")
    return from_ytvis(args.ytvis, args.frames).select_frames(max_frames)


def resolve_init(name_or_path: str) -> dict:
    """State dict of ``--init``: a local .pth/.pkl path or a weights-registry name."""
    import torch

    p = Path(name_or_path)
    if not p.is_file():
        from uvis.weights import resolve

        p = Path(resolve(name_or_path))
    try:
        obj = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001
        raise BadInputError(f"--init {name_or_path}: cannot read {p} as a PyTorch checkpoint ({exc})") from exc
    state = obj.get("model", obj) if isinstance(obj, dict) else None
    if not isinstance(state, dict) or not all(hasattr(v, "shape") for v in state.values()):
        raise BadInputError(f"--init {name_or_path}: {p} holds no state dict (expected {{'model': {{key: tensor}}}})")
    return state


def run(args: argparse.Namespace) -> int:
    from uvis.vis.trainer import Trainer, init_distributed, last_checkpoint

    cfg = build_train_config(args)
    run_dir = Path(args.out)
    if run_dir.exists() and not run_dir.is_dir():
        raise BadInputError(f"--out {run_dir} exists and is not a folder")
    if not args.resume and last_checkpoint(run_dir) is not None:
        raise BadInputError(f"--out {run_dir} already holds a training run; add --resume to continue it or choose "
                            "another folder")
    dist = init_distributed(args.device)
    if dist.main:
        run_dir.mkdir(parents=True, exist_ok=True)
        data = load_train_set(args, run_dir, cfg.max_frames)
        data.save(run_dir / "data.json")
    if dist.world > 1:
        import torch.distributed

        torch.distributed.barrier()
    from uvis.vis.train_data import TrainSet

    data = TrainSet.load(run_dir / "data.json")
    init = resolve_init(args.init) if args.init else None
    trainer = Trainer(cfg, data, run_dir, device=args.device, init=init, dist=dist)
    if dist.main:
        print(f"training on {len(data.samples)} frames, {data.num_instances} instances, classes: "
              f"{', '.join(data.classes[:8])}{' ...' if len(data.classes) > 8 else ''} "
              f"({data.source}); {dist.world} process(es)", file=sys.stderr, flush=True)
    bar = None
    if not args.quiet and dist.main:
        from tqdm import tqdm

        bar = tqdm(total=cfg.max_iter, unit="it", desc="train", file=sys.stderr)

    def progress(p) -> None:
        if bar is not None:
            bar.n = p.iteration
            m = p.metrics
            bar.set_postfix_str(f"loss {m['loss']:.3f} ce {m.get('loss_ce', 0):.3f} mask {m.get('loss_mask', 0):.3f} "
                                f"dice {m.get('loss_dice', 0):.3f} lr {m['lr']:.1e}", refresh=True)

    try:
        result = trainer.fit(resume=args.resume, progress=progress)
    finally:
        if bar is not None:
            bar.close()
        if dist.world > 1:
            import torch.distributed

            torch.distributed.destroy_process_group()
    if dist.main:
        where = result.final_model or run_dir
        print(f"{result.iterations} iterations; final loss {result.last_metrics.get('loss', float('nan')):.4f}; "
              f"model: {where}")
    return 0
