"""Label a dataset on a Ray cluster: ``python -m uvis label ... --engine ray``.

The driver (this module, in the ``uvis label`` process):

1. connects to Ray (``address``: ``None`` starts a local instance, ``"auto"`` joins the
   cluster running on this machine, ``HOST:PORT`` a head node);
2. starts ``workers`` actors (:class:`~uvis.engines.ray_worker.LabelWorker`, each with
   ``cpus_per_worker`` CPUs and ``gpus_per_worker`` GPUs); every worker checks that it
   sees and can write the workspace (a check file the driver wrote) and loads the
   models once — a worker that cannot fails the run with a message naming its node;
3. opens every video, records it in the workspace database (the driver alone writes
   SQLite), prepares its cache folder and plans the missing frames into chunks
   (:mod:`uvis.engines.chunks`: stateful proposers get whole videos fed from frame 0,
   so outputs equal a single-process run);
4. keeps every worker busy with chunks (two in flight each), shows one progress count
   over all frames (frames found on disk, so nothing is counted twice) and reports a
   failed chunk with its worker, video and frame.

Fault tolerance: an actor whose process dies is restarted by Ray (``max_restarts``) and
its unfinished calls are retried (``max_task_retries``); a retried chunk skips the
frames the dead process already cached. Cache files are written atomically (temporary
file, then rename), so a killed worker or driver leaves no half-written frame; a
re-run plans only the frames without a file.
"""
from __future__ import annotations

import math
import os
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from uvis.config import Config
from uvis.engines.chunks import plan_chunks
from uvis.engines.ray_worker import ChunkJob, ChunkResult, FrameError, LabelWorker, WorkerInfo
from uvis.errors import BadInputError, UvisError, require
from uvis.runner import VideoRun, cache_meta
from uvis.workspace import Workspace, video_name_for

RAY_VERSION = "2.60.0"
"""The Ray release this engine is tested with (pinned in constraints.txt)."""

INSTALL_RAY = f'pip install "ray=={RAY_VERSION}"  (or: pip install -e ".[ray]")'

FORWARDED_ENV_PREFIXES = ("UVIS_", "HF_")
"""Driver environment variables passed on to the workers (weights cache, offline mode)."""

IN_FLIGHT_PER_WORKER = 2
POLL_SECONDS = 0.5
START_TIMEOUT_S = 600.0


def require_ray() -> Any:
    """The ``ray`` module, or :class:`MissingDependencyError` naming the pip command."""
    return require("ray", INSTALL_RAY)


@dataclass(frozen=True)
class RayOptions:
    """How to run on Ray.

    Args:
        address: ``None`` (start a local Ray instance), ``"auto"`` (the cluster already
            running on this machine) or ``HOST:PORT`` of a head node.
        workers: number of actors; ``None``: as many as the cluster's free CPUs (or
            GPUs, with ``gpus_per_worker``) allow.
        cpus_per_worker: CPUs per actor (> 0); also its torch thread count (at least 1).
        gpus_per_worker: GPUs per actor (>= 0; fractions share a GPU); > 0 runs the
            models on ``cuda`` (the GPU Ray assigns).
        chunk_frames: frames per work unit of a stateless proposer (>= 1).
        max_restarts: restarts of a dead actor, and retries of its unfinished chunks.
    """

    address: str | None = None
    workers: int | None = None
    cpus_per_worker: float = 1.0
    gpus_per_worker: float = 0.0
    chunk_frames: int = 8
    max_restarts: int = 3

    def validate(self) -> "RayOptions":
        if self.workers is not None and self.workers < 1:
            raise BadInputError(f"--workers must be >= 1, got {self.workers}")
        if not self.cpus_per_worker > 0:
            raise BadInputError(f"--cpus-per-worker must be > 0, got {self.cpus_per_worker}")
        if not self.gpus_per_worker >= 0:
            raise BadInputError(f"--gpus-per-worker must be >= 0, got {self.gpus_per_worker}")
        if self.chunk_frames < 1:
            raise BadInputError(f"--chunk-frames must be >= 1, got {self.chunk_frames}")
        if self.max_restarts < 0:
            raise BadInputError(f"max_restarts must be >= 0, got {self.max_restarts}")
        return self

    @property
    def threads(self) -> int:
        return max(1, int(self.cpus_per_worker))


@dataclass(frozen=True)
class WorkerFailure:
    """A chunk that failed: which worker, video and frame (``None``: before any frame)."""

    worker: str
    video: str
    frame: int | None
    message: str

    def describe(self) -> str:
        where = f"{self.video} frame {self.frame}" if self.frame is not None else self.video
        return f"{self.worker} failed on {where}: {self.message}"


