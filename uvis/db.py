"""The workspace's SQLite database: videos, config versions and the curation log.

Schema version :data:`SCHEMA_VERSION` (``PRAGMA user_version``); older workspaces are
migrated when opened (see :meth:`WorkspaceDB.migrate`).

The curation log (table ``curation``) is append-only: every accept / reject / relabel /
merge / split / draw is one row, and ``undo`` / ``redo`` are rows too, naming their
target. One row may cover many instances (a batch: apply-to-similar, a whole track), and
undoes/redoes in one step. Each row records the cache it was made on (``cache_key``), and
every instance it refers to is an *item* (table ``curation_items``) with its frame, index
within the frame, source frame, **fingerprint** (:func:`uvis.curation.fingerprint`: box +
mask RLE hash) and mask RLE, so a decision applies a row only to that instance and a
re-labelled video can carry it over (:mod:`uvis.curation`).

Replay state is kept, not recomputed: each action's ``status`` (``applied`` / ``undone``
/ ``discarded`` — undone then superseded by a new action) and each item's ``applied``
flag are updated in the same ``BEGIN IMMEDIATE`` transaction as the row that changes
them, so two processes can never both undo one action, and the effective state of a
video is one indexed query whatever the log's length (:meth:`WorkspaceDB.effect`).
:meth:`WorkspaceDB.repair` rebuilds that state from the log itself, skipping entries that
cannot apply (a second undo of one action, written by versions before schema 2).

Undo always targets the newest applied action, redo the oldest undone one, so applied
actions are in id order: the effective curation of an instance is its newest applied item.

Instance actions (``accept`` / ``reject`` / ``relabel``) payload::

    {"items": [[t, i], ...], "label": "class" (relabel), "scope": "instance" | "similar" | "track"}
Track edits::

    merge {"a": [t, i], "b": [t, i]}    the tracks containing the two instances become one
    split {"at": [t, i]}                the track containing the instance is cut before
                                        that instance's frame
Drawn instances::

    draw  {"frame": t, "mask": RLE, "box": [x0, y0, x1, y1], "label": "class" | null}
    a person-drawn (or fixed) mask: a new instance of frame t, kept, with that label;
    its embedding may follow later (:meth:`WorkspaceDB.set_draw_embedding`).
Bookkeeping::

    undo {"target": action_id}    redo {"target": action_id}
"""
from __future__ import annotations

import json
import sqlite3
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from uvis.errors import BadInputError

