"""The app controller: one per process, holding everything expensive outside ``gr.State``.

:class:`AppController` owns the workspace, the loaded :class:`~uvis.decide.Project`
(caches in memory, so a threshold change re-decides in milliseconds), a small memo
of decisions per (video, config, curation version), decoded frames, the shared
embedder and the job queue. Sessions keep only a :class:`ViewState` (video name,
frame, selection) in ``gr.State``. All methods are thread-safe.
"""
from __future__ import annotations

import json
import threading
import time
from collections import OrderedDict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from app.backends import BackendChoice
from app.jobs import Job, JobQueue, LockedEmbedder
from app.render import PreparedFrame, prepare
from uvis.config import Config
from uvis.db import VideoRecord
from uvis.decide import Project, VideoResult
from uvis.embedders.base import Embedder
from uvis.errors import BadInputError
from uvis.types import VideoInfo
from uvis.workspace import Workspace

RESULT_MEMO = 8
FRAME_MEMO = 96
PREPARED_MEMO = 24


@dataclass
class ViewState:
    """Per-session view: current video and frame, selected instance (index within the
    frame), the track it belongs to (selection follows it across frames), the instance
    marked for a merge ``(frame, index)``, the project generation last shown, the canvas
    layout (``grid`` | ``focus`` on panel ``focus`` | ``canvas`` with ``layers``), the
    timeline filter, the JSON of the config the view shows (export refuses another),
    and the recently used classes (keys 1-9)."""

    video: str | None = None
    frame: int = 0
    selected: int | None = None
    track: int | None = None
    merge_mark: tuple[int, int] | None = None
    generation: int = -1
    scale: float = 1.0
    layout: str = "grid"
    focus: int = 0
    layers: tuple[str, ...] = ("proposals", "label scores", "decisions", "tracks")
    timeline: Any = None
    shown_config: str = ""
    recent: tuple[str, ...] = ()


class FrameSource:
    """Decoded processed frames of one video, read with the settings its cache was made with."""

    def __init__(self, info: VideoInfo) -> None:
        from uvis.video import open_video

        idx = info.source_indices
        stride = idx[1] - idx[0] if len(idx) > 1 else 1
        resized = (info.width, info.height) != (info.source_width, info.source_height)
        self.info = info
        self._reader = open_video(info.path, stride=max(1, stride), max_frames=info.num_frames,
                                  max_side=max(info.width, info.height) if resized else None, name=info.name)
        self._lock = threading.Lock()
        self._memo: OrderedDict[int, np.ndarray] = OrderedDict()

    def read(self, t: int) -> np.ndarray:
        """Frame ``t`` as RGB uint8 (H, W, 3); recently read frames come from memory."""
        with self._lock:
            if t in self._memo:
                self._memo.move_to_end(t)
                return self._memo[t]
            frame = self._reader.read(t)
            self._memo[t] = frame
            if len(self._memo) > FRAME_MEMO:
                self._memo.popitem(last=False)
            return frame

    def close(self) -> None:
        with self._lock:
            self._reader.close()


