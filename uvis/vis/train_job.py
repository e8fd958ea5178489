"""A training run in a background thread (the app's Train tab), cancellable and observable.

The thread runs the same :class:`~uvis.vis.trainer.Trainer` as ``python -m uvis train``; a
cancel writes a checkpoint at the current iteration and stops, so a later start with
``resume=True`` continues the same schedule. Progress is read from the run folder
(``metrics.jsonl``, checkpoints), so a page reload or another process sees the same thing.
"""
from __future__ import annotations

import threading
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from uvis.errors import BadInputError, UvisError
from uvis.vis.train_config import TrainConfig


@dataclass
class TrainJobStatus:
    """``state``: preparing | running | done | cancelled | failed; ``iteration`` of ``max_iter``."""

    state: str
    iteration: int
    max_iter: int
    message: str = ""
    last: dict[str, float] = field(default_factory=dict)

    @property
    def finished(self) -> bool:
        return self.state in ("done", "cancelled", "failed")


class TrainJob:
    """Train on a workspace's curated pseudo-labels in a thread.

    Args:
        workspace: the workspace folder. run_dir: the run folder (refused if it already holds a
            run, unless ``resume``). cfg: training settings. device: torch device.
        round: self-training round to train on (None: the latest).
    """

    def __init__(self, workspace: str | Path, run_dir: str | Path, cfg: TrainConfig, *, device: str = "cpu",
                 resume: bool = False, round: int | None = None) -> None:
        from uvis.vis.trainer import last_checkpoint

        self.workspace, self.run_dir, self.cfg = Path(workspace), Path(run_dir), cfg
        self.device, self.resume, self.round = device, resume, round
        if not resume and last_checkpoint(self.run_dir) is not None:
            raise BadInputError(f"{self.run_dir} already holds a training run; resume it or choose another folder")
        self._stop = threading.Event()
        self._status = TrainJobStatus("preparing", 0, cfg.max_iter, "reading the curated pseudo-labels")
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name=f"train-{self.run_dir.name}", daemon=True)

    def start(self) -> "TrainJob":
        self._thread.start()
        return self

    def cancel(self) -> None:
        """Ask the run to stop after the current iteration (a checkpoint is written)."""
        self._stop.set()

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)

    def status(self) -> TrainJobStatus:
        with self._lock:
            s = self._status
            return TrainJobStatus(s.state, s.iteration, s.max_iter, s.message, dict(s.last))

    def _set(self, **changes: Any) -> None:
        with self._lock:
            for k, v in changes.items():
                setattr(self._status, k, v)

    def _run(self) -> None:
        from uvis.vis.trainer import Trainer

        try:
            data = prepare_train_set(self.workspace, self.run_dir, resume=self.resume, round=self.round,
                                     max_frames=self.cfg.max_frames)
            if self._stop.is_set():
                self._set(state="cancelled", message="cancelled before the first iteration")
                return
            trainer = Trainer(self.cfg, data, self.run_dir, device=self.device)
            self._set(state="running", message=f"{len(data.samples)} frames, {data.num_instances} instances")

            def progress(p: Any) -> None:
                self._set(iteration=p.iteration, last=dict(p.metrics),
                          message=f"loss {p.metrics['loss']:.3f}, ETA {p.eta_s:.0f} s")

            result = trainer.fit(resume=self.resume, progress=progress, should_stop=self._stop.is_set)
            if result.stopped:
                self._set(state="cancelled", iteration=result.iterations,
                          message=f"cancelled at iteration {result.iterations} (checkpoint written; resume continues)")
            else:
                self._set(state="done", iteration=result.iterations, message=f"model: {result.final_model}")
        except UvisError as exc:
            self._set(state="failed", message=str(exc))
        except Exception as exc:  # noqa: BLE001 - a failed run must not take the app down
            self._set(state="failed", message=f"internal error: {exc!r}\n{traceback.format_exc(limit=3)}")


def prepare_train_set(workspace: str | Path, run_dir: str | Path, *, resume: bool = False, round: int | None = None,
                      class_agnostic: bool | None = None, ws_config: str | Path | None = None,
                      max_frames: int | None = None) -> Any:
    """The training set of a run: the saved ``data.json`` when resuming, else the workspace's
    decided pseudo-labels of ``round`` (default: the latest round; all videos without rounds),
    saved to ``run_dir/data.json``."""
    from uvis.vis.rounds import latest_round, load_rounds, round_videos
    from uvis.vis.train_data import TrainSet, from_workspace
    from uvis.workspace import Workspace

    run_dir = Path(run_dir)
    saved = run_dir / "data.json"
    if resume and saved.is_file():
        return TrainSet.load(saved)
    root = Path(workspace)
    if not (root / "uvis.sqlite").is_file():
        raise BadInputError(f"workspace not found: {root} (label videos first: python -m uvis label VIDEO "
                            f"--workspace {root})")
    videos = None
    if round is not None or load_rounds(root):
        k = round if round is not None else latest_round(root)
        ws = Workspace(root)
        try:
            names = ws.video_names()
        finally:
            ws.close()
        videos = list(round_videos(root, k, names).values())
    data = from_workspace(root, run_dir / "frames", config_path=ws_config, class_agnostic=class_agnostic,
                          videos=videos).select_frames(max_frames)
    run_dir.mkdir(parents=True, exist_ok=True)
    data.save(saved)
    return data
