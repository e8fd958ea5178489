"""Table 1 from a workspace: frame-level F1 of three filter settings against YouTube-VIS GT.

Rows (DESIGN §1.4–1.5, the paper's supplementary Table 1):

* ``none``: objectness threshold 0, CLIP threshold 0 (no per-class overrides), PMF off;
* ``score``: objectness 0.7 and CLIP score 0.7, PMF off;
* ``score+pmf``: the default filter settings (score filter and PMF);
* ``config``: the given base config as is, when its filter settings differ from all
  three (a user's own setting).

Every other setting (vocabulary, templates, tracker) is the base config's. Predictions
are the kept instances (``decision == Reason.KEPT``) with a label; class = the label's
vocabulary name, matched to a ground-truth category by name (underscores and spaces,
case ignored); score = CLIP score. Predicted classes without a ground-truth category
are counted (as false positives of their own class) but do not enter mF1.

Videos are matched by name: the workspace video name against the ground-truth video's
folder (``file_names[0]``'s parent). Frames are matched by file name (frame folders)
or by source frame index (video files); only ground-truth frames the workspace
processed are evaluated (with a frame stride, the skipped frames are not counted).
Masks of downscaled frames are resized (nearest neighbour) to the ground-truth size.
"""
from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import Any, Callable, Mapping, Protocol

import numpy as np

from uvis.config import Config, FilterConfig, display_name
from uvis.errors import BadInputError
from uvis.masks import to_coco
from uvis.eval.frame_f1 import F1Result, FrameObject, frame_f1
from uvis.eval.report import Table1, table1
from uvis.eval.ytvis_io import YtvisGroundTruth, YtvisVideo, frames_from_ytvis, load_ground_truth
from uvis.types import Instances, Reason, VideoInfo

ROW_NONE, ROW_SCORE, ROW_PMF, ROW_USER = "none", "score", "score+pmf", "config"


class VideoResultLike(Protocol):
    """What this module reads of :class:`uvis.decide.VideoResult`."""

    info: VideoInfo
    instances: Instances
    vocabulary: list[str]
    classes: np.ndarray  # (N,) class of each instance as exported (uvis.curation.instance_classes)


Decide = Callable[[Config], Mapping[str, VideoResultLike]]
"""Decisions of every workspace video under one config (video name -> result)."""


def row_configs(base: Config) -> dict[str, Config]:
    """The Table-1 settings derived from ``base`` (see the module docstring)."""
    rows = {
        ROW_NONE: base.replace(filters__objectness_threshold=0.0, filters__clip_threshold=0.0,
                               filters__clip_threshold_per_class={}, filters__pmf_enabled=False),
        ROW_SCORE: base.replace(filters__objectness_threshold=0.7, filters__clip_threshold=0.7,
                                filters__clip_threshold_per_class={}, filters__pmf_enabled=False),
        ROW_PMF: base.replace(filters=FilterConfig()),
    }
    if all(base.filters != cfg.filters for cfg in rows.values()):
        rows[ROW_USER] = base
    return rows


def f1_for_videos(
    videos: Mapping[str, VideoResultLike], gt: YtvisGroundTruth
) -> tuple[F1Result, dict[int, str], dict[str, Any]]:
    """Frame-level F1 of the kept instances of ``videos`` against ``gt``.

    Returns:
        the result, class id -> name (GT categories plus predicted classes without a
        GT category), and notes (videos matched/unmatched, frames evaluated).
    Raises:
        BadInputError: no workspace video matches a ground-truth video.
    """
    by_name = gt.video_by_name()
    by_safe = {_safe(n): v for n, v in by_name.items()}
    gt_frames = frames_from_ytvis(gt)
    start: dict[int, int] = {}
    for i, (vid, _) in enumerate(gt_frames.keys):
        start.setdefault(vid, i)
    name_to_id = {_norm(n): cid for cid, n in gt.categories.items()}
    class_names = dict(gt.categories)
    extra: dict[str, int] = {}
    next_id = max(gt.categories, default=0) + 1

    def class_id(name: str) -> int:
        nonlocal next_id
        key = _norm(name)
        if key in name_to_id:
            return name_to_id[key]
        if key not in extra:
            extra[key] = next_id
            class_names[next_id] = name
            next_id += 1
        return extra[key]

    all_gt: list[list[FrameObject]] = []
    all_pred: list[list[FrameObject]] = []
    matched: list[str] = []
    unmatched_ws: list[str] = []
    for name, res in videos.items():
        video = by_name.get(name) or by_safe.get(_safe(name))
        if video is None:
            unmatched_ws.append(name)
            continue
        matched.append(name)
        ids = np.array([class_id(c) for c in res.vocabulary], dtype=np.int64)
        pairs = _align_frames(res.info, video)
        preds = _predictions(res.instances, res.classes, ids, video)
        for t, g in pairs:
            all_gt.append(gt_frames.gt[start[video.id] + g])
            all_pred.append(preds.get(t, []))
    if not matched:
        raise BadInputError(
            f"no workspace video matches a video of {gt.source} (names compared with the folder of "
            f"file_names[0]; workspace: {', '.join(sorted(videos)[:5]) or 'none'}; "
            f"ground truth: {', '.join(sorted(by_name)[:5])} ...)"
        )
    result = frame_f1(all_gt, all_pred)
    matched_ids = {(by_name.get(n) or by_safe[_safe(n)]).id for n in matched}
    notes = {
        "videos_matched": len(matched),
        "workspace_videos_without_gt": sorted(unmatched_ws),
        "gt_videos_not_in_workspace": len(gt.videos) - len(matched_ids),
        "frames_evaluated": len(all_gt),
        "predicted_classes_not_in_gt": sorted(extra),
    }
    return result, class_names, notes


