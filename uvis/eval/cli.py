"""The ``eval`` command: evaluate results or a workspace against YouTube-VIS ground truth.

    python -m uvis eval --gt GT.json --pred PRED.json [--level frame|video|both]
                        [--class-agnostic] [--area-ranges coco|ytvis] [--json OUT]
    python -m uvis eval --workspace W --gt GT.json --table1 [--config CFG] [--out DIR]

Exit codes: 0 ok, 2 bad input. The ``--json`` keys are documented in ``docs/evaluation.md``.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Sequence

from uvis.errors import BadInputError


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``eval`` on ``subparsers``; the handler is ``args.func`` (= :func:`run`)."""
    p = subparsers.add_parser(
        "eval", help="frame-level F1 and YouTube-VIS AP/AR against ground truth; Table 1 of a workspace",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    configure_parser(p)
    return p


def configure_parser(p: argparse.ArgumentParser) -> None:
    """Add the ``eval`` options to a parser."""
    p.add_argument("--gt", required=True, type=Path, help="YouTube-VIS annotation JSON (ground truth)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--pred", type=Path, help="YouTube-VIS results JSON to evaluate")
    src.add_argument("--workspace", "-w", type=Path, help="workspace folder (with --table1)")
    p.add_argument("--level", choices=["frame", "video", "both"], default="both",
                   help="frame: per-class F1; video: YouTube-VIS AP/AR; both (default)")
    p.add_argument("--class-agnostic", action="store_true", help="ignore categories (AP: useCats=0)")
    p.add_argument("--iou-threshold", type=float, default=0.5,
                   help="frame level: a match needs mask IoU strictly above this (default 0.5)")
    p.add_argument("--area-ranges", choices=["coco", "ytvis"], default="coco",
                   help="APs/APm/APl bounds: coco 32²/96² (default) or ytvis 128²/256² (the YouTube-VIS API)")
    p.add_argument("--json", type=Path, help="write all figures to this JSON file")
    p.add_argument("--table1", action="store_true",
                   help="with --workspace: F1 of the none / score / score+pmf settings (Table 1)")
    p.add_argument("--config", type=Path, help="with --table1: base config (default: the workspace's latest)")
    p.add_argument("--out", type=Path, help="with --table1: output folder (default <workspace>/exports/eval)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run ``eval``; returns the exit code (2 with a message on stderr for bad input)."""
    try:
        if args.workspace is not None or args.table1:
            return _run_table1(args)
        return _run_pred(args)
    except BadInputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def _run_pred(args: argparse.Namespace) -> int:
    from uvis.eval.frame_f1 import frame_f1
    from uvis.eval.ytvis_ap import evaluate_ytvis
    from uvis.eval.ytvis_io import frames_from_ytvis, load_ground_truth, load_results

    gt = load_ground_truth(args.gt)
    results = load_results(args.pred, gt)
    out: dict[str, Any] = {"gt": str(args.gt), "pred": str(args.pred), "class_agnostic": bool(args.class_agnostic)}
    if args.level in ("frame", "both"):
        frames = frames_from_ytvis(gt, results)
        f1 = frame_f1(frames.gt, frames.pred, class_agnostic=args.class_agnostic, iou_threshold=args.iou_threshold)
        out["frame"] = f1.to_dict(gt.categories)
        print(format_f1(out["frame"]))
    if args.level in ("video", "both"):
        ap = evaluate_ytvis(gt, results, class_agnostic=args.class_agnostic, area_ranges=args.area_ranges)
        out["video"] = ap.to_dict()
        print(format_ap(out["video"]))
    if args.json is not None:
        _write_json(args.json, out)
    return 0


def _run_table1(args: argparse.Namespace) -> int:
    from uvis.config import Config
    from uvis.eval.workspace_eval import table1_for_workspace, workspace_config

    if args.workspace is None:
        raise BadInputError("--table1 needs --workspace W (the workspace whose decisions to evaluate)")
    if not args.table1:
        raise BadInputError(
            "--workspace evaluates the Table-1 settings: add --table1 (or use --pred for a results file)"
        )
    base = Config.load(args.config) if args.config else workspace_config(args.workspace)
    table = table1_for_workspace(args.workspace, args.gt, base)
    out_dir = args.out if args.out is not None else Path(args.workspace) / "exports" / "eval"
    paths = table.save(out_dir)
    print(table.to_markdown())
    n = table.notes
    print(f"{n.get('videos_matched', 0)} videos, {n.get('frames_evaluated', 0)} frames evaluated; "
          f"{n.get('gt_videos_not_in_workspace', 0)} ground-truth videos not in the workspace")
    print("wrote " + ", ".join(str(p) for p in paths.values()))
    if args.json is not None:
        _write_json(args.json, table.to_dict())
    return 0


def _write_json(path: Path, data: dict[str, Any]) -> None:
    from uvis.fsutil import atomic_write_text

    atomic_write_text(path, json.dumps(data, indent=2))


def format_f1(d: dict[str, Any]) -> str:
    """A text table of a frame-level ``to_dict()``."""
    lines = [f"frame-level F1 (IoU > {d['iou_threshold']}, {d['num_frames']} frames"
             f"{', class-agnostic' if d['class_agnostic'] else ''})",
             f"{'class':<20} {'TP':>8} {'FP':>8} {'FN':>8} {'F1 %':>7}"]
    for name, c in d["per_class"].items():
        f1 = "-" if c["f1"] is None else f"{100 * c['f1']:.1f}"
        lines.append(f"{name[:20]:<20} {c['tp']:>8} {c['fp']:>8} {c['fn']:>8} {f1:>7}")
    mf1 = "-" if d["mF1"] is None else f"{100 * d['mF1']:.1f}"
    lines.append(f"{'mF1':<20} {'':>8} {'':>8} {'':>8} {mf1:>7}")
    return "\n".join(lines)


def format_ap(d: dict[str, Any]) -> str:
    """A text summary of a video-level ``to_dict()`` (COCO style, -1 = undefined)."""
    keys = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")
    agn = ", class-agnostic" if d["class_agnostic"] else ""
    head = f"video-level YouTube-VIS AP/AR ({d['num_videos']} videos{agn})"
    return head + "\n" + "  ".join(f"{k} {100 * d[k]:.1f}" if d[k] >= 0 else f"{k} -1" for k in keys)


def main(argv: Sequence[str] | None = None) -> int:
    """Stand-alone entry (``python -m uvis.eval.cli ...``)."""
    parser = argparse.ArgumentParser(prog="python -m uvis.eval.cli", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    configure_parser(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
