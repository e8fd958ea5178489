"""Export and evaluation actions of the app: thin wrappers over ``uvis.export`` / ``uvis.eval``.

Each returns a message (and a file path for downloads); missing optional modules or
packages become a message naming what is missing, never a crash. Outputs are written
under ``<workspace>/exports`` so the app serves nothing outside the workspace.
"""
from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any, Callable

from uvis.config import Config
from uvis.decide import VideoResult
from uvis.errors import BadInputError

_DATASET_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._-]{0,99}$")


def check_dataset_name(name: str) -> str:
    """A FiftyOne dataset name: letters, digits, space, ``._-``, 1–100 characters.

    Raises:
        BadInputError: empty or with other characters.
    """
    name = (name or "").strip()
    if not _DATASET_NAME.match(name):
        raise BadInputError(f"dataset name {name!r}: use 1-100 letters, digits, spaces, '.', '_' or '-'")
    return name


def _stamp() -> str:
    return time.strftime("%Y%m%d-%H%M%S")


def export_fiftyone(results: dict[str, VideoResult], name: str, *, overwrite: bool, exports_dir: Path,
                    append: bool = False, progress: Callable[..., None] | None = None) -> str:
    """Export to a FiftyOne dataset ``name``; returns the dataset name.

    Raises:
        BadInputError: bad name, or the dataset exists and neither ``overwrite`` nor ``append``.
        MissingDependencyError / ModuleNotFoundError: FiftyOne or the exporter is missing.
    """
    from uvis.export.fiftyone_export import export_fiftyone as _export

    name = check_dataset_name(name)
    media = exports_dir / "fiftyone_media"
    media.mkdir(parents=True, exist_ok=True)
    return _export(results, name, overwrite=overwrite, append=append, media_dir=media, progress=progress)


def open_in_fiftyone(name: str, port: int) -> Any:
    """Launch (or reuse) the FiftyOne App on 127.0.0.1 for dataset ``name``; returns its
    handle (``.url`` opens the dataset, ``.stop()`` ends a server it started)."""
    from uvis.export.fiftyone_app import launch_app

    return launch_app(check_dataset_name(name), port=port, address="127.0.0.1")


def export_ytvis(results: dict[str, VideoResult], exports_dir: Path) -> Path:
    """YouTube-VIS annotation JSON of the kept pseudo-labels; returns the file."""
    from uvis.export.ytvis import export_ytvis as _export

    exports_dir.mkdir(parents=True, exist_ok=True)
    out = exports_dir / f"ytvis-{_stamp()}.json"
    ret = _export(results, out)
    return Path(ret) if isinstance(ret, (str, Path)) and Path(ret).is_file() else out


def export_coco(results: dict[str, VideoResult], exports_dir: Path) -> Path:
    """COCO instances JSON (per-frame images); returns the JSON file."""
    from uvis.export.coco import export_coco as _export

    out_dir = exports_dir / f"coco-{_stamp()}"
    out_dir.mkdir(parents=True, exist_ok=True)
    ret = _export(results, out_dir)
    if isinstance(ret, (str, Path)) and Path(ret).is_file():
        return Path(ret)
    found = sorted(out_dir.rglob("*.json"))
    if not found:
        raise BadInputError(f"the COCO exporter wrote no JSON file into {out_dir}")
    return found[0]


def table1_markdown(workspace_dir: Path, gt_path: Path, config: Config,
                    decide: Callable[[Config], dict[str, VideoResult]]) -> str:
    """Per-class F1 (none / score / score+PMF) as a Markdown table, using the app's loaded project."""
    from uvis.eval.workspace_eval import table1_for_workspace

    table = table1_for_workspace(workspace_dir, gt_path, config, decide=decide)
    notes = getattr(table, "notes", {}) or {}
    extra = ""
    if isinstance(notes, dict):
        facts = {k: v for k, v in notes.items() if k not in ("rows", "gt", "workspace")}
        if facts:
            extra = "\n\n" + "; ".join(f"{k}: {v}" for k, v in facts.items())
    return table.to_markdown() + extra
