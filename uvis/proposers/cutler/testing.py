"""Deterministic stand-in CutLER weights for tests (no download needed).

The reference fixtures (``shared/fixtures/cutler-ref``) ship a key manifest and a
``recipe.py`` that makes every tensor from a seed. These helpers rebuild that state dict
and write it as an official-style checkpoint (``{"model": state_dict}``), so tests and
end-to-end runs can use ``CutlerProposer`` / ``--cutler-weights PATH`` without the real
file. ``recipe.py`` is imported from its path with importlib (no ``sys.path`` edits).
"""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType
from typing import Any

import torch

from uvis.errors import BadInputError

RECIPE_FILE = "recipe.py"


def load_recipe(fixture_dir: str | Path) -> ModuleType:
    """Import ``recipe.py`` of a fixture folder as a module (not added to ``sys.modules``)."""
    path = Path(fixture_dir) / RECIPE_FILE
    if not path.is_file():
        raise BadInputError(f"no {RECIPE_FILE} in {fixture_dir}")
    spec = importlib.util.spec_from_file_location("uvis_cutler_fixture_recipe", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def read_manifest(manifest_json: str | Path) -> tuple[list[list[Any]], int]:
    """The ``[[key, shape, dtype], ...]`` manifest and the seed stored in a fixture ``.json``."""
    data = json.loads(Path(manifest_json).read_text())
    return data["manifest"], int(data.get("seed", 0))


def recipe_state_dict(manifest_json: str | Path, seed: int | None = None) -> dict[str, torch.Tensor]:
    """The fixture's stand-in state dict (detectron2 key names), as torch tensors.

    Args:
        manifest_json: a fixture ``.json`` (e.g. ``dev_astronaut.json``); ``recipe.py``
            is taken from the same folder.
        seed: recipe seed; default the one stored in the ``.json``.
    """
    manifest, stored_seed = read_manifest(manifest_json)
    recipe = load_recipe(Path(manifest_json).parent)
    arrays = recipe.recipe_state_dict(stored_seed if seed is None else seed, manifest)
    return {key: torch.from_numpy(value) for key, value in arrays.items()}


def write_recipe_checkpoint(path: str | Path, manifest_json: str | Path, seed: int = 7) -> Path:
    """Save the stand-in weights as ``{"model": state_dict}`` with ``torch.save``; returns ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": recipe_state_dict(manifest_json, seed)}, path)
    return path
