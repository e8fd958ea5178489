"""The workspace's SQLite database: videos, config versions and the curation log.

The curation log is append-only. ``undo``/``redo`` append entries that refer to an
earlier action; the effective actions of a video are found by replaying the log, so
nothing a person did is ever deleted. Every write is its own transaction, committed
at once (WAL journal), so it survives a crash or an app restart.

Curation actions (``action`` column) and their payloads (JSON):
    accept   {"frame": t, "index": i}
    reject   {"frame": t, "index": i}
    relabel  {"frame": t, "index": i, "label": "class name"}
    merge    {"a": [t, i], "b": [t, i]}     tracks containing the two instances become one
    split    {"at": [t, i]}                 the track containing the instance is cut
                                            before that instance's frame
    undo     {"target": action_id}
    redo     {"target": action_id}
"""
from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from uvis.errors import BadInputError

CURATION_ACTIONS = ("accept", "reject", "relabel", "merge", "split")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS videos (
    name TEXT PRIMARY KEY,
    path TEXT NOT NULL,
    cache_key TEXT,
    num_frames INTEGER,
    width INTEGER,
    height INTEGER,
    status TEXT NOT NULL DEFAULT 'new',
    added_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS configs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    created_at REAL NOT NULL,
    note TEXT,
    config TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS curation (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    created_at REAL NOT NULL,
    video TEXT NOT NULL,
    action TEXT NOT NULL,
    payload TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS curation_video ON curation(video, id);
CREATE TABLE IF NOT EXISTS ground_truth (
    video TEXT PRIMARY KEY,
    path TEXT NOT NULL,
    source TEXT NOT NULL,
    source_video_id INTEGER NOT NULL,
    frames_dir TEXT NOT NULL,
    imported_at REAL NOT NULL
);
"""


@dataclass(frozen=True)
class CurationAction:
    """One logged action: id, time, video, action name and payload."""

    id: int
    created_at: float
    video: str
    action: str
    payload: dict[str, Any]


@dataclass(frozen=True)
class VideoRecord:
    """A row of the ``videos`` table."""

    name: str
    path: str
    cache_key: str | None
    num_frames: int | None
    width: int | None
    height: int | None
    status: str


@dataclass(frozen=True)
class GroundTruthRecord:
    """A row of the ``ground_truth`` table: a workspace video's YouTube-VIS ground truth.

    ``path``: a YouTube-VIS annotation JSON holding only this video (written by
    :func:`uvis.export.importers.import_ytvis_into_workspace`, original ids kept);
    ``source``: the file it was imported from; ``source_video_id``: the video's id in
    both files; ``frames_dir``: the video's frame folder. Ground-truth frame k is the
    frame file ``file_names[k]``; a workspace frame maps to it through
    ``VideoInfo.frame_names`` (or ``source_indices`` when the folder holds exactly the
    annotated frames).
    """

    video: str
    path: str
    source: str
    source_video_id: int
    frames_dir: str
    imported_at: float


class WorkspaceDB:
    """Thin typed API over the workspace SQLite file (one connection per object)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(str(self.path), timeout=30.0, check_same_thread=False,
                                     isolation_level=None)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.executescript(_SCHEMA)

    def close(self) -> None:
        self._conn.close()

    def _write(self, sql: str, args: tuple[Any, ...]) -> int:
        cur = self._conn.execute(sql, args)
        return int(cur.lastrowid or 0)

    # ------------------------------------------------------------------ videos
    def upsert_video(self, name: str, path: str, *, cache_key: str | None = None, num_frames: int | None = None,
                     width: int | None = None, height: int | None = None, status: str = "new") -> None:
        now = time.time()
        self._write(
            "INSERT INTO videos(name, path, cache_key, num_frames, width, height, status, added_at, updated_at) "
            "VALUES (?,?,?,?,?,?,?,?,?) ON CONFLICT(name) DO UPDATE SET path=excluded.path, "
            "cache_key=excluded.cache_key, num_frames=excluded.num_frames, width=excluded.width, "
            "height=excluded.height, status=excluded.status, updated_at=excluded.updated_at",
            (name, path, cache_key, num_frames, width, height, status, now, now))

    def set_video_status(self, name: str, status: str) -> None:
        self._write("UPDATE videos SET status=?, updated_at=? WHERE name=?", (status, time.time(), name))

    def videos(self) -> list[VideoRecord]:
        rows = self._conn.execute(
            "SELECT name, path, cache_key, num_frames, width, height, status FROM videos ORDER BY added_at, name")
        return [VideoRecord(*r) for r in rows]

    def video(self, name: str) -> VideoRecord | None:
        row = self._conn.execute(
            "SELECT name, path, cache_key, num_frames, width, height, status FROM videos WHERE name=?",
            (name,)).fetchone()
        return VideoRecord(*row) if row else None

    # ------------------------------------------------------------------ ground truth
    def set_ground_truth(self, video: str, path: str, source: str, source_video_id: int, frames_dir: str) -> None:
        """Record (or replace) the ground truth of ``video`` (see :class:`GroundTruthRecord`)."""
        self._write(
            "INSERT INTO ground_truth(video, path, source, source_video_id, frames_dir, imported_at) "
            "VALUES (?,?,?,?,?,?) ON CONFLICT(video) DO UPDATE SET path=excluded.path, source=excluded.source, "
            "source_video_id=excluded.source_video_id, frames_dir=excluded.frames_dir, "
            "imported_at=excluded.imported_at",
            (video, path, source, int(source_video_id), frames_dir, time.time()))

    def ground_truth(self, video: str) -> GroundTruthRecord | None:
        """The ground truth recorded for ``video``, or None."""
        row = self._conn.execute(
            "SELECT video, path, source, source_video_id, frames_dir, imported_at FROM ground_truth WHERE video=?",
            (video,)).fetchone()
        return GroundTruthRecord(*row) if row else None

    def ground_truths(self) -> list[GroundTruthRecord]:
        """Every recorded ground truth, by video name."""
        rows = self._conn.execute(
            "SELECT video, path, source, source_video_id, frames_dir, imported_at FROM ground_truth ORDER BY video")
        return [GroundTruthRecord(*r) for r in rows]

    # ------------------------------------------------------------------ configs
    def save_config(self, config_json: str, note: str = "") -> int:
        """Store a config version unless identical to the latest; returns its id."""
        latest = self._conn.execute("SELECT id, config FROM configs ORDER BY id DESC LIMIT 1").fetchone()
        if latest and latest[1] == config_json:
            return int(latest[0])
        return self._write("INSERT INTO configs(created_at, note, config) VALUES (?,?,?)",
                           (time.time(), note, config_json))

    def latest_config(self) -> tuple[int, str] | None:
        row = self._conn.execute("SELECT id, config FROM configs ORDER BY id DESC LIMIT 1").fetchone()
        return (int(row[0]), row[1]) if row else None

    def config_versions(self) -> list[tuple[int, float, str]]:
        return [(int(i), float(t), n or "") for i, t, n in
                self._conn.execute("SELECT id, created_at, note FROM configs ORDER BY id")]

    # ------------------------------------------------------------------ curation
    def log(self, video: str, action: str, payload: dict[str, Any]) -> int:
        """Append a curation action (accept/reject/relabel/merge/split); returns its id."""
        if action not in CURATION_ACTIONS:
            raise BadInputError(f"unknown curation action {action!r}; expected one of {', '.join(CURATION_ACTIONS)}")
        return self._write("INSERT INTO curation(created_at, video, action, payload) VALUES (?,?,?,?)",
                           (time.time(), video, action, json.dumps(payload)))

    def entries(self, video: str | None = None) -> list[CurationAction]:
        """The raw log (undo/redo entries included), oldest first."""
        if video is None:
            rows = self._conn.execute("SELECT id, created_at, video, action, payload FROM curation ORDER BY id")
        else:
            rows = self._conn.execute(
                "SELECT id, created_at, video, action, payload FROM curation WHERE video=? ORDER BY id", (video,))
        return [CurationAction(int(i), float(t), v, a, json.loads(p)) for i, t, v, a, p in rows]

    def _replay(self, video: str) -> tuple[list[CurationAction], list[CurationAction]]:
        applied: list[CurationAction] = []
        undone: list[CurationAction] = []
        by_id: dict[int, CurationAction] = {}
        for e in self.entries(video):
            if e.action == "undo":
                target = by_id[e.payload["target"]]
                applied.remove(target)
                undone.append(target)
            elif e.action == "redo":
                target = by_id[e.payload["target"]]
                undone.remove(target)
                applied.append(target)
            else:
                by_id[e.id] = e
                applied.append(e)
                undone.clear()
        return applied, undone

    def active(self, video: str) -> list[CurationAction]:
        """Effective actions of a video, in the order they were (re)applied."""
        return self._replay(video)[0]

    def undo(self, video: str) -> CurationAction | None:
        """Undo the latest effective action of ``video``; returns it (None if nothing to undo)."""
        applied, _ = self._replay(video)
        if not applied:
            return None
        target = applied[-1]
        self._write("INSERT INTO curation(created_at, video, action, payload) VALUES (?,?,?,?)",
                    (time.time(), video, "undo", json.dumps({"target": target.id})))
        return target

    def redo(self, video: str) -> CurationAction | None:
        """Re-apply the latest undone action (if no new action came since); returns it or None."""
        _, undone = self._replay(video)
        if not undone:
            return None
        target = undone[-1]
        self._write("INSERT INTO curation(created_at, video, action, payload) VALUES (?,?,?,?)",
                    (time.time(), video, "redo", json.dumps({"target": target.id})))
        return target

    def iter_all_active(self) -> Iterator[CurationAction]:
        """Effective actions of every video."""
        names = [r[0] for r in self._conn.execute("SELECT DISTINCT video FROM curation ORDER BY video")]
        for name in names:
            yield from self.active(name)
