"""A workspace folder: per-video caches, text-embedding cache and the SQLite database.

Layout::

    <workspace>/uvis.sqlite                    videos, config versions, curation log
    <workspace>/videos/<name>/source.json      the source a video name belongs to
    <workspace>/videos/<name>/<key>/           model-output cache of one video (see uvis.cache)
    <workspace>/text_cache/                    prompt embeddings per text encoder
    <workspace>/uploads/                       videos added through the app
    <workspace>/exports/                       export outputs

Video identity: a name belongs to one source, recorded in ``source.json`` (resolved
path, size and content fingerprint, :func:`uvis.video.source_fingerprint`). A source
with the same size and fingerprint is the same video (a copy or a move keeps its name
and cache); another source whose sanitised name clashes (``a/clip.mp4`` and
``b/clip.mp4``, ``clip.mp4`` and ``clip.avi``, ``名前.mp4`` and ``テスト.mp4``) gets the
next free name ``clip_2``, ``clip_3``, ... (:meth:`Workspace.claim_video_name`), or is
refused when the caller insisted on the name. Videos registered before ``source.json``
existed belong to the path recorded in the database.
"""
from __future__ import annotations

import json
import re
import sqlite3
from dataclasses import asdict, dataclass
from pathlib import Path

from uvis.cache import VideoCache
from uvis.config import Config
from uvis.db import WorkspaceDB
from uvis.errors import BadInputError
from uvis.fsutil import atomic_write_json, clean_stale_temps

_SAFE = re.compile(r"[^A-Za-z0-9._-]+")
_VALID_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,199}")
SOURCE_FILE = "source.json"
_MAX_SUFFIX = 10_000


def video_name_for(path: str | Path) -> str:
    """A workspace-safe video name from a file or folder path (its stem, sanitised)."""
    p = Path(path)
    stem = p.stem if p.suffix else p.name
    name = _SAFE.sub("_", stem).strip("._-")[:100].strip("._-") or "video"
    return name


def check_video_name(name: str) -> str:
    """``name`` if it is a safe video name (one folder name of letters, digits and ``._-``,
    not starting with a dot, at most 200 characters); else :class:`BadInputError`."""
    if not isinstance(name, str) or not _VALID_NAME.fullmatch(name) or name in (".", ".."):
        shown = repr(name) if len(str(name)) <= 60 else f"{str(name)[:40]!r}... ({len(str(name))} characters)"
        raise BadInputError(f"video name {shown} is not allowed: use letters, digits, '.', '_' and '-' only, "
                            "not starting with a dot, at most 200 characters (e.g. "
                            f"{video_name_for(str(name))!r})")
    return name


@dataclass(frozen=True)
class VideoSource:
    """What a video name stands for: resolved ``path``, ``size`` in bytes and content ``fingerprint``."""

    path: str
    size: int
    fingerprint: str

    @classmethod
    def of(cls, path: str | Path) -> "VideoSource":
        """The identity of the file or frame folder at ``path`` (BadInputError if unreadable)."""
        from uvis.video import source_fingerprint

        size, fp = source_fingerprint(path)
        return cls(str(Path(path).expanduser().resolve()), size, fp)

    def same_video(self, other: "VideoSource") -> bool:
        """Same content (a copy or a moved file counts as the same video)."""
        return (self.size, self.fingerprint) == (other.size, other.fingerprint)