SCHEMA_VERSION = 2
INSTANCE_ACTIONS = ("accept", "reject", "relabel")
TRACK_ACTIONS = ("merge", "split")
CURATION_ACTIONS = (*INSTANCE_ACTIONS, *TRACK_ACTIONS, "draw")
SCOPES = ("instance", "similar", "track")

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
CREATE TABLE IF NOT EXISTS ground_truth (
    video TEXT PRIMARY KEY,
    path TEXT NOT NULL,
    source TEXT NOT NULL,
    source_video_id INTEGER NOT NULL,
    frames_dir TEXT NOT NULL,
    imported_at REAL NOT NULL
);
"""

_SCHEMA_V2 = """
CREATE TABLE IF NOT EXISTS curation_items (
    action_id INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    video TEXT NOT NULL,
    kind TEXT NOT NULL,
    frame INTEGER NOT NULL,
    idx INTEGER NOT NULL,
    src_frame INTEGER,
    fingerprint TEXT NOT NULL,
    cache_key TEXT,
    label TEXT,
    mask TEXT,
    applied INTEGER NOT NULL,
    PRIMARY KEY (action_id, seq)
);
CREATE INDEX IF NOT EXISTS curation_items_effect ON curation_items(video, applied, cache_key, fingerprint, action_id);
CREATE TABLE IF NOT EXISTS curation_effect (
    video TEXT NOT NULL,
    cache_key TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    action_id INTEGER NOT NULL,
    kind TEXT NOT NULL,
    frame INTEGER NOT NULL,
    idx INTEGER NOT NULL,
    src_frame INTEGER,
    label TEXT,
    PRIMARY KEY (video, cache_key, fingerprint)
);
CREATE TABLE IF NOT EXISTS drawn_embeddings (
    action_id INTEGER PRIMARY KEY,
    embedding BLOB NOT NULL
);
"""


@dataclass(frozen=True)
class ItemRef:
    """One instance a curation action refers to.

    ``frame``: 0-based processed frame; ``index``: position among that frame's proposals
    in the cache (``cache_key``) the person saw; ``fingerprint``: of that instance (box +
    mask, :func:`uvis.curation.fingerprint`); ``src_frame``: the source-video frame index
    (matching across strides), ``mask``: its COCO RLE counts string (carry-over by mask
    IoU), ``label``: the class the person gave or confirmed (None: not recorded).
    """

    frame: int
    index: int
    fingerprint: str
    cache_key: str | None = None
    src_frame: int | None = None
    mask: str | None = None
    label: str | None = None


@dataclass(frozen=True)
class CurationAction:
    """One logged row: id, time, video, action name, payload, the cache it was made on
    and its replay status (``applied`` / ``undone`` / ``discarded``; ``log`` for undo/redo rows)."""

    id: int
    created_at: float
    video: str
    action: str
    payload: dict[str, Any]
    cache_key: str | None = None
    status: str = "applied"


@dataclass(frozen=True)
class Effect:
    """The effective curation of one instance: its newest applied item.

    ``kind`` accept | reject | relabel | draw; ``label`` the class given (None for a
    reject, or an accept logged without one); ``action_id`` the row it comes from.
    """

    action_id: int
    kind: str
    frame: int
    index: int
    fingerprint: str
    cache_key: str | None
    src_frame: int | None
    label: str | None


@dataclass(frozen=True)
class CurationState:
    """Effective curation of a video: per-instance effects (oldest action first) and the
    applied merges, splits and draws in the order they were made."""

    effects: list[Effect]
    structural: list[CurationAction]
    version: int  # changes with every write to this video's log (its newest row id)
    struct_items: dict[int, list[ItemRef]] = field(default_factory=dict)  # action id -> its items


@dataclass
class RepairReport:
    """What :meth:`WorkspaceDB.repair` found: entries skipped (an undo/redo whose target was
    not in the state it needs — e.g. a second undo of one action) and status changes."""

    skipped: list[int] = field(default_factory=list)
    changed: int = 0


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


def _legacy_fingerprint(frame: int, index: int) -> str:
    """Placeholder fingerprint of an item logged before schema 2 (position only)."""
    return f"legacy:{int(frame)}:{int(index)}"


def is_legacy(fp: str) -> bool:
    """True for the placeholder of a pre-provenance item (:meth:`WorkspaceDB.migrate`)."""
    return fp.startswith("legacy:")


def _pair(v: Any, what: str) -> tuple[int, int]:
    if isinstance(v, dict):
        return int(v["frame"]), int(v["index"])
    if isinstance(v, (list, tuple)) and len(v) == 2:
        return int(v[0]), int(v[1])
    raise BadInputError(f"{what} must be [frame, index], got {v!r}")


class WorkspaceDB:
    """Thin typed API over the workspace SQLite file (one connection per object)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(str(self.path), timeout=60.0, check_same_thread=False,
                                     isolation_level=None)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self.migrate()

    def close(self) -> None:
        self._conn.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """``BEGIN IMMEDIATE`` … ``COMMIT`` (rolled back on error): the write lock is taken
        before anything is read, so read-then-write sequences cannot interleave."""
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            yield self._conn
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        self._conn.execute("COMMIT")

    def _write(self, sql: str, args: tuple[Any, ...]) -> int:
        cur = self._conn.execute(sql, args)
        return int(cur.lastrowid or 0)

    # ------------------------------------------------------------------ schema
    def schema_version(self) -> int:
        return int(self._conn.execute("PRAGMA user_version").fetchone()[0])

    def migrate(self) -> None:
        """Create or upgrade the schema to :data:`SCHEMA_VERSION` in one transaction.

        From version 0/1 (curation rows with ``(frame, index)`` only): adds the
        ``cache_key``/``status`` columns and the items table; each old instance reference
        becomes an item with a placeholder fingerprint (``legacy:t:i``) and no cache key —
        :func:`uvis.curation.backfill_provenance` then gives it the fingerprint of the
        video's current cache where that instance exists, and reports the others. The
        replay state is built by :meth:`repair` (tolerant: a log wedged by a double undo
        opens again).
        """
        if self.schema_version() >= SCHEMA_VERSION:
            return
        with self._transaction() as c:
            if self.schema_version() >= SCHEMA_VERSION:  # another process migrated meanwhile
                return
            for stmt in (_SCHEMA + _SCHEMA_V2).split(";"):
                if stmt.strip():
                    c.execute(stmt)
            cols = {r[1] for r in c.execute("PRAGMA table_info(curation)")}
            if "cache_key" not in cols:
                c.execute("ALTER TABLE curation ADD COLUMN cache_key TEXT")
            if "status" not in cols:
                c.execute("ALTER TABLE curation ADD COLUMN status TEXT NOT NULL DEFAULT 'applied'")
            c.execute("DROP INDEX IF EXISTS curation_video")
            c.execute("CREATE INDEX IF NOT EXISTS curation_status ON curation(video, status, id)")
            c.execute("CREATE INDEX IF NOT EXISTS curation_video_id ON curation(video, id)")
            c.execute("CREATE INDEX IF NOT EXISTS curation_structural ON curation(video, action, status, id)")
            c.execute("CREATE INDEX IF NOT EXISTS curation_items_action ON curation_items(video, kind, applied)")
            have_items = {int(r[0]) for r in c.execute("SELECT DISTINCT action_id FROM curation_items")}
            rows = c.execute("SELECT id, video, action, payload FROM curation ORDER BY id").fetchall()
            for aid, video, action, payload in rows:
                if aid in have_items or action in ("undo", "redo"):
                    continue
                try:
                    p = json.loads(payload)
                    refs = _legacy_refs(action, p)
                except (ValueError, KeyError, TypeError, BadInputError):
                    refs = []
                for seq, (kind, t, i, label) in enumerate(refs):
                    c.execute("INSERT INTO curation_items(action_id, seq, video, kind, frame, idx, fingerprint, "
                              "label, applied) VALUES (?,?,?,?,?,?,?,?,1)",
                              (aid, seq, video, kind, t, i, _legacy_fingerprint(t, i), label))
            c.execute("UPDATE curation SET status='log' WHERE action IN ('undo', 'redo')")
            self._repair_in(c, None)
            c.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    def needs_backfill(self) -> bool:
        """True if some items still carry a legacy placeholder fingerprint."""
        return self._conn.execute(
            "SELECT 1 FROM curation_items WHERE cache_key IS NULL AND fingerprint LIKE 'legacy:%' LIMIT 1"
        ).fetchone() is not None

    def legacy_items(self, video: str) -> list[tuple[int, int, int, int]]:
        """(action_id, seq, frame, index) of the items of ``video`` still without provenance."""
        return [tuple(int(x) for x in r) for r in self._conn.execute(  # type: ignore[misc]
            "SELECT action_id, seq, frame, idx FROM curation_items WHERE video=? AND cache_key IS NULL "
            "AND fingerprint LIKE 'legacy:%' ORDER BY action_id, seq", (video,))]

    def set_provenance(self, rows: Sequence[tuple[int, int, str, str, int | None, str | None]]) -> None:
        """Give items provenance: ``(action_id, seq, cache_key, fingerprint, src_frame, mask)``
        each (one transaction; used by the schema-2 backfill)."""
        with self._transaction() as c:
            c.executemany("UPDATE curation_items SET cache_key=?, fingerprint=?, src_frame=?, mask=? "
                          "WHERE action_id=? AND seq=?",
                          [(k, fp, src, m, a, s) for a, s, k, fp, src, m in rows])
            keys = {a: k for a, _, k, _, _, _ in rows if k}
            c.executemany("UPDATE curation SET cache_key=? WHERE id=? AND cache_key IS NULL",
                          [(k, a) for a, k in keys.items()])
            marks = ",".join("?" * len({r[0] for r in rows}))
            for (video,) in c.execute(f"SELECT DISTINCT video FROM curation WHERE id IN ({marks})",
                                      tuple({r[0] for r in rows})).fetchall():
                self._effect_rebuild(c, video)

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
        with self._transaction() as c:
            latest = c.execute("SELECT id, config FROM configs ORDER BY id DESC LIMIT 1").fetchone()
            if latest and latest[1] == config_json:
                return int(latest[0])
            return int(c.execute("INSERT INTO configs(created_at, note, config) VALUES (?,?,?)",
                                 (time.time(), note, config_json)).lastrowid or 0)

    def latest_config(self) -> tuple[int, str] | None:
        row = self._conn.execute("SELECT id, config FROM configs ORDER BY id DESC LIMIT 1").fetchone()
        return (int(row[0]), row[1]) if row else None

    def config_versions(self) -> list[tuple[int, float, str]]:
        return [(int(i), float(t), n or "") for i, t, n in
                self._conn.execute("SELECT id, created_at, note FROM configs ORDER BY id")]

    # ------------------------------------------------------------------ curation: writes
    def log(self, video: str, action: str, payload: dict[str, Any], *, cache_key: str | None = None,
            items: Sequence[ItemRef] | None = None) -> int:
        """Append one curation action (any of :data:`CURATION_ACTIONS`) in one transaction.

        Args:
            video: the video's workspace name.
            action: accept | reject | relabel | merge | split | draw.
            payload: the JSON payload (see the module docstring).
            cache_key: the cache the person saw (default: the video's current one).
            items: the instances it refers to, with fingerprints (:mod:`uvis.curation`
                builds them); without, items are taken from the payload's positions with a
                placeholder fingerprint (legacy form, resolved by position only against
                ``cache_key``'s cache).
        Returns:
            The new row's id. Undone actions of the video can no longer be redone.
        Raises:
            BadInputError: unknown action, missing label of a relabel, malformed payload.
        """
        if action not in CURATION_ACTIONS:
            raise BadInputError(f"unknown curation action {action!r}; expected one of {', '.join(CURATION_ACTIONS)}")
        if action == "relabel" and not (isinstance(payload.get("label"), str) and payload["label"].strip()):
            raise BadInputError("a relabel needs a non-empty 'label'")
        if payload.get("scope", "instance") not in SCOPES:
            raise BadInputError(f"curation scope must be one of {', '.join(SCOPES)}, got {payload.get('scope')!r}")
        kinds = _item_kinds(action, payload)
        if items is None:
            items = [ItemRef(t, i, _legacy_fingerprint(t, i), cache_key, label=lbl)
                     for _, t, i, lbl in _legacy_refs(action, payload)]
        if len(items) != len(kinds):
            raise BadInputError(f"{action} refers to {len(kinds)} instance(s) but {len(items)} item(s) were given")
        if not items and action != "draw":
            raise BadInputError(f"{action} refers to no instance")
        with self._transaction() as c:
            if cache_key is None:
                row = c.execute("SELECT cache_key FROM videos WHERE name=?", (video,)).fetchone()
                cache_key = row[0] if row else None
            c.execute("UPDATE curation SET status='discarded' WHERE video=? AND status='undone'", (video,))
            aid = int(c.execute(
                "INSERT INTO curation(created_at, video, action, payload, cache_key, status) VALUES (?,?,?,?,?,?)",
                (time.time(), video, action, json.dumps(payload), cache_key, "applied")).lastrowid or 0)
            c.executemany(
                "INSERT INTO curation_items(action_id, seq, video, kind, frame, idx, src_frame, fingerprint, "
                "cache_key, label, mask, applied) VALUES (?,?,?,?,?,?,?,?,?,?,?,1)",
                [(aid, s, video, kind, int(it.frame), int(it.index), it.src_frame, it.fingerprint,
                  it.cache_key or cache_key, it.label, it.mask) for s, (kind, it) in enumerate(zip(kinds, items))])
            self._effect_upsert(c, aid)
        return aid

    _EFFECT_KINDS = "('accept','reject','relabel','draw')"

    def _effect_upsert(self, c: sqlite3.Connection, aid: int) -> None:
        """Action ``aid`` is the newest applied one: its items become their instances' effect."""
        c.execute("INSERT OR REPLACE INTO curation_effect(video, cache_key, fingerprint, action_id, kind, frame, idx, "
                  "src_frame, label) SELECT video, coalesce(cache_key, ''), fingerprint, action_id, kind, frame, idx, "
                  f"src_frame, label FROM curation_items WHERE action_id=? AND kind IN {self._EFFECT_KINDS} "
                  "ORDER BY seq", (aid,))

    def _effect_recompute(self, c: sqlite3.Connection, aid: int) -> None:
        """Action ``aid`` was undone: its instances' effect falls back to their newest applied item."""
        keys = c.execute(f"SELECT DISTINCT video, cache_key, fingerprint FROM curation_items WHERE action_id=? "
                         f"AND kind IN {self._EFFECT_KINDS}", (aid,)).fetchall()
        for video, key, fp in keys:
            c.execute("DELETE FROM curation_effect WHERE video=? AND cache_key=? AND fingerprint=?",
                      (video, key or "", fp))
            c.execute("INSERT INTO curation_effect(video, cache_key, fingerprint, action_id, kind, frame, idx, "
                      "src_frame, label) SELECT video, coalesce(cache_key, ''), fingerprint, action_id, kind, frame, "
                      "idx, src_frame, label FROM curation_items WHERE video=? AND applied=1 AND cache_key IS ? "
                      f"AND fingerprint=? AND kind IN {self._EFFECT_KINDS} ORDER BY action_id DESC, seq DESC LIMIT 1",
                      (video, key, fp))

    def _effect_rebuild(self, c: sqlite3.Connection, video: str) -> None:
        c.execute("DELETE FROM curation_effect WHERE video=?", (video,))
        c.execute("INSERT OR REPLACE INTO curation_effect(video, cache_key, fingerprint, action_id, kind, frame, idx, "
                  "src_frame, label) SELECT video, coalesce(cache_key, ''), fingerprint, action_id, kind, frame, idx, "
                  f"src_frame, label FROM curation_items WHERE video=? AND applied=1 AND kind IN {self._EFFECT_KINDS} "
                  "ORDER BY action_id, seq", (video,))

    def _flip(self, video: str, undo: bool) -> CurationAction | None:
        with self._transaction() as c:
            if undo:
                row = c.execute("SELECT max(id) FROM curation WHERE video=? AND status='applied'", (video,)).fetchone()
            else:
                row = c.execute("SELECT min(id) FROM curation WHERE video=? AND status='undone'", (video,)).fetchone()
            if row is None or row[0] is None:
                return None
            target = int(row[0])
            c.execute("UPDATE curation SET status=? WHERE id=?", ("undone" if undo else "applied", target))
            c.execute("UPDATE curation_items SET applied=? WHERE action_id=?", (0 if undo else 1, target))
            if undo:
                self._effect_recompute(c, target)
            else:
                self._effect_upsert(c, target)
            c.execute("INSERT INTO curation(created_at, video, action, payload, cache_key, status) "
                      "VALUES (?,?,?,?,NULL,'log')",
                      (time.time(), video, "undo" if undo else "redo", json.dumps({"target": target})))
            return self._action(c, target)

    def undo(self, video: str) -> CurationAction | None:
        """Undo the newest applied action of ``video`` (one transaction); returns it, or None
        if there is nothing to undo. A batch action is undone as a whole."""
        return self._flip(video, True)

    def redo(self, video: str) -> CurationAction | None:
        """Re-apply the most recently undone action (if no new action came since); returns it or None."""
        return self._flip(video, False)

    def set_draw_embedding(self, action_id: int, embedding: np.ndarray) -> None:
        """Store the embedding (D,) float32 of a drawn instance (computed after it was drawn)."""
        row = self._conn.execute("SELECT action FROM curation WHERE id=?", (int(action_id),)).fetchone()
        if row is None or row[0] != "draw":
            raise BadInputError(f"curation action {action_id} is not a draw")
        emb = np.asarray(embedding, np.float32).reshape(-1)
        with self._transaction() as c:
            c.execute("INSERT OR REPLACE INTO drawn_embeddings(action_id, embedding) VALUES (?,?)",
                      (int(action_id), emb.tobytes()))

    def draw_embeddings(self, action_ids: Sequence[int]) -> dict[int, np.ndarray]:
        """Stored embeddings of the given draw actions (those that have one)."""
        if not action_ids:
            return {}
        marks = ",".join("?" * len(action_ids))
        return {int(a): np.frombuffer(b, np.float32).copy() for a, b in self._conn.execute(
            f"SELECT action_id, embedding FROM drawn_embeddings WHERE action_id IN ({marks})",
            tuple(int(a) for a in action_ids))}

    # ------------------------------------------------------------------ curation: reads
    def _action(self, c: sqlite3.Connection, aid: int) -> CurationAction:
        i, t, v, a, p, k, s = c.execute("SELECT id, created_at, video, action, payload, cache_key, status "
                                        "FROM curation WHERE id=?", (aid,)).fetchone()
        return CurationAction(int(i), float(t), v, a, json.loads(p), k, s)

    def entries(self, video: str | None = None) -> list[CurationAction]:
        """The raw log (undo/redo entries included), oldest first."""
        sql = "SELECT id, created_at, video, action, payload, cache_key, status FROM curation"
        rows = self._conn.execute(sql + " ORDER BY id") if video is None else \
            self._conn.execute(sql + " WHERE video=? ORDER BY id", (video,))
        return [CurationAction(int(i), float(t), v, a, json.loads(p), k, s) for i, t, v, a, p, k, s in rows]

    def active(self, video: str) -> list[CurationAction]:
        """Effective (applied) actions of a video, oldest first."""
        rows = self._conn.execute("SELECT id, created_at, video, action, payload, cache_key, status FROM curation "
                                  "WHERE video=? AND status='applied' ORDER BY id", (video,))
        return [CurationAction(int(i), float(t), v, a, json.loads(p), k, s) for i, t, v, a, p, k, s in rows]

    def items(self, action_id: int) -> list[ItemRef]:
        """The instances one action refers to, in order."""
        return [ItemRef(int(t), int(i), fp, k, None if s is None else int(s), m, lbl) for t, i, fp, k, s, m, lbl in
                self._conn.execute("SELECT frame, idx, fingerprint, cache_key, src_frame, mask, label "
                                   "FROM curation_items WHERE action_id=? ORDER BY seq", (int(action_id),))]

    def masks_of(self, keys: Sequence[tuple[int, str]]) -> dict[tuple[int, str], str | None]:
        """Mask RLE counts of items, by (action_id, fingerprint)."""
        out: dict[tuple[int, str], str | None] = {}
        for aid, fp in keys:
            row = self._conn.execute("SELECT mask FROM curation_items WHERE action_id=? AND fingerprint=? LIMIT 1",
                                     (int(aid), fp)).fetchone()
            out[(aid, fp)] = row[0] if row else None
        return out

    def version(self, video: str) -> int:
        """Id of the newest log row of ``video`` (0 if none): changes with every write to it."""
        row = self._conn.execute("SELECT max(id) FROM curation WHERE video=?", (video,)).fetchone()
        return int(row[0] or 0)

    def global_version(self) -> int:
        """Id of the newest log row of the workspace: changes with every curation write (PMF is
        project-wide, so any video's curation can change another video's decisions)."""
        row = self._conn.execute("SELECT max(id) FROM curation").fetchone()
        return int(row[0] or 0)

    def effect(self, video: str) -> CurationState:
        """The effective curation of ``video`` from the kept replay state (no log replay):
        per instance (cache key + fingerprint) its newest applied item (table
        ``curation_effect``, maintained by every write), and the applied merges, splits and
        draws (payloads parsed for draws only). Cost: proportional to the state, not the log."""
        rows = self._conn.execute(
            "SELECT action_id, kind, frame, idx, fingerprint, cache_key, src_frame, label FROM curation_effect "
            "WHERE video=?", (video,)).fetchall()
        effects = sorted((Effect(int(a), k, int(t), int(i), fp, ck or None, None if s is None else int(s), lbl)
                          for a, k, t, i, fp, ck, s, lbl in rows), key=lambda e: e.action_id)
        struct: list[CurationAction] = []
        struct_items: dict[int, list[ItemRef]] = {}
        last = -1
        for aid, created, act, payload, key, t, i, fp, ikey, src, lbl in self._conn.execute(
                "SELECT c.id, c.created_at, c.action, CASE WHEN c.action='draw' THEN c.payload END, c.cache_key, "
                "i.frame, i.idx, i.fingerprint, i.cache_key, i.src_frame, i.label "
                "FROM curation c INDEXED BY curation_structural JOIN curation_items i ON i.action_id = c.id "
                "WHERE c.video=? AND c.action IN ('merge','split','draw') AND c.status='applied' "
                "ORDER BY c.id, i.seq", (video,)):
            if aid != last:
                struct.append(CurationAction(int(aid), float(created), video, act,
                                             json.loads(payload) if payload else {}, key, "applied"))
                struct_items[int(aid)] = []
                last = aid
            struct_items[int(aid)].append(ItemRef(int(t), int(i), fp, ikey, None if src is None else int(src),
                                                  None, lbl))
        return CurationState(effects, struct, self.version(video), struct_items)

    def history(self, video: str, limit: int = 50) -> list[tuple[CurationAction, int]]:
        """The newest ``limit`` curation actions of ``video`` (undo/redo rows excluded), newest
        first, each with the number of instances it covers."""
        rows = self._conn.execute(
            "SELECT c.id, c.created_at, c.video, c.action, c.payload, c.cache_key, c.status, "
            "(SELECT count(*) FROM curation_items i WHERE i.action_id=c.id) FROM curation c "
            "WHERE c.video=? AND c.status != 'log' ORDER BY c.id DESC LIMIT ?", (video, int(limit)))
        return [(CurationAction(int(i), float(t), v, a, json.loads(p), k, s), int(n)) for i, t, v, a, p, k, s, n in rows]

    def curated_videos(self) -> list[str]:
        return [r[0] for r in self._conn.execute("SELECT DISTINCT video FROM curation ORDER BY video")]

    def iter_all_active(self) -> Iterator[CurationAction]:
        """Effective actions of every video."""
        for name in self.curated_videos():
            yield from self.active(name)

    # ------------------------------------------------------------------ replay & repair
    def replay(self, video: str) -> tuple[dict[int, str], list[int]]:
        """A tolerant replay of the raw log of ``video``: ``(status by action id, skipped
        undo/redo row ids)``. Undo/redo entries whose target is not in the state they need
        (applied / undone) are skipped — never raised on — so a log can never be wedged."""
        rows = self._conn.execute("SELECT id, action, payload FROM curation WHERE video=? ORDER BY id",
                                  (video,)).fetchall()
        return _tolerant_replay(rows)

    def verify(self, video: str) -> bool:
        """True if the kept replay state of ``video`` equals a tolerant replay of its log."""
        status, _ = self.replay(video)
        kept = {int(i): s for i, s in self._conn.execute(
            "SELECT id, status FROM curation WHERE video=? AND status != 'log'", (video,))}
        if kept != status:
            return False
        bad = self._conn.execute(
            "SELECT count(*) FROM curation_items i JOIN curation c ON c.id=i.action_id WHERE c.video=? "
            "AND i.applied != (c.status='applied')", (video,)).fetchone()[0]
        if int(bad):
            return False
        kept_effect = sorted(self._conn.execute("SELECT cache_key, fingerprint, action_id, kind, label FROM "
                                                "curation_effect WHERE video=?", (video,)).fetchall())
        newest = sorted(self._conn.execute(
            "SELECT coalesce(cache_key, ''), fingerprint, max(action_id), kind, label FROM curation_items "
            f"WHERE video=? AND applied=1 AND kind IN {self._EFFECT_KINDS} GROUP BY coalesce(cache_key, ''), "
            "fingerprint", (video,)).fetchall())
        return kept_effect == newest

    def repair(self, video: str | None = None) -> RepairReport:
        """Rebuild the replay state of one video (or all) from the log, in one transaction.

        For logs written before schema 2 that two simultaneous undos wedged (the same
        action undone twice: every replay raised ``list.remove(x): x not in list``), the
        duplicate entry is skipped and reported; nothing is deleted.
        """
        with self._transaction() as c:
            return self._repair_in(c, video)

    def _repair_in(self, c: sqlite3.Connection, video: str | None) -> RepairReport:
        report = RepairReport()
        names = [video] if video else [r[0] for r in c.execute("SELECT DISTINCT video FROM curation")]
        for name in names:
            rows = c.execute("SELECT id, action, payload FROM curation WHERE video=? ORDER BY id", (name,)).fetchall()
            status, skipped = _tolerant_replay(rows)
            report.skipped += skipped
            old = {int(i): s for i, s in c.execute(
                "SELECT id, status FROM curation WHERE video=? AND status != 'log'", (name,))}
            changed = [(s, i) for i, s in status.items() if old.get(i) != s]
            report.changed += len(changed)
            c.executemany("UPDATE curation SET status=? WHERE id=?", changed)
            c.executemany("UPDATE curation_items SET applied=? WHERE action_id=?",
                          [(1 if s == "applied" else 0, i) for s, i in changed])
            self._effect_rebuild(c, name)
        return report


