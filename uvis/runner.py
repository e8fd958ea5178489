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
from uvis.proposers.base import Proposer
from uvis.types import Instances, VideoInfo
from uvis.workspace import Workspace, video_name_for


_SHARED_PROPOSERS = ("cutler", "detectron2")
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

        if self.config.proposer.backend in _SHARED_PROPOSERS:  # stateless models: load the weights once
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
            meta = self._meta(info, proposer, embedder)
            key = cache_key(meta.settings)
            directory = ws.cache_dir(name, key)
            writer = CacheWriter(directory, meta)
            ws.register_source(name, source)
            db = ws.db
            rec = db.video(name)
            usable = rec is not None and bool(rec.cache_key) and rec.cache_key != key and \
                (ws.cache_dir(name, rec.cache_key) / "meta.json").is_file()

            def point_here(status: str) -> None:
                db.upsert_video(name, source.path, cache_key=key, num_frames=info.num_frames, width=info.width,
                                height=info.height, status=status)

            if rec is not None and rec.cache_key == key:
                point_here("running")
            elif usable:
                db.set_video_status(name, "running")  # keeps deciding from its complete cache meanwhile
            else:
                db.upsert_video(name, source.path, cache_key=None, num_frames=info.num_frames, width=info.width,
                                height=info.height, status="running")
            start = writer.first_missing()
            if progress:
                progress(Progress(name, start, info.num_frames, start))

            def started() -> None:
                if not usable:  # a video with no usable cache shows its frames as they come
                    point_here("running")
                if on_started is not None:
                    on_started()

            try:
                if start < info.num_frames:
                    self._run_frames(reader, proposer, embedder, writer, start, progress, cancel, started)
                else:
                    started()
            except Cancelled:
                db.set_video_status(name, "cancelled")
                raise
            except KeyboardInterrupt:
                db.set_video_status(name, "cancelled")
                raise
            except BaseException:
                db.set_video_status(name, "failed")
                raise
            done = writer.first_missing()
            if done >= info.num_frames:
                point_here("done")
                try:  # complete: one memory-mapped column set replaces the per-frame files
                    consolidate(directory)
                except (OSError, ColumnsError) as exc:  # the per-frame files keep serving the cache
                    warnings.append(f"{name}: cache not consolidated into columns ({exc})")
            else:
                db.set_video_status(name, "partial")
        cache = VideoCache.load(directory)
        cache.warnings = warnings
        return cache

    def _meta(self, info: VideoInfo, proposer: Proposer, embedder: Embedder) -> CacheMeta:
        """The cache metadata (and key settings) of a run of ``proposer`` and ``embedder``."""
        from uvis.embedders.factory import embedder_settings
        from uvis.proposers.factory import proposer_settings

        vc = self.config.video
        settings = cache_settings(proposer.name, proposer_settings(self.config.proposer), embedder.name,
                                  embedder_settings(self.config.embedder), vc.stride, vc.max_side)
        return CacheMeta(info=info, proposer=proposer.name, embedder=embedder.name,
                         embedder_config=asdict(self.config.embedder), embedding_dim=int(embedder.dim),
                         has_text=bool(embedder.has_text), logit_scale=float(embedder.logit_scale),
                         settings=settings)

    def _run_frames(self, reader, proposer: Proposer, embedder: Embedder, writer: CacheWriter, start: int,
                    progress: ProgressFn | None, cancel: threading.Event | None,
                    first_written: Callable[[], None]) -> None:
        """Propose, embed and cache frames ``start..`` (stateful proposers first see their
        ``context_frames`` preceding frames, results discarded)."""
        info = reader.info
        proposer.reset()
        warm = max(0, start - int(getattr(proposer, "context_frames", 0)))
        for t, frame in reader.frames(start=warm):
            if cancel is not None and cancel.is_set():
                raise Cancelled(f"labelling of {info.name} cancelled at frame {t}")
            inst = proposer.propose(frame, t)
            if t < start:
                continue
            writer.write_frame(t, self._embed(embedder, frame, inst))
            if t == start:
                first_written()
            if progress:
                progress(Progress(info.name, t + 1, info.num_frames, start))

    def _embed(self, embedder: Embedder, frame, inst: Instances) -> Instances:
        emb = embedder.embed_crops(frame, inst.boxes, inst.masks)
        return inst.with_fields(embeddings=emb.reshape(len(inst), embedder.dim))
