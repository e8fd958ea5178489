"""Build a proposer from the config (imports each backend only when chosen)."""
from __future__ import annotations

from typing import Any

from uvis.config import ProposerConfig
from uvis.errors import BadInputError
from uvis.proposers.base import Proposer
from uvis.types import VideoInfo

# The ProposerConfig fields each backend's outputs depend on (device excluded): the
# proposer part of the cache key (uvis.cache.cache_settings).
_OUTPUT_FIELDS: dict[str, tuple[str, ...]] = {
    "motion": ("motion_mode",),
    "file": ("file", "file_index"),
    "cutler": ("cutler_weights", "min_size", "max_size", "nms_threshold", "max_per_frame"),
    "detectron2": ("cutler_weights", "min_size", "max_size"),
}


def proposer_settings(cfg: ProposerConfig) -> dict[str, Any]:
    """The settings of ``cfg`` that change the chosen backend's proposals (device excluded).

    Weights and proposal-file digests are in the proposer's ``name``, which the cache
    key holds as well."""
    fields = _OUTPUT_FIELDS.get(cfg.backend, tuple(k for k in vars(cfg) if k != "device"))
    return {"backend": cfg.backend, **{k: getattr(cfg, k) for k in fields}}


def make_proposer(cfg: ProposerConfig, video_name: str, info: VideoInfo | None = None) -> Proposer:
    """The proposer of ``cfg.backend`` for one video.

    ``file`` proposals are looked up by ``video_name`` and mapped to processed frames
    through ``info.source_indices`` (stride); ``cutler`` loads the weights named by
    ``cfg.cutler_weights`` (registry name or local path).

    Raises:
        BadInputError: a weights or proposals file cannot be read (names the file).
    """
    try:
        return _make(cfg, video_name, info)
    except OSError as exc:
        raise BadInputError(f"proposer '{cfg.backend}': cannot read {exc.filename or 'its input file'}: "
                            f"{exc.strerror or exc}") from exc


def _make(cfg: ProposerConfig, video_name: str, info: VideoInfo | None) -> Proposer:
    if cfg.backend == "motion":
        from uvis.proposers.motion import MotionProposer

        return MotionProposer(mode=cfg.motion_mode)
    if cfg.backend == "file":
        from uvis.proposers.file import FileProposer

        assert cfg.file is not None  # validated by Config
        frame_map = list(info.source_indices) if info is not None and info.source_indices else None
        return FileProposer(cfg.file, video_name, index=cfg.file_index, frame_map=frame_map)
    if cfg.backend == "cutler":
        from uvis.proposers.cutler import CutlerProposer

        return CutlerProposer(cfg.cutler_weights, min_size=cfg.min_size, max_size=cfg.max_size, device=cfg.device,
                              nms_threshold=cfg.nms_threshold, max_per_frame=cfg.max_per_frame)
    if cfg.backend == "detectron2":
        from uvis.proposers.cutler.detectron2_backend import Detectron2Proposer

        return Detectron2Proposer(cfg.cutler_weights, min_size=cfg.min_size, max_size=cfg.max_size,
                                  device=cfg.device)
    raise ValueError(f"unknown proposer backend {cfg.backend!r}")