class AppController:
    """Process-wide state of the app.

    Args:
        workspace: the open workspace (its database connection is used by handlers).
        run_config: settings of labelling jobs (video, proposer, embedder sections) and the
            initial decision settings when the workspace has no saved config.
        backends: the banner entries of the live proposer and embedder.
        start_worker: start the background job worker (tests of pure decisions may not).
    """

    def __init__(self, workspace: Workspace, run_config: Config, backends: list[BackendChoice],
                 *, start_worker: bool = True) -> None:
        self.ws = workspace
        self.run_config = run_config
        self.backends = backends
        self._lock = threading.RLock()
        self._embedder: Embedder | None = None
        self._embedder_lock = threading.Lock()
        self._project: Project | None = None
        self._project_error: str | None = None
        self.generation = 0
        self._curation_version = 0
        self._results: OrderedDict[tuple[Any, ...], VideoResult] = OrderedDict()
        self._frames: dict[str, FrameSource] = {}
        self._prepared: OrderedDict[tuple[Any, ...], PreparedFrame] = OrderedDict()
        self._external: dict[str, Any] = {}
        self._last_refresh = 0.0
        self.jobs: JobQueue | None = (JobQueue(workspace.root, run_config, self.embedder, self._job_finished)
                                      if start_worker else None)

    # ------------------------------------------------------------------ config
    def initial_config(self) -> Config:
        """The decision settings a new session starts with: the workspace's latest saved
        config (labeler, filters, tracker) over the run config, else the run config."""
        with self._lock:
            latest = self.ws.db.latest_config()
        if latest is None:
            return self.run_config
        try:
            saved = Config.from_dict(json.loads(latest[1]))
        except Exception:  # noqa: BLE001 - a bad stored config must not block the app
            return self.run_config
        return self.run_config.replace(labeler=saved.labeler, filters=saved.filters, tracker=saved.tracker)

    def save_config(self, config: Config, note: str = "app") -> int:
        """Store a config version (unless identical to the latest)."""
        with self._lock:
            return self.ws.db.save_config(config.to_json(), note=note)

    # ------------------------------------------------------------------ models
    def embedder(self) -> Embedder:
        """The shared embedder of the run config (loaded on first use, calls serialised)."""
        with self._embedder_lock:
            if self._embedder is None:
                from uvis.embedders.factory import make_embedder

                self._embedder = LockedEmbedder(make_embedder(self.run_config.embedder))
            return self._embedder

    # ------------------------------------------------------------------ videos & project
    def videos(self) -> list[VideoRecord]:
        """Workspace videos that have a cache (any status), in the order they were added."""
        with self._lock:
            return [r for r in self.ws.db.videos() if r.cache_key]

    def video_names(self) -> list[str]:
        return [r.name for r in self.videos()]

    def project(self) -> Project | None:
        """The loaded project (None while the workspace has no labelled video)."""
        with self._lock:
            if self._project is None and self.video_names():
                self._project = self._open_project()
            return self._project

    def project_error(self) -> str | None:
        """Why the project could not be loaded (mixed embedders, unreadable cache), if so."""
        return self._project_error

    def _open_project(self) -> Project | None:
        from uvis.pipeline import open_project

        names = self.video_names()
        try:
            caches_meta = self.ws.load_cache(names[0]).meta
            same = caches_meta.embedder_config == asdict(self.run_config.embedder)
            encoder = (lambda prompts: self.embedder().encode_text(prompts)) if same else None
            project = open_project(self.ws, names, text_encoder=encoder)
        except BadInputError as exc:
            self._project_error = str(exc)
            return None
        self._project_error = None
        return project

    def reload(self) -> None:
        """Drop the loaded project and memos (after a job added or extended a cache)."""
        with self._lock:
            self._project = None
            self._results.clear()
            for src in self._frames.values():
                src.close()
            self._frames.clear()
            self._prepared.clear()
            self.generation += 1

    def refresh_running(self, min_new_frames: int = 25, min_interval_s: float = 10.0) -> bool:
        """Reload the project while a job labels a loaded video, once it has cached at least
        ``min_new_frames`` more frames and ``min_interval_s`` passed (the view grows as the
        job runs). Only for small projects (a reload reads every cache). Returns True if it
        reloaded."""
        if self.jobs is None or len(self.video_names()) > 8:  # big projects: reload when the job ends
            return False
        now = time.monotonic()
        if now - self._last_refresh < min_interval_s:
            return False
        for job in self.jobs.active():
            if job.state == "running" and job.done - self.num_frames(job.name) >= min_new_frames:
                self._last_refresh = now
                self.reload()
                return True
        return False

    def _job_finished(self, job: Job) -> None:
        if job.state in ("done", "cancelled") or job.done:
            self.reload()

    # ------------------------------------------------------------------ decisions
    def result(self, video: str, config: Config) -> VideoResult:
        """Decisions for one video under ``config`` (memoised per config and curation state).

        Raises:
            BadInputError: unknown video or no labelled video yet.
        """
        key = (video, config.to_json(), self._curation_version, self.generation)
        with self._lock:
            hit = self._results.get(key)
            if hit is not None:
                self._results.move_to_end(key)
                return hit
            project = self.project()
            if project is None:
                raise BadInputError(self._project_error or "no labelled video yet")
            if video not in project.caches:
                raise BadInputError(f"video '{video}' is not labelled in this workspace")
            res = project.decide(config, videos=[video])[video]
            self._results[key] = res
            while len(self._results) > RESULT_MEMO:
                self._results.popitem(last=False)
            return res

    def frame_rows(self, video: str, t: int) -> slice:
        """Rows of frame ``t`` in the video's instance table."""
        project = self.project()
        if project is None or video not in project.caches:
            raise BadInputError(f"video '{video}' is not loaded")
        slices = project.caches[video].frame_slices
        if not 0 <= t < len(slices):
            raise BadInputError(f"frame {t} is not cached for '{video}' ({len(slices)} frames)")
        return slices[t]

    def num_frames(self, video: str) -> int:
        """Cached (viewable) frames of a video (0 if not loaded)."""
        project = self.project()
        if project is None or video not in project.caches:
            return 0
        return project.caches[video].num_cached

    def frame_image(self, video: str, t: int) -> np.ndarray:
        """Processed frame ``t`` of a video (RGB uint8)."""
        with self._lock:
            src = self._frames.get(video)
            if src is None:
                project = self.project()
                if project is None or video not in project.caches:
                    raise BadInputError(f"video '{video}' is not loaded")
                src = FrameSource(project.caches[video].info)
                self._frames[video] = src
        return src.read(t)

    def prepared_frame(self, video: str, t: int, width: int) -> PreparedFrame:
        """Frame ``t`` upscaled to ``width`` with its masks decoded (memoised: a threshold
        change re-draws without decoding again)."""
        key = (video, t, width, self.generation)
        with self._lock:
            hit = self._prepared.get(key)
            if hit is not None:
                self._prepared.move_to_end(key)
                return hit
        image = self.frame_image(video, t)
        project = self.project()
        if project is None or video not in project.caches:
            raise BadInputError(f"video '{video}' is not loaded")
        prepared = prepare(image, project.caches[video].instances, self.frame_rows(video, t), width)
        with self._lock:
            self._prepared[key] = prepared
            while len(self._prepared) > PREPARED_MEMO:
                self._prepared.popitem(last=False)
        return prepared

    # ------------------------------------------------------------------ curation
    def curate(self, video: str, action: str, payload: dict[str, Any]) -> int:
        """Log a curation action (written at once) and invalidate decisions; returns its id."""
        with self._lock:
            action_id = self.ws.db.log(video, action, payload)
            self._curation_version += 1
            return action_id

    def undo_action(self, video: str) -> Any:
        """Undo the newest applied action; returns it (None: nothing to undo)."""
        with self._lock:
            target = self.ws.db.undo(video)
            self._curation_version += 1
        return target

    def redo_action(self, video: str) -> Any:
        """Redo the oldest undone action; returns it (None: nothing to redo)."""
        with self._lock:
            target = self.ws.db.redo(video)
            self._curation_version += 1
        return target

    def revert(self, video: str, action_id: int) -> None:
        """Revert one action of the history.

        Raises:
            BadInputError: the action is not the newest applied one (the log undoes in order).
        """
        with self._lock:
            active = self.ws.db.active(video)
            if not active or active[-1].id != action_id:
                raise BadInputError("only the newest active action can be reverted here; undo (Ctrl+Z) the "
                                    "later ones first")
            self.undo_action(video)

    def curate_track(self, video: str, action: str, track: int, label: str | None, config: Config) -> str:
        """accept / reject / relabel every instance of a track as one action (one undo step).

        Raises:
            BadInputError: this workspace's curation log has no batch actions yet.
        """
        raise BadInputError("whole-track accept / reject / relabel needs batch curation actions, which this "
                            "version of the library does not have yet; untick 'whole track'")

    def curate_batch(self, video: str, action: str, refs: list[tuple[int, int]], label: str | None,
                     config: Config) -> str:
        """accept / reject / relabel the (frame, index) instances ``refs`` as one action (one undo step).

        Raises:
            BadInputError: this workspace's curation log has no batch actions yet.
        """
        raise BadInputError("batch accept / reject / relabel needs batch curation actions, which this version "
                            "of the library does not have yet")

    def draw_instance(self, video: str, frame: int, mask: np.ndarray, label: str | None, config: Config,
                      replaces: tuple[int, int] | None = None) -> str:
        """Save a drawn mask (H, W) bool of ``frame`` as a new kept instance (``replaces``: the
        (frame, index) whose mask it fixes, rejected). Its embedding follows in a background job.

        Raises:
            BadInputError: this workspace's curation log has no drawn instances yet.
        """
        raise BadInputError("drawn instances need the 'draw' curation action, which this version of the "
                            "library does not have yet")

    def apply_to_similar(self, video: str, chosen: list[tuple[int, int, str]]) -> str:
        """Relabel the chosen (frame, index, label) instances; returns what it did in words."""
        for f, i, lbl in chosen:
            self.curate(video, "relabel", {"frame": int(f), "index": int(i), "label": lbl})
        return f"labelled {len(chosen)} similar instances"

    def undo(self, video: str) -> str:
        with self._lock:
            target = self.ws.db.undo(video)
            self._curation_version += 1
        return f"undid {target.action} {target.payload}" if target else "nothing to undo"

    def redo(self, video: str) -> str:
        with self._lock:
            target = self.ws.db.redo(video)
            self._curation_version += 1
        return f"redid {target.action} {target.payload}" if target else "nothing to redo"

    def curation_count(self, video: str) -> int:
        with self._lock:
            return len(self.ws.db.active(video))

    def relabel(self, video: str, t: int, index: int, label: str, config: Config) -> Config:
        """Relabel instance ``index`` of frame ``t`` as ``label``; a class not in the
        vocabulary is added to it first (and that config saved). Returns the config the
        view decides with afterwards."""
        label = (label or "").strip()
        if not label:
            raise BadInputError("choose a class in 'relabel as' first (R focuses it)")
        if label not in config.labeler.vocabulary:
            config = config.replace(labeler__vocabulary=[*config.labeler.vocabulary, label])
            self.save_config(config, note="relabel adds a class")
        self.curate(video, "relabel", {"frame": int(t), "index": int(index), "label": label})
        return config

    def decide_all(self, config: Config) -> dict[str, VideoResult]:
        """Decisions of every video under ``config``, consistent with the view (export, evaluation).

        Raises:
            BadInputError: no labelled video yet.
        """
        project = self.project()
        if project is None:
            raise BadInputError(self._project_error or "nothing to export yet: no labelled video")
        with self._lock:
            return project.decide(config)

    def curation_log(self, video: str) -> list[Any]:
        """The video's curation log, oldest first (``CurationAction`` rows, undone ones included)."""
        with self._lock:
            return list(self.ws.db.entries(video))

    # ------------------------------------------------------------------ view memory
    def video_status(self, video: str) -> str:
        """The labelling status of a video (``done``, ``partial``, ``running``, ``cancelled``, ``failed``...)."""
        with self._lock:
            rec = self.ws.db.video(video)
        return rec.status if rec is not None else ""

    def remember_view(self, video: str, frame: int) -> None:
        """Remember the last video and frame shown (per workspace, survives restarts)."""
        from uvis.fsutil import atomic_write_text

        data = json.dumps({"video": video, "frame": int(frame)})
        path = self.ws.root / "app_view.json"
        with self._lock:
            try:
                if path.is_file() and path.read_text() == data:
                    return
                atomic_write_text(path, data, durable=False)
            except OSError:  # a read-only workspace only loses this convenience
                pass

    def remembered_view(self) -> tuple[str | None, int]:
        """(video, frame) last shown in this workspace, or (None, -1)."""
        try:
            data = json.loads((self.ws.root / "app_view.json").read_text())
            return str(data["video"]), int(data["frame"])
        except (OSError, ValueError, KeyError, TypeError):
            return None, -1

    # ------------------------------------------------------------------ jobs
    def add_video(self, path: Path, name: str) -> Job:
        if self.jobs is None:
            raise BadInputError("background jobs are disabled in this process")
        return self.jobs.submit(path, name)

    def keep_external(self, key: str, handle: Any) -> None:
        """Keep a started external service (e.g. the FiftyOne App) until :meth:`close` calls
        its ``stop()``. A handle that merely reuses a server an earlier handle started
        (``owned`` False) does not replace that owner."""
        with self._lock:
            old = self._external.get(key)
            if old is not None and getattr(old, "owned", False) and not getattr(handle, "owned", True):
                return
            self._external[key] = handle

    def close(self, cancel_jobs: bool = True) -> None:
        """Stop external services and (with ``cancel_jobs``) the job worker. At process exit
        jobs are not cancelled: a job cut off mid-way stays ``running`` in the database
        and resumes at its first missing frame on the next start."""
        for handle in list(self._external.values()):
            try:
                handle.stop()
            except Exception:  # noqa: BLE001 - best effort at shutdown
                pass
        self._external.clear()
        if self.jobs is not None and cancel_jobs:
            self.jobs.stop()
        with self._lock:
            for src in self._frames.values():
                src.close()
            self._frames.clear()
