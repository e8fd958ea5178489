"""The Ray engine's worker: one process that loads the models once and labels chunks.

:class:`LabelWorker` is a plain class; :mod:`uvis.engines.ray_engine` turns it into a
Ray actor (``ray.remote``), so this module imports neither ray nor torch at import
time. A worker checks at start that it sees the workspace (shared storage), loads the
embedder and a shared proposer (CutLER, detectron2) once, and processes
:class:`ChunkJob` s with :func:`uvis.engines.local.label_frames`, writing the same
per-frame cache files as the local engine (atomically). It never opens the SQLite
database: the driver alone writes it.
"""
from __future__ import annotations

import os
import socket
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from uvis.cache import CacheMeta, CacheWriter
from uvis.config import Config
from uvis.embedders.base import Embedder
from uvis.engines.chunks import FrameRange
from uvis.engines.local import context_frames, label_frames
from uvis.errors import BadInputError, UvisError
from uvis.proposers.base import Proposer
from uvis.runner import SHARED_PROPOSERS, ModelIdentity
from uvis.types import VideoInfo
from uvis.video import VideoReader

_OPEN_READERS = 2
"""Videos a worker keeps open (chunks of one video often follow each other)."""


class FrameError(UvisError):
    """Processing frame ``frame`` of ``video`` failed on a worker; ``message`` says how
    (picklable: it travels from the worker to the driver)."""

    def __init__(self, video: str, frame: int | None, message: str) -> None:
        super().__init__(video, frame, message)
        self.video, self.frame, self.message = video, frame, message

    def __str__(self) -> str:
        where = self.video if self.frame is None else f"{self.video} frame {self.frame}"
        return f"{where}: {self.message}"


class WorkspaceNotShared(BadInputError):
    """A worker cannot see or write the workspace: it is not on storage every node shares."""


@dataclass(frozen=True)
class WorkerInfo:
    """Where a worker runs: its index, process id, node address and host name, torch
    device and intra-op thread count."""

    index: int
    pid: int
    node: str
    host: str
    device: str
    threads: int

    def describe(self) -> str:
        return f"worker {self.index}: pid {self.pid} on {self.node} ({self.host}), {self.device}, {self.threads} threads"


@dataclass(frozen=True)
class ChunkJob:
    """Frames ``frames`` of video ``meta.info`` (file or folder ``path``; a file proposer
    looks it up as ``lookup``) into the cache folder ``cache_dir``."""

    path: str
    lookup: str
    cache_dir: str
    meta: CacheMeta
    frames: FrameRange

    @property
    def video(self) -> str:
        return self.meta.info.name

    def describe(self) -> str:
        return f"{self.video} frames {self.frames.start}-{self.frames.stop - 1}"


@dataclass(frozen=True)
class ChunkResult:
    """A finished chunk: frames written and found cached, by which worker process."""

    job: ChunkJob
    written: int
    cached: int
    pid: int


def probe_workspace(root: Path, probe: Path, token: str, who: str) -> None:
    """Check that ``probe`` (written by the driver into the workspace ``root``) holds
    ``token`` here, and that this process can write beside it.

    Raises:
        WorkspaceNotShared: naming ``who`` (the worker), the workspace and the remedy.
    """
    remedy = ("the workspace must be on storage that every Ray node mounts at the same path "
              "(NFS, a cluster file system); see docs/scale-out.md")
    try:
        seen = probe.read_text()
    except OSError:
        seen = None
    if seen != token:
        state = "is missing" if seen is None else "holds another run's token"
        raise WorkspaceNotShared(f"{who} cannot see the workspace {root}: the check file {probe} {state} "
                                 f"on that node; {remedy}")
    reply = probe.with_name(f"{probe.name}.{socket.gethostname()}.{os.getpid()}")
    try:
        reply.write_text(token)
    except OSError as exc:
        raise WorkspaceNotShared(f"{who} cannot write into the workspace {root} ({exc}); {remedy}") from exc


