"""The pipeline facade: run models into a workspace, then decide from the cache.

    ws = Workspace("workspace")
    Runner(ws, config).label_video("clip.mp4")        # models, once (resumable)
    project = open_project(ws)                       # loads caches, no models
    results = project.decide(config)                 # milliseconds per change
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from uvis.config import Config, EmbedderConfig
from uvis.decide import Project, VideoResult
from uvis.errors import BadInputError
from uvis.runner import Cancelled, Progress, Runner
from uvis.text_cache import TextEmbeddingCache, TextEncoder
from uvis.workspace import Workspace

__all__ = ["Cancelled", "Progress", "Project", "Runner", "VideoResult", "Workspace", "decide_workspace",
           "open_project"]


def _encoder_factory(embedder_config: dict) -> "callable":
    def factory() -> TextEncoder:
        from uvis.embedders.factory import make_embedder

        return make_embedder(EmbedderConfig(**embedder_config)).encode_text

    return factory


def open_project(workspace: Workspace, videos: Sequence[str] | None = None, *,
                 text_encoder: TextEncoder | None = None) -> Project:
    """Load the caches of a workspace's videos (all, or the named ones) into a :class:`Project`.

    Prompts missing from the text cache are encoded by ``text_encoder`` if given, else by
    an embedder rebuilt from the cache's stored embedder settings (loaded on first need).
    """
    names = list(videos) if videos is not None else workspace.video_names()
    if not names:
        raise BadInputError(f"workspace {workspace.root} has no labelled videos; run `python -m uvis label` first")
    caches = {n: workspace.load_cache(n) for n in names}
    meta = next(iter(caches.values())).meta
    text_cache = TextEmbeddingCache(workspace.text_cache_dir, meta.embedder) if meta.has_text else None
    factory = (lambda: text_encoder) if text_encoder is not None else _encoder_factory(meta.embedder_config)
    return Project(caches, text_cache=text_cache, text_encoder_factory=factory, db=workspace.db)


def decide_workspace(workspace_dir: str | Path, config: Config) -> dict[str, VideoResult]:
    """Decisions for every video of a workspace under ``config``."""
    ws = Workspace(workspace_dir)
    try:
        return open_project(ws).decide(config)
    finally:
        ws.close()