@dataclass
class RayRun:
    """Outcome of :func:`label_with_ray`.

    ``videos``: workspace names of the videos whose every frame is cached;
    ``failed``: input paths that could not be labelled (bad video or a failed chunk);
    ``failures``: per-worker failures; ``frames_total``/``frames_cached_before``/
    ``frames_written``: over the dataset (counted on disk); ``frames_computed``: frames the
    workers reported proposing, embedding and writing in finished chunks (a chunk retried
    after its worker died counts only the retry's frames, a failed chunk none); ``start_seconds``: connecting to Ray and
    starting the workers (models loaded); ``label_seconds``: the rest.
    """

    videos: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    failures: list[WorkerFailure] = field(default_factory=list)
    workers: list[WorkerInfo] = field(default_factory=list)
    frames_total: int = 0
    frames_cached_before: int = 0
    frames_written: int = 0
    frames_computed: int = 0
    start_seconds: float = 0.0
    label_seconds: float = 0.0


ProgressFn = Callable[[int, int], None]
"""``(frames cached, frames total)`` over the whole dataset."""
LogFn = Callable[[str], None]


@dataclass
class _Video:
    path: Path
    run: VideoRun
    failed: bool = False


class _Pool:
    """The actors, their pids and up to ``IN_FLIGHT_PER_WORKER`` chunks in flight each."""

    def __init__(self, actors: list[Any], infos: list[WorkerInfo]) -> None:
        self.actors = actors
        self.infos = infos
        self.alive = [True] * len(actors)
        self.in_flight: dict[Any, tuple[ChunkJob, int]] = {}

    def load(self, i: int) -> int:
        return sum(1 for _, w in self.in_flight.values() if w == i)

    def submit(self, job: ChunkJob) -> bool:
        """Give ``job`` to the least busy live worker with room; False if none has room."""
        free = [i for i, ok in enumerate(self.alive) if ok and self.load(i) < IN_FLIGHT_PER_WORKER]
        if not free:
            return False
        i = min(free, key=self.load)
        self.in_flight[self.actors[i].run.remote(job)] = (job, i)
        return True

    def name(self, i: int) -> str:
        w = self.infos[i]
        return f"worker {i} (pid {w.pid} on {w.node})"


def label_with_ray(workspace: Workspace, config: Config, videos: Sequence[Path], options: RayOptions, *,
                   progress: ProgressFn | None = None, log: LogFn | None = None,
                   on_started: Callable[[], None] | None = None) -> RayRun:
    """Label ``videos`` into ``workspace`` on Ray (see the module docstring).

    Videos are named and recorded as the local engine does (:class:`uvis.runner.VideoRun`:
    name clashes renamed, a video points at its new cache once a first frame of it is
    cached); ``on_started`` is called once, when the first video has started.

    Returns:
        A :class:`RayRun`. Bad videos and failed chunks are reported in it (and through
        ``log``); the other videos are labelled.
    Raises:
        MissingDependencyError: ray is not installed (names the pip command).
        BadInputError: bad options, a worker that cannot see the workspace, more workers
            than the cluster can place, or the models cannot be loaded.
        UvisError: every worker died.
    """
    options = options.validate()
    config = config.validate()
    ray = require_ray()
    say = log or (lambda _msg: None)
    run = RayRun()
    t0 = time.perf_counter()
    started_ray = not ray.is_initialized()
    if started_ray:
        _connect(ray, options)
    pool: _Pool | None = None
    state: dict[str, _Video] = {}
    try:
        pool = _start_workers(ray, workspace, config, options, say)
        run.workers = list(pool.infos)
        run.start_seconds = time.perf_counter() - t0
        t1 = time.perf_counter()
        jobs = _plan(ray, pool, workspace, config, videos, options, run, state, say)
        _execute(ray, pool, jobs, state, run, progress, say, on_started or (lambda: None))
        _finish(state, run, say)
        run.label_seconds = time.perf_counter() - t1
        return run
    except BaseException as exc:  # interrupted, or every worker died: record what is there
        status = "cancelled" if isinstance(exc, KeyboardInterrupt) else "failed"
        for video in state.values():
            video.run.writer.remove_temporaries()
            if video.run.writer.first_missing() >= video.run.meta.info.num_frames:
                video.run.finish()
            else:
                video.run.mark(status)
        raise
    finally:
        if pool is not None:
            for actor in pool.actors:
                ray.kill(actor, no_restart=True)
        if started_ray:
            ray.shutdown()


