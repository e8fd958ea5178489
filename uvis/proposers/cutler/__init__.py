"""CutLER class-agnostic proposals in plain PyTorch (torchvision ops, no detectron2).

Public API:
    * :func:`load_cutler` - a :class:`CutlerNet` from a detectron2-format state dict
      (official ``cutler_cascade_final.pth`` / ``cutler_mrcnn_final.pth``);
      ``net.detect(image, *, output_hw=None, resize=True, score_threshold=0.7)``.
    * :func:`load_checkpoint_file` - ``torch.load(weights_only=True)`` + unwrap.
    * :class:`CutlerProposer` - the pipeline's ``cutler`` proposer.
    * :class:`Detectron2CutlerProposer` (in :mod:`.detectron2_backend`) - the same
      checkpoint run by detectron2, when it is installed.
"""
from __future__ import annotations

from uvis.proposers.cutler.checkpoint import (
    CheckpointError,
    convert_detectron2_state_dict,
    load_checkpoint_file,
    load_cutler,
)
from uvis.proposers.cutler.config import CutlerConfig
from uvis.proposers.cutler.model import CutlerNet, RawDetections
from uvis.proposers.cutler.proposer import CutlerProposer

__all__ = [
    "CheckpointError",
    "CutlerConfig",
    "CutlerNet",
    "CutlerProposer",
    "RawDetections",
    "convert_detectron2_state_dict",
    "load_checkpoint_file",
    "load_cutler",
]