def _tolerant_replay(rows: Sequence[tuple[int, str, str]]) -> tuple[dict[int, str], list[int]]:
    status: dict[int, str] = {}
    applied: dict[int, None] = {}  # insertion-ordered sets: O(1) membership and removal
    undone: dict[int, None] = {}
    skipped: list[int] = []
    for rid, action, payload in rows:
        rid = int(rid)
        if action in ("undo", "redo"):
            try:
                target = int(json.loads(payload)["target"])
            except (ValueError, KeyError, TypeError):
                skipped.append(rid)
                continue
            src, dst = (applied, undone) if action == "undo" else (undone, applied)
            if target not in src:
                skipped.append(rid)
                continue
            del src[target]
            dst[target] = None
            status[target] = "undone" if action == "undo" else "applied"
        else:
            for u in undone:
                status[u] = "discarded"
            undone.clear()
            applied[rid] = None
            status[rid] = "applied"
    return status, skipped


def _item_kinds(action: str, p: dict[str, Any]) -> list[str]:
    if action in INSTANCE_ACTIONS:
        if "items" in p:
            if not isinstance(p["items"], list):
                raise BadInputError(f"{action}: 'items' must be a list of [frame, index]")
            return [action] * len(p["items"])
        return [action]
    if action == "merge":
        return ["merge_a", "merge_b"]
    if action == "split":
        return ["split"]
    return ["draw"]


def _legacy_refs(action: str, p: dict[str, Any]) -> list[tuple[str, int, int, str | None]]:
    """(kind, frame, index, label) of each instance a payload names by position."""
    label = p.get("label")
    if action in INSTANCE_ACTIONS:
        pairs = [_pair(x, f"{action} item") for x in p["items"]] if "items" in p else \
            [(int(p["frame"]), int(p["index"]))]
        return [(action, t, i, label if action == "relabel" else None) for t, i in pairs]
    if action == "merge":
        (ta, ia), (tb, ib) = _pair(p["a"], "merge.a"), _pair(p["b"], "merge.b")
        return [("merge_a", ta, ia, None), ("merge_b", tb, ib, None)]
    if action == "split":
        t, i = _pair(p["at"], "split.at")
        return [("split", t, i, None)]
    if action == "draw":
        return [("draw", int(p["frame"]), -1, label)]
    return []
