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
from uvis import batch
from uvis.batch import Impact, PlannedAction, SimilarProposal, VocabularyImpact
from uvis.config import Config
from uvis.curation import unresolved_message
from uvis.db import CurationAction, RepairReport, VideoRecord
from uvis.decide import Project, VideoResult
from uvis.cache import VideoCache
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
    marked for a merge ``(frame, index)``, and the project generation last shown."""

    video: str | None = None
    frame: int = 0
    selected: int | None = None
    track: int | None = None
    merge_mark: tuple[int, int] | None = None
    generation: int = -1
    scale: float = 1.0


@dataclass(frozen=True)
class CurationReport:
    """The outcome of one logged curation action: its id, how many instances it names,
    and what it changed in the video's decisions (``impact.propagated``: instances it did
    not name that changed through exemplars/PMF/track classes)."""

    action_id: int
    action: str
    instances: int
    impact: Impact

    @property
    def message(self) -> str:
        what = f"{self.action} of {self.instances} instance{'s' if self.instances != 1 else ''} saved"
        imp = self.impact
        if self.action in ("accept", "relabel") and imp.relabelled:
            what += (f"; this example relabelled {imp.relabelled} other instance{'s' if imp.relabelled != 1 else ''}"
                     f" in {imp.relabelled_tracks} track{'s' if imp.relabelled_tracks != 1 else ''}")
        return f"{what} ({imp.message})"


@dataclass(frozen=True)
class HistoryEntry:
    """One row of the curation history panel: action id, action, status (applied / undone /
    discarded), instances it covers, scope, class, and whether it applies to the current
    cache (``note`` says why not)."""

    action_id: int
    action: str
    status: str
    instances: int
    scope: str
    label: str | None
    note: str


def _describe(a: CurationAction) -> str:
    p = a.payload
    items = p.get("items")
    if items is not None:
        what = f"{a.action} of {len(items)} instance{'s' if len(items) != 1 else ''}"
        return what + (f" as {p['label']}" if a.action == "relabel" else "")
    return f"{a.action} {p}"


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
        key = (video, config.to_json(), self.ws.db.global_version(), self.generation)
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
    def cache(self, video: str) -> VideoCache:
        """The loaded cache of ``video`` (what the person sees; BadInputError if not loaded)."""
        project = self.project()
        if project is None or video not in project.caches:
            raise BadInputError(f"video '{video}' is not loaded")
        return project.caches[video]

    def plan(self, video: str, action: str, refs: list[tuple[int, int]], *, label: str | None = None,
             labels: list[str | None] | None = None, scope: str = "instance",
             config: Config | None = None) -> PlannedAction:
        """One curation action over ``refs`` ((frame, index) pairs) of the loaded cache, with
        fingerprints (:func:`uvis.batch.plan`); nothing is written. Accept: pass the class
        the person saw as ``label`` (or ``labels``, one per instance). ``config``: the
        settings the person sees (needed to address drawn instances, which sit after a
        frame's proposals)."""
        result = self.result(video, config) if config is not None else None
        return batch.plan(self.cache(video), video, action, refs, label=label, labels=labels, scope=scope,
                          result=result)

    def preview(self, video: str, config: Config, planned: PlannedAction) -> Impact:
        """Dry run: how many instances and tracks ``planned`` would change (nothing written)."""
        with self._lock:
            project = self.project()
            if project is None:
                raise BadInputError(self._project_error or "no labelled video yet")
            return batch.impact(project, config, planned)

    def apply(self, config: Config, planned: PlannedAction) -> CurationReport:
        """Log ``planned`` (one row, one transaction, one undo step) and report what it changed."""
        video = planned.video
        with self._lock:
            before = self.result(video, config)
            action_id = self.ws.db.log(video, planned.action, planned.payload, cache_key=planned.cache_key,
                                       items=list(planned.items))
            self._curation_version += 1
            after = self.result(video, config)
            direct = batch.rows_of(self.cache(video), planned)
            return CurationReport(action_id, planned.action, len(planned.items),
                                  batch.compare(before, after, direct, "changed"))

    def curate(self, video: str, action: str, payload: dict[str, Any]) -> int:
        """Log a single-instance action from its payload (``{"frame", "index"[, "label"]}``,
        merge ``{"a", "b"}``, split ``{"at"}``) with provenance; returns its id."""
        if action in ("accept", "reject", "relabel"):
            refs = [(int(payload["frame"]), int(payload["index"]))]
        elif action == "merge":
            refs = [tuple(payload["a"]), tuple(payload["b"])]  # type: ignore[list-item]
        elif action == "split":
            refs = [tuple(payload["at"])]  # type: ignore[list-item]
        else:
            raise BadInputError(f"unknown curation action {action!r}")
        planned = self.plan(video, action, refs, label=payload.get("label"))  # type: ignore[arg-type]
        with self._lock:
            action_id = self.ws.db.log(video, planned.action, planned.payload, cache_key=planned.cache_key,
                                       items=list(planned.items))
            self._curation_version += 1
            return action_id

    def curate_track(self, video: str, config: Config, frame: int, index: int, action: str,
                     label: str | None = None, *, dry_run: bool = False) -> CurationReport | Impact:
        """Accept / reject / relabel the whole track holding instance ``index`` of ``frame``
        (one action). Accept confirms each member's class as shown. ``dry_run``: only the
        :class:`Impact`."""
        res = self.result(video, config)
        refs = batch.track_refs(res, frame, index)
        labels = None
        if action == "accept":
            labels = [res.class_name(res.row(t, i)) for t, i in refs]
        planned = self.plan(video, action, refs, label=label, labels=labels, scope="track", config=config)
        return self.preview(video, config, planned) if dry_run else self.apply(config, planned)

    def propose_similar(self, video: str, config: Config, frame: int, index: int, label: str | None = None,
                        k: int = 12) -> SimilarProposal:
        """Label-by-example proposals: the ``k`` instances most similar to the example, bound to
        the current curation state and vocabulary (see :func:`uvis.batch.check_proposal`)."""
        res = self.result(video, config)
        return batch.propose_similar(res, self.ws.db.version(video), frame, index, label, k,
                                     config.labeler.vocabulary)

    def apply_similar(self, video: str, config: Config, proposal: SimilarProposal, min_similarity: float,
                      *, dry_run: bool = False) -> CurationReport | Impact:
        """Relabel the proposals with similarity >= ``min_similarity`` as one action.

        Raises:
            StaleProposal: proposals of another video, or made before an undo/redo/other
                action or a vocabulary change — propose again.
            BadInputError: no proposal reaches ``min_similarity``.
        """
        batch.check_proposal(proposal, video, self.ws.db.version(video), config.labeler.vocabulary)
        refs = [(f, i) for f, i, s in proposal.items if s >= min_similarity]
        if not refs:
            raise BadInputError(f"no proposal has similarity >= {min_similarity:.2f}")
        if not proposal.label:
            raise BadInputError("the example has no class to propagate")
        planned = self.plan(video, "relabel", refs, label=proposal.label, scope="similar", config=config)
        return self.preview(video, config, planned) if dry_run else self.apply(config, planned)

    def draw(self, video: str, frame: int, mask: Any, label: str | None = None) -> int:
        """Record a drawn (or fixed) instance of ``frame``: ``mask`` (H, W) bool at the processed
        frame size or an RLE; kept, with ``label`` if given. Returns the action id (undoable);
        attach its embedding later with :meth:`set_draw_embedding`."""
        planned = batch.plan_draw(self.cache(video), video, frame, mask, label)
        with self._lock:
            action_id = self.ws.db.log(video, "draw", planned.payload, cache_key=planned.cache_key,
                                       items=list(planned.items))
            self._curation_version += 1
            return action_id

    def set_draw_embedding(self, action_id: int, embedding: np.ndarray) -> None:
        """Store the (D,) embedding of a drawn instance (it then counts as an exemplar and
        for tracking by appearance)."""
        with self._lock:
            self.ws.db.set_draw_embedding(action_id, embedding)
            self._curation_version += 1

    def vocabulary_check(self, vocabulary: list[str]) -> VocabularyImpact:
        """Curated instances whose class ``vocabulary`` drops (count per class and a warning)."""
        with self._lock:
            project = self.project()
            return batch.vocabulary_impact(project, vocabulary) if project is not None else VocabularyImpact()

    def edit_vocabulary(self, config: Config, vocabulary: list[str], keep_curated: bool) -> Config:
        """``config`` with ``vocabulary``; with ``keep_curated`` the removed classes curated
        instances use are kept (added back)."""
        return batch.edit_vocabulary(config, vocabulary, self.vocabulary_check(vocabulary), keep_curated)

    def curation_notice(self, video: str, config: Config) -> str:
        """What of the video's curation does not apply (e.g. "3 curation actions refer to an
        earlier labelling of this video"); empty when everything applies."""
        return unresolved_message(self.result(video, config).unresolved)

    def history(self, video: str, config: Config, limit: int = 50) -> list[HistoryEntry]:
        """The newest curation actions of ``video`` for the history panel, newest first."""
        with self._lock:
            rows = self.ws.db.history(video, limit)
        notes: dict[int, str] = {}
        for u in self.result(video, config).unresolved:
            notes.setdefault(u.action_id, unresolved_message([u]))
        return [HistoryEntry(a.id, a.action, a.status, n, str(a.payload.get("scope", "instance")),
                             a.payload.get("label"), notes.get(a.id, "") if a.status == "applied" else "")
                for a, n in rows]

    def undo(self, video: str) -> str:
        """Undo the newest applied action of ``video`` (a batch as a whole); a message."""
        with self._lock:
            target = self.ws.db.undo(video)
            self._curation_version += 1
        return f"undid {_describe(target)}" if target else "nothing to undo"

    def redo(self, video: str) -> str:
        """Redo the most recently undone action of ``video``; a message."""
        with self._lock:
            target = self.ws.db.redo(video)
            self._curation_version += 1
        return f"redid {_describe(target)}" if target else "nothing to redo"

    def curation_count(self, video: str) -> int:
        """Applied curation actions of ``video``."""
        with self._lock:
            return len(self.ws.db.active(video))

    def repair(self, video: str | None = None) -> RepairReport:
        """Rebuild the curation replay state from the log (skips entries that cannot apply)."""
        with self._lock:
            report = self.ws.db.repair(video)
            self._curation_version += 1
            return report

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
