"""A workspace folder: per-video caches, text-embedding cache and the SQLite database.

Layout::

    <workspace>/uvis.sqlite            videos, config versions, curation log
    <workspace>/videos/<name>/<key>/   model-output cache of one video (see uvis.cache)
    <workspace>/text_cache/            prompt embeddings per text encoder
    <workspace>/uploads/               videos added through the app
    <workspace>/exports/               export outputs
"""
from __future__ import annotations

import json
import re
from pathlib import Path

from uvis.cache import VideoCache
from uvis.config import Config
from uvis.db import WorkspaceDB
from uvis.errors import BadInputError

_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


def video_name_for(path: str | Path) -> str:
    """A workspace-safe video name from a file or folder path (its stem, sanitised)."""
    p = Path(path)
    stem = p.stem if p.suffix else p.name
    name = _SAFE.sub("_", stem).strip("._") or "video"
    return name


class Workspace:
    """Paths and database of one workspace folder (created on first use)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).expanduser().resolve()
        if self.root.exists() and not self.root.is_dir():
            raise BadInputError(f"workspace {self.root} exists and is not a folder")
        self.root.mkdir(parents=True, exist_ok=True)
        self.db = WorkspaceDB(self.root / "uvis.sqlite")
        if self.db.needs_backfill():  # curation rows from before schema 2: give them provenance
            from uvis.curation import backfill_provenance

            backfill_provenance(self)

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
        return self.videos_dir / video / key

    def video_names(self) -> list[str]:
        """Names of videos with a cache, in the order they were added."""
        return [r.name for r in self.db.videos() if r.cache_key]

    def load_cache(self, video: str) -> VideoCache:
        """Load a video's current cache (the one recorded in the database)."""
        rec = self.db.video(video)
        if rec is None or not rec.cache_key:
            known = ", ".join(self.video_names()) or "none"
            raise BadInputError(f"video '{video}' is not in workspace {self.root} (videos: {known})")
        return VideoCache.load(self.cache_dir(video, rec.cache_key))

    def current_config(self, path: str | Path | None = None) -> Config:
        """The config to decide with: ``path`` if given, else the latest one saved in the
        workspace database, else the defaults."""
        if path:
            return Config.load(path)
        latest = self.db.latest_config()
        return Config.from_dict(json.loads(latest[1])) if latest else Config()

    def close(self) -> None:
        self.db.close()
