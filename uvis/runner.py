"""The expensive stages: decode frames, propose, embed, write the per-video cache.

Models run once per frame; a killed run resumes at the first missing frame (stateful
proposers are first fed their ``context_frames`` preceding frames, results discarded).
"""
from __future__ import annotations

import threading
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

from uvis.cache import CacheMeta, CacheWriter, VideoCache, cache_key
from uvis.config import Config
from uvis.embedders.base import Embedder
from uvis.engines.local import label_frames
from uvis.proposers.base import Proposer
from uvis.types import Instances, VideoInfo
from uvis.workspace import Workspace, video_name_for


SHARED_PROPOSERS = ("cutler", "detectron2")
"""Backends whose proposer holds no per-video state: one instance serves every video."""


@dataclass(frozen=True)
class ModelIdentity:
    """What the cache records of the models that made it: the proposer's name and the
    embedder's name, dimension D, text encoder presence and logit scale."""

    proposer: str
    embedder: str
    embedding_dim: int
    has_text: bool
    logit_scale: float

    @classmethod
    def of(cls, proposer: Proposer, embedder: Embedder) -> "ModelIdentity":
        return cls(proposer.name, embedder.name, int(embedder.dim), bool(embedder.has_text),
                   float(embedder.logit_scale))


def open_cache(workspace: Workspace, config: Config, path: str | Path, info: VideoInfo,
               models: ModelIdentity) -> CacheWriter:
    """The cache writer of video ``info.name`` made by ``models`` under ``config`` (meta.json
    written, stale temporaries removed); its database row is recorded as ``running``."""
    vc = config.video
    key = cache_key(models.proposer, models.embedder, vc.stride, vc.max_side)
    meta = CacheMeta(info=info, proposer=models.proposer, embedder=models.embedder,
                     embedder_config=asdict(config.embedder), embedding_dim=models.embedding_dim,
                     has_text=models.has_text, logit_scale=models.logit_scale)
    writer = CacheWriter(workspace.cache_dir(info.name, key), meta)
    workspace.db.upsert_video(info.name, str(Path(path).resolve()), cache_key=key, num_frames=info.num_frames,
                              width=info.width, height=info.height, status="running")
    return writer


class Cancelled(Exception):
    """Raised when a run is cancelled through its cancel event; the cache stays valid."""


@dataclass(frozen=True)
class Progress:
    """Progress of one video: processed frames ``done`` of ``total`` (resumed runs count cached ones)."""

    video: str
    done: int
    total: int
    resumed_from: int


ProgressFn = Callable[[Progress], None]
ProposerFactory = Callable[[str, VideoInfo], Proposer]


class Runner:
    """Runs proposer and embedder over videos into a workspace.

    Args:
        workspace: target workspace.
        config: run configuration (video reading, proposer, embedder sections are used).
        embedder: an already built embedder (else built from ``config.embedder`` on first use).
        proposer_factory: ``(video_name, info) -> Proposer`` (else built from ``config.proposer``).
    """

    def __init__(self, workspace: Workspace, config: Config, *, embedder: Embedder | None = None,
                 proposer_factory: ProposerFactory | None = None) -> None:
        self.workspace = workspace
        self.config = config.validate()
        self._embedder = embedder
        self._proposer_factory = proposer_factory
        self._shared_proposer: Proposer | None = None

    @property
    def embedder(self) -> Embedder:
        if self._embedder is None:
            from uvis.embedders.factory import make_embedder

            self._embedder = make_embedder(self.config.embedder)
        return self._embedder

    def _proposer(self, video: str, info: VideoInfo) -> Proposer:
        if self._proposer_factory is not None:
            return self._proposer_factory(video, info)
        from uvis.proposers.factory import make_proposer

        if self.config.proposer.backend in SHARED_PROPOSERS:  # stateless models: load the weights once
            if self._shared_proposer is None:
                self._shared_proposer = make_proposer(self.config.proposer, video, info)
            return self._shared_proposer
        return make_proposer(self.config.proposer, video, info)

    def label_video(self, path: str | Path, *, name: str | None = None, progress: ProgressFn | None = None,
                    cancel: threading.Event | None = None) -> VideoCache:
        """Process one video (file or frame folder) into the workspace cache and return it.

        Raises:
            BadInputError: unreadable video.
            Cancelled: ``cancel`` was set; finished frames stay cached.
        """
        from uvis.video import open_video

        vc = self.config.video
        name = name or video_name_for(path)
        with open_video(path, stride=vc.stride, max_frames=vc.max_frames, max_side=vc.max_side,
                        name=name) as reader:
            info = reader.info
            proposer = self._proposer(name, info)
            embedder = self.embedder
            writer = open_cache(self.workspace, self.config, path, info, ModelIdentity.of(proposer, embedder))
            directory = writer.directory
            db = self.workspace.db
            start = writer.first_missing()
            if progress:
                progress(Progress(name, start, info.num_frames, start))

            def check_cancel(t: int) -> None:
                if cancel is not None and cancel.is_set():
                    db.set_video_status(name, "cancelled")
                    raise Cancelled(f"labelling of {name} cancelled at frame {t}")

            def report(t: int) -> None:
                if progress:
                    progress(Progress(name, t + 1, info.num_frames, start))

            if start < info.num_frames:
                proposer.reset()
                label_frames(reader, proposer, embedder, writer, start=start, stop=info.num_frames,
                             before_frame=check_cancel, after_frame=report)
            done = writer.first_missing()
            db.set_video_status(name, "done" if done >= info.num_frames else "partial")
        return VideoCache.load(directory)