def _connect(ray: Any, options: RayOptions) -> None:
    env = {k: v for k, v in os.environ.items() if k.startswith(FORWARDED_ENV_PREFIXES)}
    kwargs: dict[str, Any] = dict(log_to_driver=False, configure_logging=False,
                                  runtime_env={"env_vars": env} if env else None)
    if options.address is None:
        kwargs["include_dashboard"] = False
    try:
        ray.init(address=options.address, **kwargs)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        where = options.address or "a new local instance"
        raise BadInputError(f"cannot connect to Ray at {where}: {exc}; start a head node with "
                            "`ray start --head` and pass --address HOST:PORT (see docs/scale-out.md)") from exc


def _start_workers(ray: Any, workspace: Workspace, config: Config, options: RayOptions, say: LogFn) -> _Pool:
    free = ray.available_resources()
    cpus, gpus = float(free.get("CPU", 0.0)), float(free.get("GPU", 0.0))
    if options.gpus_per_worker > 0:
        fits = min(math.floor(gpus / options.gpus_per_worker + 1e-9), math.floor(cpus / options.cpus_per_worker + 1e-9))
    else:
        fits = math.floor(cpus / options.cpus_per_worker + 1e-9)
    count = options.workers or max(1, fits)
    if count > fits:
        raise BadInputError(f"--workers {count} needs {count * options.cpus_per_worker:g} CPUs and "
                            f"{count * options.gpus_per_worker:g} GPUs, but the Ray cluster has {cpus:g} CPUs and "
                            f"{gpus:g} GPUs free; use --workers {max(fits, 1)} or add nodes")
    actor_cls = ray.remote(LabelWorker).options(num_cpus=options.cpus_per_worker, num_gpus=options.gpus_per_worker,
                                                max_restarts=options.max_restarts,
                                                max_task_retries=options.max_restarts)
    cfg = config.to_dict()
    actors = [actor_cls.remote(cfg, i, options.threads, options.gpus_per_worker > 0) for i in range(count)]
    token = secrets.token_hex(16)
    probe_dir = workspace.root / ".ray-check"
    probe_dir.mkdir(exist_ok=True)
    probe = probe_dir / token
    probe.write_text(token)
    try:
        refs = [a.hello.remote(str(workspace.root), str(probe), token) for a in actors]
        ready, pending = ray.wait(refs, num_returns=len(refs), timeout=START_TIMEOUT_S)
        if pending:
            raise BadInputError(f"{len(pending)} of {count} Ray workers did not start within {START_TIMEOUT_S:g} s "
                                "(the cluster cannot place them, or loading the models hangs)")
        infos = [_get(ray, r) for r in refs]
        replies = {p.name for p in probe_dir.glob(f"{token}.*")}
        for w in infos:  # the driver must see what every worker wrote
            if not any(name.endswith(f".{w.pid}") for name in replies):
                raise BadInputError(f"the driver does not see the check file written by {w.describe()} into "
                                    f"{probe_dir}: the workspace is not on storage shared with that node "
                                    "(see docs/scale-out.md)")
    finally:
        for p in probe_dir.glob(f"{token}*"):
            p.unlink(missing_ok=True)
        try:
            probe_dir.rmdir()
        except OSError:  # another run's check is under way
            pass
    for w in infos:
        say(f"ray: {w.describe()}")
    return _Pool(actors, infos)


def _get(ray: Any, ref: Any) -> Any:
    """``ray.get`` that re-raises a worker's UvisError as itself (its message, its exit code)."""
    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError as exc:
        cause = _unwrap(exc)
        if isinstance(cause, UvisError):
            raise cause from None
        raise


def _unwrap(exc: Any) -> BaseException:
    """The original exception a worker raised (Ray wraps it in a RayTaskError)."""
    cause = getattr(exc, "cause", None)
    return cause if isinstance(cause, BaseException) else exc


def _plan(ray: Any, pool: _Pool, workspace: Workspace, config: Config, videos: Sequence[Path],
          options: RayOptions, run: RayRun, state: dict[str, "_Video"], say: LogFn) -> list[ChunkJob]:
    """Open and name every video, prepare its cache and database row (into ``state``),
    and cut its missing frames into chunks."""
    from uvis.video import open_video

    vc = config.video
    opened = []
    for path in videos:
        try:
            lookup = video_name_for(path)  # a file proposer's name for the video (a clash renames it)
            name, source, note = workspace.resolve_video_name(path)
            with open_video(path, stride=vc.stride, max_frames=vc.max_frames, max_side=vc.max_side,
                            name=name) as reader:
                info = reader.info
                for warning in ([note] if note else []) + list(reader.warnings):
                    say(f"warning: {warning}")
            workspace.register_source(name, source)  # claimed now: a later video of the run cannot take it
            opened.append((Path(path), lookup, source, info))
        except BadInputError as exc:  # one bad video of a dataset: report it, go on with the rest
            say(f"error: {exc}")
            run.failed.append(str(path))
    if not opened:
        return []
    identities = _get(ray, pool.actors[0].identify.remote([(lookup, info) for _, lookup, _, info in opened]))
    jobs: list[ChunkJob] = []
    for (path, lookup, source, info), (models, context) in zip(opened, identities):
        try:
            video_run = VideoRun(workspace, info.name, source, cache_meta(config, info, models))
        except BadInputError as exc:  # e.g. a cache made with other settings is in the way
            say(f"error: {exc}")
            run.failed.append(str(path))
            continue
        state[info.name] = _Video(path, video_run)
        writer = video_run.writer
        missing = writer.missing_frames()
        run.frames_total += info.num_frames
        run.frames_cached_before += info.num_frames - len(missing)
        if missing and len(missing) < info.num_frames:
            say(f"{info.name}: {info.num_frames - len(missing)} of {info.num_frames} frames cached, "
                f"{len(missing)} to do")
        for frames in plan_chunks(missing, chunk_frames=options.chunk_frames, stateful=context > 0):
            jobs.append(ChunkJob(str(path), lookup, str(writer.directory), writer.meta, frames))
    return jobs


