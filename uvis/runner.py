"""The expensive stages: decode frames, propose, embed, write the per-video cache.

Models run once per frame; a killed run resumes at the first missing frame (stateful
proposers are first fed their ``context_frames`` preceding frames, results discarded).
"""
from __future__ import annotations

import threading
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

from uvis.cache import CacheMeta, CacheWriter, VideoCache, cache_key, cache_settings
from uvis.columns import ColumnsError, consolidate
from uvis.config import Config
from uvis.embedders.base import Embedder
from uvis.engines.local import label_frames
from uvis.proposers.base import Proposer
from uvis.types import VideoInfo
from uvis.workspace import VideoSource, Workspace, video_name_for


SHARED_PROPOSERS = ("cutler", "detectron2")
"""Backends whose proposer holds no per-video state: one instance serves every video."""


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


@dataclass(frozen=True)
class ModelIdentity:
    """What a cache records of the models that made it: the proposer's name and the
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


def cache_meta(config: Config, info: VideoInfo, models: ModelIdentity) -> CacheMeta:
    """The cache metadata (and key settings) of a run of ``models`` under ``config``."""
    from uvis.embedders.factory import embedder_settings
    from uvis.proposers.factory import proposer_settings

    vc = config.video
    settings = cache_settings(models.proposer, proposer_settings(config.proposer), models.embedder,
                              embedder_settings(config.embedder), vc.stride, vc.max_side)
    return CacheMeta(info=info, proposer=models.proposer, embedder=models.embedder,
                     embedder_config=asdict(config.embedder), embedding_dim=models.embedding_dim,
                     has_text=models.has_text, logit_scale=models.logit_scale, settings=settings)


class VideoRun:
    """The workspace side of labelling one video: its cache writer and database row.

    Creating it prepares the cache (``meta.json``; refused if made otherwise), records
    the video's source and marks it ``running``. The database points the video at the
    new cache at :meth:`started` when the video had no usable cache, else only once the
    new cache is complete (:meth:`finish`); :meth:`mark` records ``failed`` or
    ``cancelled``. Used by both engines (the Ray driver alone writes the database).
    """

    def __init__(self, workspace: Workspace, name: str, source: VideoSource, meta: CacheMeta) -> None:
        self.workspace, self.name, self.source, self.meta = workspace, name, source, meta
        info = meta.info
        self.key = cache_key(meta.settings)
        self.writer = CacheWriter(workspace.cache_dir(name, self.key), meta)
        workspace.register_source(name, source)
        db = workspace.db
        rec = db.video(name)
        self.usable = rec is not None and bool(rec.cache_key) and rec.cache_key != self.key and \
            (workspace.cache_dir(name, rec.cache_key) / "meta.json").is_file()
        if rec is not None and rec.cache_key == self.key:
            self._point_here("running")
        elif self.usable:
            db.set_video_status(name, "running")  # keeps deciding from its complete cache meanwhile
        else:
            db.upsert_video(name, source.path, cache_key=None, num_frames=info.num_frames, width=info.width,
                            height=info.height, status="running")
        self._started = False
        self.warnings: list[str] = []

    @property
    def directory(self) -> Path:
        return self.writer.directory

    def _point_here(self, status: str) -> None:
        info = self.meta.info
        self.workspace.db.upsert_video(self.name, self.source.path, cache_key=self.key, num_frames=info.num_frames,
                                       width=info.width, height=info.height, status=status)

    def started(self) -> None:
        """The run has started successfully (first new frame cached, or nothing to compute)."""
        if not self._started and not self.usable:  # a video with no usable cache shows its frames as they come
            self._point_here("running")
        self._started = True

    def mark(self, status: str) -> None:
        """Record ``failed`` or ``cancelled``."""
        self.workspace.db.set_video_status(self.name, status)

    def finish(self) -> bool:
        """Record ``done`` (pointing the video here) or ``partial``; True when complete.

        A complete cache is consolidated: one memory-mapped column set replaces its
        per-frame files (if that fails, :attr:`warnings` says so and the files serve)."""
        complete = self.writer.first_missing() >= self.meta.info.num_frames
        if complete:
            self._point_here("done")
            try:
                consolidate(self.directory)
            except (OSError, ColumnsError) as exc:
                self.warnings.append(f"{self.name}: cache not consolidated into columns ({exc})")
        else:
            self.mark("partial")
        return complete


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

    def _proposer(self, video: str, info: VideoInfo, lookup: str) -> Proposer:
        if self._proposer_factory is not None:
            return self._proposer_factory(video, info)
        from uvis.proposers.factory import make_proposer

        if self.config.proposer.backend in SHARED_PROPOSERS:  # stateless models: load the weights once
            if self._shared_proposer is None:
                self._shared_proposer = make_proposer(self.config.proposer, video, info)
            return self._shared_proposer
        # a file proposer finds the video's proposals under the name asked for (or the
        # source's own), even when a name clash made the workspace name differ
        return make_proposer(self.config.proposer, lookup, info)

    def label_video(self, path: str | Path, *, name: str | None = None, progress: ProgressFn | None = None,
                    cancel: threading.Event | None = None,
                    on_started: Callable[[], None] | None = None) -> VideoCache:
        """Process one video (file or frame folder) into the workspace cache and return it.

        The video's name is ``name`` (refused if unsafe or another source's), else derived
        from the path with ``_2``, ``_3``... while it is another video's (see
        :meth:`~uvis.workspace.Workspace.resolve_video_name`; the returned cache's
        ``warnings`` say so, with the reader's warnings). Nothing is changed in the
        workspace before the video is open and the models are built. The database points
        the video at the new cache after its first frame when the video had no usable
        cache, else only once the new cache is complete; a run that fails marks the video
        ``failed`` (a cancelled one ``cancelled``). ``on_started`` is called once, when the
        run has started successfully (first new frame cached, or nothing left to compute).

        Raises:
            BadInputError: unreadable video, unsafe or clashing name, cache made with other
                settings in the way.
            Cancelled: ``cancel`` was set; finished frames stay cached.
        """
        from uvis.video import open_video

        vc = self.config.video
        ws = self.workspace
        lookup = name or video_name_for(path)  # a file proposer's name for the video (a clash renames it)
        name, source, note = ws.resolve_video_name(path, name)
        with open_video(path, stride=vc.stride, max_frames=vc.max_frames, max_side=vc.max_side,
                        name=name) as reader:
            info = reader.info
            warnings = ([note] if note else []) + list(reader.warnings)
            proposer = self._proposer(name, info, lookup)
            embedder = self.embedder
            run = VideoRun(ws, name, source, cache_meta(self.config, info, ModelIdentity.of(proposer, embedder)))
            directory = run.directory
            start = run.writer.first_missing()
            if progress:
                progress(Progress(name, start, info.num_frames, start))

            def started() -> None:
                run.started()
                if on_started is not None:
                    on_started()

            try:
                if start < info.num_frames:
                    self._run_frames(reader, proposer, embedder, run.writer, start, progress, cancel, started)
                else:
                    started()
            except (Cancelled, KeyboardInterrupt):
                run.mark("cancelled")
                raise
            except BaseException:
                run.mark("failed")
                raise
            run.finish()
            warnings.extend(run.warnings)
        cache = VideoCache.load(directory)
        cache.warnings = warnings
        return cache

    def _run_frames(self, reader, proposer: Proposer, embedder: Embedder, writer: CacheWriter, start: int,
                    progress: ProgressFn | None, cancel: threading.Event | None,
                    first_written: Callable[[], None]) -> None:
        """Propose, embed and cache frames ``start..`` (stateful proposers first see their
        ``context_frames`` preceding frames, results discarded)."""
        info = reader.info
        proposer.reset()

        def check_cancel(t: int) -> None:
            if cancel is not None and cancel.is_set():
                raise Cancelled(f"labelling of {info.name} cancelled at frame {t}")

        def written(t: int) -> None:
            if t == start:
                first_written()
            if progress:
                progress(Progress(info.name, t + 1, info.num_frames, start))

        label_frames(reader, proposer, embedder, writer, start=start, stop=info.num_frames,
                     before_frame=check_cancel, after_frame=written)