def table1_for_workspace(
    workspace_dir: str | Path,
    gt_json_path: str | Path,
    base_config: Config,
    *,
    decide: Decide | None = None,
) -> Table1:
    """Table 1 (none / score / score+pmf, plus the base config when it differs) for a workspace.

    Args:
        workspace_dir: a workspace folder with cached videos.
        gt_json_path: YouTube-VIS annotation JSON of (some of) the workspace's videos.
        base_config: settings other than the filters (vocabulary, templates, ...).
        decide: decisions under one config (tests); default: the workspace's
            :class:`uvis.decide.Project`, loaded once for all rows.
    """
    gt = load_ground_truth(gt_json_path)
    configs = row_configs(base_config)
    if decide is not None:
        decided = {row: decide(cfg) for row, cfg in configs.items()}
    else:
        decided = _decide_rows(Path(workspace_dir), configs)
    rows: dict[str, F1Result] = {}
    names: dict[int, str] = dict(gt.categories)
    notes: dict[str, Any] = {"gt": str(gt_json_path), "workspace": str(workspace_dir), "rows": {}}
    for row, cfg in configs.items():
        result, row_names, row_notes = f1_for_videos(decided[row], gt)
        rows[row] = result
        names.update(row_names)
        notes.update(row_notes)
        f = cfg.filters
        notes["rows"][row] = {
            "objectness_threshold": f.objectness_threshold, "clip_threshold": f.clip_threshold,
            "clip_threshold_per_class": dict(f.clip_threshold_per_class), "pmf_enabled": f.pmf_enabled,
            "pmf_threshold": f.pmf_threshold,
        }
    return table1(rows, names, notes)


def _decide_rows(workspace_dir: Path, configs: Mapping[str, Config]) -> dict[str, Mapping[str, VideoResultLike]]:
    """Decisions of every row, loading the workspace's caches once."""
    if not workspace_dir.is_dir():
        raise BadInputError(f"workspace not found: {workspace_dir}")
    from uvis.pipeline import open_project
    from uvis.workspace import Workspace

    ws = Workspace(workspace_dir)
    try:
        project = open_project(ws)
        return {row: project.decide(cfg) for row, cfg in configs.items()}
    finally:
        ws.close()


def workspace_config(workspace_dir: str | Path) -> Config:
    """The workspace's latest saved config, or the defaults when it has none."""
    from uvis.workspace import Workspace

    path = Path(workspace_dir)
    if not path.is_dir():
        raise BadInputError(f"workspace not found: {path}")
    ws = Workspace(path)
    try:
        return ws.current_config()
    finally:
        ws.close()


# ----------------------------------------------------------------------------- helpers
def _norm(name: str) -> str:
    return display_name(name).lower()


def _safe(name: str) -> str:
    from uvis.workspace import video_name_for

    return video_name_for(name)


def _align_frames(info: VideoInfo, video: YtvisVideo) -> list[tuple[int, int]]:
    """(processed frame t, GT frame index) pairs: by file name when both sides have
    names that match, else by source frame index."""
    if info.frame_names and video.file_names:
        gt_index = {PurePosixPath(f.replace("\\", "/")).name: i for i, f in enumerate(video.file_names)}
        pairs = [(t, gt_index[n]) for t, n in enumerate(info.frame_names) if n in gt_index]
        if pairs:
            return pairs
    src = info.source_indices or tuple(range(info.num_frames))
    return [(t, int(s)) for t, s in enumerate(src) if 0 <= int(s) < video.length]


def _predictions(inst: Instances, classes: np.ndarray, class_ids: np.ndarray,
                 video: YtvisVideo) -> dict[int, list[FrameObject]]:
    """Kept, labelled instances per processed frame, masks at the GT video's size; the class
    of each is its class as shown and exported (``classes``, the track-label rule)."""
    if inst.decision is None or inst.label is None or inst.clip_score is None:
        raise BadInputError("workspace decisions lack decision/label/clip_score fields; re-run the decision pass")
    keep = (inst.decision == Reason.KEPT) & (classes >= 0)
    out: dict[int, list[FrameObject]] = {}
    h, w = inst.image_size
    resize = (h, w) != (video.height, video.width)
    assert inst.frame is not None
    for i in np.flatnonzero(keep):
        rle = inst.masks[i]
        rle = _resize(rle, video.height, video.width) if resize else to_coco(rle)
        out.setdefault(int(inst.frame[i]), []).append(
            FrameObject(int(class_ids[classes[i]]), rle, _score(inst, int(i)))
        )
    return out


def _score(inst: Instances, i: int) -> float:
    """The prediction's score: its CLIP score, or its objectness where it has none
    (class-agnostic decisions)."""
    s = float(inst.clip_score[i])  # type: ignore[index]
    return s if np.isfinite(s) else float(inst.objectness[i])


def _resize(rle: dict, height: int, width: int) -> dict:
    import cv2

    from uvis.masks import decode, encode

    mask = decode(rle).astype(np.uint8)
    return to_coco(encode(cv2.resize(mask, (width, height), interpolation=cv2.INTER_NEAREST) > 0))

