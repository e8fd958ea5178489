"""A small curated workspace for training tests, benchmarks and the demo (real code paths).

:func:`make_curated_workspace` labels the first frames of a video with the weight-free
``motion`` proposer and the packaged EfficientNet embedder (as ``python -m uvis label
--proposer motion --embedder efficientnet`` does), then a "person" curates it through the
curation log: every proposal with objectness >= ``min_objectness`` is relabelled
``label``. The decided, kept instances are then the training targets.
"""
from __future__ import annotations

from pathlib import Path

from uvis.config import Config


def make_curated_workspace(root: str | Path, video: str | Path, *, max_frames: int = 8, label: str = "person",
                           min_objectness: float = 0.7) -> Path:
    """Label ``video`` into workspace ``root`` and relabel its confident proposals; returns ``root``."""
    from uvis.runner import Runner
    from uvis.workspace import Workspace

    # label by example (not the class-agnostic default): only what a person labelled, and
    # what resembles it, is kept
    cfg = Config.from_dict({"proposer": {"backend": "motion"}, "embedder": {"backend": "efficientnet"},
                            "video": {"max_frames": max_frames}, "labeler": {"label_source": "examples"}})
    ws = Workspace(root)
    try:
        ws.db.save_config(cfg.to_json(), note="label")
        cache = Runner(ws, cfg).label_video(video)
        inst = cache.instances
        per_frame: dict[int, int] = {}
        for i in range(len(inst)):
            t = int(inst.frame[i])
            k = per_frame.get(t, 0)
            per_frame[t] = k + 1
            if float(inst.objectness[i]) >= min_objectness:
                ws.db.log(cache.info.name, "relabel", {"frame": t, "index": k, "label": label})
    finally:
        ws.close()
    return Path(root)
