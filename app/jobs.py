"""Background labelling jobs: one worker thread, a FIFO queue, progress and cancel.

Models run here, never in a request handler, so every session stays responsive while
a video is labelled. The worker owns its own :class:`~uvis.workspace.Workspace` (its
own SQLite connection) and one embedder shared by all jobs (built on first use). When
a job ends (done, failed or cancelled) ``on_finish(job)`` is called in the worker
thread; the app uses it to reload the project.
"""
from __future__ import annotations

import itertools
import queue
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from uvis.config import Config
from uvis.embedders.base import Embedder
from uvis.errors import UvisError
from uvis.masks import RLE

JOB_STATES = ("queued", "running", "done", "failed", "cancelled")


@dataclass
class Job:
    """One labelling job. ``done``/``total`` are processed frames; ``message`` is shown to the user."""

    id: int
    path: Path
    name: str
    state: str = "queued"
    done: int = 0
    total: int = 0
    message: str = ""
    created_at: float = field(default_factory=time.time)
    cancel: threading.Event = field(default_factory=threading.Event, repr=False)

    @property
    def finished(self) -> bool:
        return self.state in ("done", "failed", "cancelled")

    @property
    def fraction(self) -> float:
        return self.done / self.total if self.total else 0.0

    def summary(self) -> str:
        """One line: ``name: state done/total (message)``."""
        prog = f" {self.done}/{self.total}" if self.total else ""
        msg = f" — {self.message}" if self.message else ""
        return f"{self.name}: {self.state}{prog}{msg}"


class LockedEmbedder:
    """An :class:`Embedder` proxy serialising calls with a lock (the worker embeds crops
    while a request handler may encode new prompts with the same model)."""

    def __init__(self, inner: Embedder) -> None:
        self._inner = inner
        self._lock = threading.Lock()
        self.name, self.dim = inner.name, inner.dim
        self.has_text, self.logit_scale = inner.has_text, inner.logit_scale

    def embed_crops(self, frame: np.ndarray, boxes: np.ndarray, masks: Sequence[RLE]) -> np.ndarray:
        with self._lock:
            return self._inner.embed_crops(frame, boxes, masks)

    def encode_text(self, prompts: Sequence[str]) -> np.ndarray:
        with self._lock:
            return self._inner.encode_text(prompts)


class JobQueue:
    """FIFO queue of labelling jobs run by one daemon worker thread.

    Args:
        workspace_root: the workspace folder (the worker opens its own connection).
        run_config: proposer/embedder/video settings of every job.
        embedder: zero-argument callable returning the shared embedder (built lazily).
        on_finish: called with each job when it ends, in the worker thread.
    """

    def __init__(self, workspace_root: Path, run_config: Config, embedder: Callable[[], Embedder],
                 on_finish: Callable[[Job], None] | None = None) -> None:
        self.workspace_root = Path(workspace_root)
        self.run_config = run_config
        self._embedder = embedder
        self._on_finish = on_finish
        self._queue: queue.Queue[Job | None] = queue.Queue()
        self._jobs: dict[int, Job] = {}
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._thread = threading.Thread(target=self._work, name="uvis-jobs", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ public
    def submit(self, path: str | Path, name: str) -> Job:
        """Queue a video; returns its job (state ``queued``)."""
        job = Job(next(self._ids), Path(path), name)
        with self._lock:
            self._jobs[job.id] = job
        self._queue.put(job)
        return job

    def cancel(self, job_id: int) -> bool:
        """Ask a queued or running job to stop; False if unknown or already finished."""
        with self._lock:
            job = self._jobs.get(job_id)
        if job is None or job.finished:
            return False
        job.cancel.set()
        if job.state == "queued":
            job.state, job.message = "cancelled", "cancelled before it started"
        return True

    def jobs(self) -> list[Job]:
        """All jobs, newest first."""
        with self._lock:
            return sorted(self._jobs.values(), key=lambda j: -j.id)

    def get(self, job_id: int) -> Job | None:
        with self._lock:
            return self._jobs.get(job_id)

    def active(self) -> list[Job]:
        """Queued and running jobs, oldest first."""
        return [j for j in reversed(self.jobs()) if not j.finished]

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block until no job is queued or running (tests, the bench); True if idle."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.active():
            if deadline is not None and time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        return True

    def stop(self) -> None:
        """Cancel everything and end the worker (used at shutdown and in tests)."""
        for job in self.active():
            job.cancel.set()
        self._queue.put(None)
        self._thread.join(timeout=30)

    # ------------------------------------------------------------------ worker
    def _work(self) -> None:
        from uvis.runner import Cancelled, Progress, Runner
        from uvis.workspace import Workspace

        ws: Workspace | None = None
        while True:
            job = self._queue.get()
            if job is None:
                break
            if job.cancel.is_set():
                self._finish(job)
                continue
            job.state, job.message = "running", "loading models" if ws is None else ""
            try:
                if ws is None:
                    ws = Workspace(self.workspace_root)
                runner = Runner(ws, self.run_config, embedder=self._embedder())
                job.message = ""

                def progress(p: Progress, job: Job = job) -> None:
                    job.done, job.total = p.done, p.total
                    if p.resumed_from and p.done == p.resumed_from:
                        job.message = f"resumed at frame {p.resumed_from}"

                cache = runner.label_video(job.path, name=job.name, progress=progress, cancel=job.cancel)
                job.state = "done"
                job.message = "; ".join([f"{cache.num_cached} frames, {len(cache.instances)} proposals",
                                         *(f"⚠️ {w}" for w in cache.warnings)])
            except Cancelled:
                job.state, job.message = "cancelled", f"stopped at frame {job.done}; finished frames are kept"
            except UvisError as exc:
                job.state, job.message = "failed", str(exc)
            except Exception as exc:  # noqa: BLE001 - a job must never kill the worker
                job.state, job.message = "failed", f"internal error: {exc!r}"
                traceback.print_exc()
            self._finish(job)
        if ws is not None:
            ws.close()

    def _finish(self, job: Job) -> None:
        if not job.finished:
            job.state = "cancelled"
        if self._on_finish is not None:
            try:
                self._on_finish(job)
            except Exception:  # noqa: BLE001
                traceback.print_exc()