def _execute(ray: Any, pool: _Pool, jobs: list[ChunkJob], state: dict[str, _Video], run: RayRun,
             progress: ProgressFn | None, say: LogFn, on_started: Callable[[], None]) -> None:
    queue = list(jobs)
    counted: set[tuple[str, int]] = set()
    done = run.frames_cached_before
    pending = {job.video for job in jobs}
    for video in state.values():  # nothing left to compute: started and done
        if video.run.name not in pending:
            video.run.started()
            on_started()

    def count(job: ChunkJob) -> int:
        writer = state[job.video].run.writer
        new = 0
        for t in range(job.frames.start, job.frames.stop):
            if (job.video, t) not in counted and writer.is_cached(t, 0):
                counted.add((job.video, t))
                new += 1
        return new

    if progress:
        progress(done, run.frames_total)
    while queue or pool.in_flight:
        while queue:
            if state[queue[0].video].failed:  # a chunk of it failed: no more work on it
                queue.pop(0)
            elif pool.submit(queue[0]):
                queue.pop(0)
            else:
                break
        if not pool.in_flight:
            raise UvisError("every Ray worker died (restarts exhausted); finished frames are cached and a "
                            "re-run resumes at the missing ones")
        ready, _ = ray.wait(list(pool.in_flight), num_returns=1, timeout=POLL_SECONDS)
        for ref in ready:
            job, i = pool.in_flight.pop(ref)
            requeue = _collect(ray, pool, ref, job, i, state, run, say)
            if requeue:
                queue.insert(0, job)
            elif not state[job.video].failed:
                state[job.video].run.started()
                on_started()
            done += count(job)
        for job, _ in pool.in_flight.values():
            done += count(job)
        if progress:
            progress(done, run.frames_total)
    run.frames_written = done - run.frames_cached_before


def _collect(ray: Any, pool: _Pool, ref: Any, job: ChunkJob, i: int, state: dict[str, _Video], run: RayRun,
             say: LogFn) -> bool:
    """Handle one finished call; True if its chunk must be given to another worker."""
    try:
        result: ChunkResult = ray.get(ref)
    except ray.exceptions.RayTaskError as exc:
        cause = _unwrap(exc)
        frame = cause.frame if isinstance(cause, FrameError) else None
        message = cause.message if isinstance(cause, FrameError) else f"{type(cause).__name__}: {cause}"
        failure = WorkerFailure(pool.name(i), job.video, frame, message)
        run.failures.append(failure)
        say(f"error: {failure.describe()}")
        video = state[job.video]
        if not video.failed:
            video.failed = True
            run.failed.append(str(video.path))
        return False
    except ray.exceptions.RayActorError as exc:  # the actor is gone for good
        pool.alive[i] = False
        say(f"ray: {pool.name(i)} died and cannot be restarted ({type(exc).__name__}); "
            f"{job.describe()} goes to another worker")
        return True
    run.frames_computed += result.written
    if result.pid != pool.infos[i].pid:
        old = pool.infos[i]
        say(f"ray: worker {i} (pid {old.pid} on {old.node}) died; Ray restarted it as pid {result.pid} "
            f"and retried {job.describe()}")
        pool.infos[i] = WorkerInfo(old.index, result.pid, old.node, old.host, old.device, old.threads)
    return False


def _finish(state: dict[str, _Video], run: RayRun, say: LogFn) -> None:
    for name, video in state.items():
        video.run.writer.remove_temporaries()  # half-written files of killed workers (no writer runs now)
        if video.failed:
            video.run.mark("failed")
        elif video.run.finish():  # complete: consolidated into columns
            run.videos.append(name)
        for warning in video.run.warnings:
            say(f"warning: {warning}")
