"""The MinVIS video instance segmentation model (frame-level Mask2Former R50) in plain PyTorch.

Entry points (imported lazily: ``import uvis.vis`` does not import torch):
:class:`~uvis.vis.config.MinVISConfig`, :func:`~uvis.vis.model.build_minvis`,
:func:`~uvis.vis.model.load_minvis`; a model's ``frame_outputs`` and ``predict_video``.
See docs/vis-model.md.
"""
from __future__ import annotations

from typing import Any

__all__ = ["MinVISConfig", "build_minvis", "load_minvis", "load_checkpoint_file"]


def __getattr__(name: str) -> Any:
    if name == "MinVISConfig":
        from uvis.vis.config import MinVISConfig

        return MinVISConfig
    if name in ("build_minvis", "load_minvis"):
        from uvis.vis import model

        return getattr(model, name)
    if name == "load_checkpoint_file":
        from uvis.vis.checkpoint import load_checkpoint_file

        return load_checkpoint_file
    raise AttributeError(f"module 'uvis.vis' has no attribute {name!r}")