class LabelWorker:
    """One labelling worker (a Ray actor; see the module docstring).

    Args:
        config: the run's config as a dict (``Config.to_dict()``).
        index: the worker's number (for messages).
        threads: torch intra-op threads (the worker's CPU share). Same-thread-count runs
            are bit-identical on CPU; kernels split reductions by thread count.
        use_gpu: run the models on the GPU Ray assigned (``cuda``).
    """

    def __init__(self, config: dict[str, Any], index: int, threads: int, use_gpu: bool) -> None:
        import torch

        torch.set_num_threads(max(1, int(threads)))
        self.config = Config.from_dict(config).validate()
        if use_gpu:
            self.config.proposer.device = self.config.embedder.device = "cuda"
        self.index = int(index)
        self._embedder: Embedder | None = None
        self._shared_proposer: Proposer | None = None
        self._readers: OrderedDict[str, VideoReader] = OrderedDict()

    # ---- start-up --------------------------------------------------------------------
    def hello(self, root: str, probe: str, token: str) -> WorkerInfo:
        """Check the workspace is visible and writable here, load the models; who am I."""
        import torch

        info = self.info()
        probe_workspace(Path(root), Path(probe), token, info.describe())
        self._models()
        info = WorkerInfo(info.index, info.pid, info.node, info.host, self.config.embedder.device,
                          torch.get_num_threads())
        return info

    def info(self) -> WorkerInfo:
        import torch

        try:
            import ray

            node = ray.util.get_node_ip_address()
        except Exception:  # pragma: no cover - outside Ray
            node = "local"
        return WorkerInfo(self.index, os.getpid(), node, socket.gethostname(), self.config.embedder.device,
                          torch.get_num_threads())

    def identify(self, videos: list[tuple[str, VideoInfo]]) -> list[tuple[ModelIdentity, int]]:
        """Per ``(lookup name, info)``: the identity of the models that label the video
        (the cache key's inputs) and the proposer's ``context_frames`` (0: stateless)."""
        embedder = self._models()
        out = []
        for lookup, info in videos:
            proposer = self._proposer(lookup, info)
            out.append((ModelIdentity.of(proposer, embedder), context_frames(proposer)))
        return out

    # ---- work ------------------------------------------------------------------------
    def run(self, job: ChunkJob) -> ChunkResult:
        """Label one chunk into its cache (frames already cached are not rewritten).

        Raises:
            FrameError: naming the video and the frame that failed (``frame`` None: the
                video cannot be opened here, or reads differently than on the driver).
        """
        current: list[int | None] = [None]

        def at(t: int) -> None:
            current[0] = t

        try:
            reader = self._reader(job)
            proposer = self._proposer(job.lookup, job.meta.info)
            proposer.reset()
            writer = CacheWriter(Path(job.cache_dir), job.meta, prepare=False)
            r = job.frames
            done = label_frames(reader, proposer, self._models(), writer, start=r.start, stop=r.stop,
                                warm_from=r.warm_from, before_frame=at)
        except Exception as exc:
            message = str(exc) if isinstance(exc, UvisError) else f"{type(exc).__name__}: {exc}"
            raise FrameError(job.video, current[0], message) from exc
        return ChunkResult(job, done.written, done.cached, os.getpid())

    def pid(self) -> int:
        return os.getpid()

    # ---- internals -------------------------------------------------------------------
    def _models(self) -> Embedder:
        if self._embedder is None:
            from uvis.embedders.factory import make_embedder

            self._embedder = make_embedder(self.config.embedder)
        if self.config.proposer.backend in SHARED_PROPOSERS and self._shared_proposer is None:
            from uvis.proposers.factory import make_proposer

            self._shared_proposer = make_proposer(self.config.proposer, "", None)
        return self._embedder

    def _proposer(self, lookup: str, info: VideoInfo) -> Proposer:
        self._models()
        if self._shared_proposer is not None:
            return self._shared_proposer
        from uvis.proposers.factory import make_proposer

        return make_proposer(self.config.proposer, lookup, info)

    def _reader(self, job: ChunkJob) -> VideoReader:
        reader = self._readers.get(job.path)
        if reader is not None:
            self._readers.move_to_end(job.path)
            return reader
        from uvis.video import open_video

        vc = self.config.video
        reader = open_video(job.path, stride=vc.stride, max_frames=vc.max_frames, max_side=vc.max_side,
                            name=job.video)
        if reader.info != job.meta.info:
            reader.close()
            raise BadInputError(f"{job.path} reads differently on {self.info().describe()} than on the driver "
                                f"({reader.info.num_frames} frames of {reader.info.width}x{reader.info.height} "
                                f"vs {job.meta.info.num_frames} of {job.meta.info.width}x{job.meta.info.height}); "
                                "every node must see the same video files at the same path")
        self._readers[job.path] = reader
        while len(self._readers) > _OPEN_READERS:
            self._readers.popitem(last=False)[1].close()
        return reader