class Workspace:
    """Paths and database of one workspace folder (created on first use).

    Raises:
        BadInputError: the folder cannot be created or its database cannot be opened
            (not a folder, read-only or virtual file system, name too long).
    """

    def __init__(self, root: str | Path) -> None:
        shown = str(root) if len(str(root)) <= 200 else f"{str(root)[:100]}... ({len(str(root))} characters)"
        try:
            self.root = Path(root).expanduser().resolve()
            if self.root.exists() and not self.root.is_dir():
                raise BadInputError(f"workspace {self.root} exists and is not a folder")
            self.root.mkdir(parents=True, exist_ok=True)
            self.db = WorkspaceDB(self.root / "uvis.sqlite")
        except (OSError, sqlite3.Error, RecursionError) as exc:  # RecursionError: thousands of missing levels
            reason = getattr(exc, "strerror", None) or ("too many nested folders" if isinstance(exc, RecursionError) else str(exc))
            raise BadInputError(f"workspace {shown} cannot be used: {reason}; choose a writable folder "
                                "(--workspace)") from exc
        if self.db.needs_backfill():  # curation rows from before schema 2: give them provenance
            from uvis.curation import backfill_provenance

            backfill_provenance(self)

    @classmethod
    def existing(cls, root: str | Path) -> "Workspace":
        """Open a workspace folder that must exist already (``show``, ``export``, ``import``).

        Raises:
            BadInputError: no such folder (or its path cannot even be looked up)."""
        try:
            found = Path(root).expanduser().is_dir()
        except OSError as exc:
            found, why = False, f" ({exc.strerror or exc})"
        else:
            why = ""
        if not found:
            shown = str(root) if len(str(root)) <= 200 else f"{str(root)[:100]}... ({len(str(root))} characters)"
            raise BadInputError(f"workspace not found: {shown}{why}; pass --workspace FOLDER")
        return cls(root)

    @property
    def videos_dir(self) -> Path:
        return self.root / "videos"

    @property
    def text_cache_dir(self) -> Path:
        return self.root / "text_cache"

    @property
    def uploads_dir(self) -> Path:
        return self.root / "uploads"

    @property
    def exports_dir(self) -> Path:
        return self.root / "exports"

    def cache_dir(self, video: str, key: str) -> Path:
        return self.videos_dir / check_video_name(video) / check_video_name(key)

    def video_names(self) -> list[str]:
        """Names of videos with a cache, in the order they were added."""
        return [r.name for r in self.db.videos() if r.cache_key]

    def current_cache_key(self, video: str) -> str:
        """The key of the cache ``video`` is decided from (what curation provenance records).

        Raises:
            BadInputError: the video is unknown or not labelled yet.
        """
        rec = self.db.video(video)
        if rec is None or not rec.cache_key:
            known = ", ".join(self.video_names()) or "none"
            raise BadInputError(f"video '{video}' is not in workspace {self.root} (videos: {known})")
        return rec.cache_key

    def load_cache(self, video: str) -> VideoCache:
        """Load a video's current cache (the one recorded in the database)."""
        return VideoCache.load(self.cache_dir(video, self.current_cache_key(video)))

    # ------------------------------------------------------------------ video identity
    def video_source(self, video: str) -> VideoSource | None:
        """The recorded source of ``video`` (None: none recorded)."""
        path = self.videos_dir / check_video_name(video) / SOURCE_FILE
        try:
            return VideoSource(**json.loads(path.read_text()))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, TypeError) as exc:
            raise BadInputError(f"{path} is damaged ({exc}); move it away to re-register the video") from exc

    def _belongs_to(self, name: str, source: VideoSource) -> bool | None:
        """Whether ``name`` is ``source``'s (True), another video's (False) or free (None)."""
        recorded = self.video_source(name)
        if recorded is not None:
            return recorded.same_video(source)
        rec = self.db.video(name)
        if rec is not None:  # registered before identities were recorded: the recorded path decides
            try:
                return Path(rec.path).expanduser().resolve() == Path(source.path)
            except OSError:
                return False
        return None if not (self.videos_dir / name).exists() else False

    def resolve_video_name(self, path: str | Path, name: str | None = None) -> tuple[str, VideoSource, str | None]:
        """The name ``path`` is (or would be) registered under, without registering it.

        Returns ``(name, source, note)``; ``note`` says why the name differs from the
        one asked for or derived from the path (None when it does not).

        Args:
            path: a video file or frame folder.
            name: the name the caller insists on; if it belongs to another source the
                call is refused. None: derived from the path (:func:`video_name_for`),
                with ``_2``, ``_3``, ... appended while the name is another video's.

        Raises:
            BadInputError: unsafe ``name``, ``name`` taken by another video, unreadable path.
        """
        source = VideoSource.of(path)
        if name is not None:
            check_video_name(name)
            if self._belongs_to(name, source) is False:
                raise BadInputError(f"video name '{name}' already belongs to another video "
                                    f"({self._owner_text(name)}); choose another name for {path}")
            return name, source, None
        wanted = video_name_for(path)
        for k in range(1, _MAX_SUFFIX):
            candidate = wanted if k == 1 else f"{wanted}_{k}"
            if self._belongs_to(candidate, source) is not False:
                note = None if k == 1 else (f"{path}: the name '{wanted}' belongs to another video "
                                            f"({self._owner_text(wanted)}); labelled as '{candidate}'")
                return candidate, source, note
        raise BadInputError(f"{path}: too many videos named {wanted}_N in {self.root}; rename the file")

    def register_source(self, name: str, source: VideoSource) -> None:
        """Record that ``name`` belongs to ``source`` (atomically; updates a moved path)."""
        folder = self.videos_dir / check_video_name(name)
        folder.mkdir(parents=True, exist_ok=True)
        clean_stale_temps(folder)  # a killed run's temporary source.json
        atomic_write_json(folder / SOURCE_FILE, asdict(source), indent=1)

    def claim_video_name(self, path: str | Path, name: str | None = None) -> tuple[str, str | None]:
        """:meth:`resolve_video_name`, then :meth:`register_source`: returns ``(name, note)``.

        The app claims a name when it queues a video, so two queued videos never share one."""
        name, source, note = self.resolve_video_name(path, name)
        self.register_source(name, source)
        return name, note

    def _owner_text(self, name: str) -> str:
        recorded = self.video_source(name)
        if recorded is not None:
            return recorded.path
        rec = self.db.video(name)
        return rec.path if rec is not None else f"folder {self.videos_dir / name}"

    def current_config(self, path: str | Path | None = None) -> Config:
        """The config to decide with: ``path`` if given, else the latest one saved in the
        workspace database, else the defaults."""
        if path:
            return Config.load(path)
        latest = self.db.latest_config()
        return Config.from_dict(json.loads(latest[1])) if latest else Config()

    def close(self) -> None:
        self.db.close()
