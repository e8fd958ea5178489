"""Importers: YouTube-VIS ground truth with frames, exported pseudo-labels, predictions.

* :func:`load_ytvis_ground_truth` validates a YouTube-VIS annotation file *and* its
  frames (every ``file_names`` entry exists under ``frames_dir`` with the video's size).
* :func:`import_ytvis_into_workspace` registers each ground-truth video (its frame
  folder) in a workspace and records its ground truth (``ground_truth`` table of the
  workspace database; one YouTube-VIS JSON per video under ``<workspace>/ground_truth/``).
* :func:`read_ytvis_instances` / :func:`read_coco_instances` read annotation files back
  into :class:`ImportedVideo` tables: our exports losslessly (through their ``uvis``
  fields), foreign files as labelled proposals (objectness and CLIP score 1).
* :func:`read_ytvis_predictions` / :func:`read_coco_predictions` read results files
  (scored predictions) against their annotation file.
* :func:`import_fiftyone_dataset` reads a FiftyOne dataset written by
  :func:`uvis.export.fiftyone_export.export_fiftyone` back into the exact tables.

Every error names the file and the place in it (``annotations[3].segmentations[7]``).
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Sequence

import numpy as np

from uvis import masks as mask_ops
from uvis.errors import BadInputError
from uvis.export._common import COLUMNS, parse_columns, proposal_indices
from uvis.formats.coco import CocoDataset, parse_coco_annotations, parse_coco_dataset
from uvis.formats.json_io import read_json
from uvis.formats.ytvis import parse_ytvis_dataset, parse_ytvis_results, str_rle
from uvis.fsutil import atomic_write_json
from uvis.masks import RLE
from uvis.types import Instances, Reason, VideoInfo

DEFAULT_FPS = 30.0


# ============================================================================ result type
@dataclass
class ImportedVideo:
    """One imported video: the decision table of a :class:`~uvis.decide.VideoResult`.

    Attributes:
        name: video name.
        info: video metadata (sizes of the processed frames the masks refer to).
        instances: every imported instance, sorted by frame then ``proposal_index``;
            fields boxes (xyxy pixels), masks (RLE, str counts), objectness, frame
            (0-based), label (vocabulary index), clip_score, best_prompt (index into
            ``prompts``, -1 unknown), decision (Reason codes), similarity,
            pmf_similarity, track_id (-1 untracked); ``embeddings`` is None.
        vocabulary, prompts: class names and prompt texts the indices refer to.
        user: (N,) bool, instances a person curated.
        proposal_index: (N,) index of each instance among its frame's proposals in the
            source cache (its identity for the curation log).
        config: the config dict that made the labels (our exports), else None.
    """

    name: str
    info: VideoInfo
    instances: Instances
    vocabulary: list[str]
    prompts: list[str] = field(default_factory=list)
    user: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))
    proposal_index: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int32))
    config: dict[str, Any] | None = None

    @property
    def kept(self) -> np.ndarray:
        """(N,) bool: instances whose decision is ``kept``."""
        assert self.instances.decision is not None
        return self.instances.decision == Reason.KEPT


class _TableBuilder:
    """Accumulates instances of one video as columns, then sorts them into Instances."""

    def __init__(self, height: int, width: int) -> None:
        self.size = (int(height), int(width))
        self.masks: list[RLE] = []
        self.cols: dict[str, list[np.ndarray]] = defaultdict(list)

    def add(self, masks: Sequence[RLE], cols: dict[str, np.ndarray]) -> None:
        n = len(masks)
        self.masks.extend(masks)
        for key in COLUMNS:
            self.cols[key].append(np.asarray(cols[key]).reshape((n, 4) if key == "box" else (n,)))

    def build(self) -> tuple[Instances, np.ndarray, np.ndarray]:
        def cat(key: str, dtype: Any, shape: tuple[int, ...] = ()) -> np.ndarray:
            parts = self.cols.get(key)
            return np.concatenate(parts).astype(dtype) if parts else np.zeros((0, *shape), dtype)

        frame = cat("frame", np.int32)
        pidx = cat("proposal_index", np.int32)
        order = np.lexsort((np.arange(len(frame)), pidx, frame))
        frame, pidx = frame[order], pidx[order]
        if len(pidx) and (pidx < 0).any():
            pidx = proposal_indices(frame)
        inst = Instances(
            boxes=cat("box", np.float32, (4,))[order], masks=[self.masks[i] for i in order],
            objectness=cat("objectness", np.float32)[order], image_size=self.size, frame=frame,
            label=cat("label", np.int32)[order], clip_score=cat("clip_score", np.float32)[order],
            best_prompt=cat("best_prompt", np.int32)[order], decision=cat("decision", np.int8)[order],
            similarity=cat("similarity", np.float32)[order], pmf_similarity=cat("pmf_similarity", np.float32)[order],
            track_id=cat("track_id", np.int32)[order],
        )
        return inst, cat("curated", bool)[order], pidx


def _plain_columns(masks: Sequence[RLE], frames: Sequence[int], label: int, score: float, track_id: int,
                   boxes: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Columns for instances of a foreign file: kept, objectness = CLIP score = ``score``."""
    n = len(masks)
    if boxes is None:
        boxes = mask_ops.to_bbox(list(masks))
    return {
        "frame": np.asarray(frames, np.int32), "proposal_index": np.full(n, -1, np.int32),
        "track_id": np.full(n, track_id, np.int32), "label": np.full(n, label, np.int32),
        "objectness": np.full(n, score, np.float32), "clip_score": np.full(n, score, np.float32),
        "best_prompt": np.full(n, -1, np.int32), "decision": np.full(n, Reason.KEPT, np.int8),
        "similarity": np.full(n, np.nan, np.float32), "pmf_similarity": np.full(n, np.nan, np.float32),
        "box": np.asarray(boxes, np.float32).reshape(n, 4), "curated": np.zeros(n, bool),
    }


# ============================================================================ YouTube-VIS
def _read_json(path: str | Path) -> Any:
    return read_json(path)


def _parse_ytvis(data: Any, source: str):
    return parse_ytvis_dataset(data, source)


def _extension(ext: dict[str, Any], source: str) -> tuple[list[str], dict[str, Any] | None]:
    """(prompts, config) of a file's top-level ``uvis`` extension (our exports)."""
    prompts, config = ext.get("prompts", []), ext.get("config")
    if not isinstance(prompts, list) or not all(isinstance(p, str) for p in prompts):
        raise BadInputError(f"{source}: uvis.prompts: must be a list of prompt texts (got {type(prompts).__name__})")
    if config is not None and not isinstance(config, dict):
        raise BadInputError(f"{source}: uvis.config: must be an object (the config that made the labels)")
    return prompts, config


def _video_name(v: dict[str, Any], fallback: str) -> str:
    ext = v.get("uvis")
    if isinstance(ext, dict) and isinstance(ext.get("name"), str) and ext["name"]:
        return ext["name"]
    return fallback


def _foreign_info(name: str, width: int, height: int, length: int, file_names: Sequence[str],
                  path: str = "") -> VideoInfo:
    return VideoInfo(name=name, path=path, width=width, height=height, num_frames=length, fps=DEFAULT_FPS,
                     source_width=width, source_height=height, source_indices=tuple(range(length)),
                     frame_names=tuple(PurePosixPath(f.replace("\\", "/")).name for f in file_names))


def _ext_info(obj: Any, where: str, whl: tuple[int, int, int], *, at_least: bool = False) -> VideoInfo:
    """The ``VideoInfo`` of an export's ``uvis`` extension; its width, height and frame
    count must equal ``whl`` (the file's own entries; with ``at_least``, frames >= the
    last listed frame + 1)."""
    try:
        info = VideoInfo.from_dict(obj)
    except (KeyError, TypeError, ValueError, OverflowError, AttributeError) as exc:
        raise BadInputError(f"{where}: invalid video info ({type(exc).__name__}: {exc})") from exc
    w, h, n = whl
    if (info.width, info.height) != (w, h) or (info.num_frames < n if at_least else info.num_frames != n):
        raise BadInputError(f"{where}: size/length {info.width}x{info.height}x{info.num_frames} disagrees with the "
                            f"video entries {w}x{h}x{n}")
    return info


def _ytvis_videos(data: dict[str, Any], truth: Any, source: str,
                  frames_dir: Path | None) -> tuple[dict[int, str], dict[str, VideoInfo]]:
    names: dict[int, str] = {}
    infos: dict[str, VideoInfo] = {}
    by_id = {v.id: v for v in truth.videos.values()}
    for i, v in enumerate(data["videos"]):
        meta = by_id[int(v["id"])]
        name = _video_name(v, meta.name)
        if name in infos:
            raise BadInputError(f"{source}: videos[{i}]: a second video named '{name}'")
        ext = v.get("uvis")
        if isinstance(ext, dict) and "info" in ext:
            info = _ext_info(ext["info"], f"{source}: videos[{i}].uvis.info", (meta.width, meta.height, meta.length))
        else:
            folder = str(frames_dir / PurePosixPath(meta.file_names[0]).parent) if frames_dir and meta.file_names \
                else ""
            info = _foreign_info(name, meta.width, meta.height, meta.length, meta.file_names, folder)
        names[meta.id] = name
        infos[name] = info
    return names, infos


def _vocabulary(categories: dict[int, str]) -> tuple[list[str], dict[int, int]]:
    """Vocabulary in category-id order and category id -> vocabulary index."""
    ids = sorted(categories)
    return [categories[c] for c in ids], {c: i for i, c in enumerate(ids)}


def read_ytvis_instances(json_path: str | Path, frames_dir: str | Path | None = None) -> dict[str, ImportedVideo]:
    """Read a YouTube-VIS annotation file into per-video tables.

    Our exports (:func:`uvis.export.ytvis.export_ytvis`) come back exactly: masks
    bit-identical, track ids, labels, scores, prompts, decisions, curated flags,
    proposal indices, video info and config. Other files (e.g. YouTube-VIS ground
    truth, to use as proposals) give one kept instance per non-null segmentation:
    label = category, objectness = CLIP score = 1, track id = annotation ``id``, box =
    the mask's tight box; vocabulary = category names in id order.

    Args:
        json_path: the annotation file.
        frames_dir: optional image root; for foreign files it sets ``info.path`` to the
            video's frame folder.

    Raises:
        BadInputError: malformed JSON or content, naming the file and the entry.
    """
    source = str(json_path)
    data = _read_json(json_path)
    truth = _parse_ytvis(data, source)
    ext = data.get("uvis") if isinstance(data.get("uvis"), dict) else {}
    vocab, cat_index = _vocabulary(truth.categories)
    prompts, config = _extension(ext, source)
    names, infos = _ytvis_videos(data, truth, source, Path(frames_dir) if frames_dir else None)
    builders = {n: _TableBuilder(i.height, i.width) for n, i in infos.items()}
    for track in truth.annotations:
        i = track.index
        where = f"{source}: annotations[{i}]"
        ann = data["annotations"][i]
        frames = [t for t, s in enumerate(track.segmentations) if s is not None]
        masks = [str_rle(track.segmentations[t]) for t in frames]
        a_ext = ann.get("uvis")
        if isinstance(a_ext, dict) and "instances" in a_ext:
            cols = parse_columns(a_ext["instances"], len(frames), f"{where}.uvis.instances")
            if cols["frame"].tolist() != frames:
                raise BadInputError(f"{where}.uvis.instances.frame: {cols['frame'].tolist()[:8]} does not list the "
                                    f"frames with a segmentation {frames[:8]}")
        else:
            tid = ann.get("id", i)
            cols = _plain_columns(masks, frames, cat_index[track.category_id], 1.0,
                                  int(tid) if isinstance(tid, int) else i)
        builders[names[track.video_id]].add(masks, cols)
    out: dict[str, ImportedVideo] = {}
    for name, b in builders.items():
        inst, user, pidx = b.build()
        out[name] = ImportedVideo(name, infos[name], inst, vocab, prompts, user, pidx, config)
    return out


def read_ytvis_predictions(results_path: str | Path, annotations_path: str | Path) -> dict[str, ImportedVideo]:
    """Read a YouTube-VIS results file (scored video-level predictions).

    Each result becomes a track (track id = its position in the list) of kept
    instances with label = its category, objectness = CLIP score = its score. Videos
    and categories come from ``annotations_path`` (the file the results refer to).

    Raises:
        BadInputError: malformed files, unknown video or category ids, wrong lengths
            or mask sizes, naming the file and the entry.
    """
    data = _read_json(annotations_path)
    truth = _parse_ytvis(data, str(annotations_path))
    tracks = parse_ytvis_results(_read_json(results_path), truth, source=str(results_path))
    vocab, cat_index = _vocabulary(truth.categories)
    names, infos = _ytvis_videos(data, truth, str(annotations_path), None)
    builders = {n: _TableBuilder(i.height, i.width) for n, i in infos.items()}
    for k, tr in enumerate(tracks):
        frames = [t for t, s in enumerate(tr.segmentations) if s is not None]
        masks = [str_rle(tr.segmentations[t]) for t in frames]
        builders[names[tr.video_id]].add(masks, _plain_columns(masks, frames, cat_index[tr.category_id],
                                                               tr.score, k))
    out = {}
    for name, b in builders.items():
        inst, user, pidx = b.build()
        out[name] = ImportedVideo(name, infos[name], inst, vocab, [], user, pidx, None)
    return out


# ============================================================================ COCO
@dataclass
class _CocoImages:
    dataset: CocoDataset
    image: dict[int, tuple[str, int, int, int]]  # image id -> (video, frame, height, width)
    infos: dict[str, VideoInfo]
    vocab: list[str]
    cat_index: dict[int, int]


def _coco_images(data: Any, source: str) -> _CocoImages:
    ds = parse_coco_dataset(data, source)
    vocab, cat_index = _vocabulary(ds.categories)
    ext = data.get("uvis") if isinstance(data.get("uvis"), dict) else {}
    ext_videos = ext.get("videos", {}) if isinstance(ext.get("videos", {}), dict) else {}
    image: dict[int, tuple[str, int, int, int]] = {}
    infos: dict[str, VideoInfo] = {}
    for video in ds.videos():
        assert video.size is not None  # parse_coco_dataset requires sizes
        h, w = video.size
        for iid, t in video.frames.items():
            image[iid] = (video.name, t, h, w)
        if video.name in ext_videos:
            infos[video.name] = _ext_info(ext_videos[video.name], f"{source}: uvis.videos.{video.name}",
                                          (w, h, max(video.frames.values()) + 1), at_least=True)
        else:
            infos[video.name] = _foreign_info(video.name, w, h, max(video.frames.values()) + 1, video.file_names)
    return _CocoImages(ds, image, infos, vocab, cat_index)


def _coco_table(entries: Any, imgs: _CocoImages, source: str, *, predictions: bool,
                config: dict | None, prompts: list[str]) -> dict[str, ImportedVideo]:
    anns = parse_coco_annotations(entries, imgs.dataset, source, results=predictions)
    per_video: dict[str, tuple[list[RLE], list[dict[str, np.ndarray]]]] = defaultdict(lambda: ([], []))
    for a in anns:
        where = f"{source}: [{a.index}]" if predictions else f"{source}: annotations[{a.index}]"
        iid = a.image_id
        video, t, h, w = imgs.image[iid]
        rle = a.segmentation
        ext = a.raw.get("uvis")
        if not predictions and isinstance(ext, dict):
            cols = parse_columns({k: [v] for k, v in ext.items()}, 1, f"{where}.uvis")
            if int(cols["frame"][0]) != t:
                raise BadInputError(f"{where}.uvis.frame: {int(cols['frame'][0])} but image {iid} is frame {t}")
        else:
            score = a.score if predictions and a.score is not None else 1.0
            box = None
            if a.bbox is not None:
                x, y, bw, bh = a.bbox
                box = np.array([[x, y, x + bw, y + bh]], np.float32)
            tid = a.raw.get("track_id", -1 if predictions else a.raw.get("id", a.index))
            cols = _plain_columns([rle], [t], imgs.cat_index[a.category_id], score,
                                  int(tid) if isinstance(tid, int) else -1, box)
        masks, parts = per_video[video]
        masks.append(rle)
        parts.append(cols)
    out: dict[str, ImportedVideo] = {}
    for video, info in imgs.infos.items():
        b = _TableBuilder(info.height, info.width)
        masks, parts = per_video.get(video, ([], []))
        for m, c in zip(masks, parts):
            b.add([m], c)
        inst, user, pidx = b.build()
        out[video] = ImportedVideo(video, info, inst, imgs.vocab, prompts, user, pidx, config)
    return out


def read_coco_instances(json_path: str | Path) -> dict[str, ImportedVideo]:
    """Read a COCO instances file (per-frame images) into per-video tables.

    Our exports (:func:`uvis.export.coco.export_coco`) come back exactly through their
    ``uvis`` fields. For other files, images are grouped into videos by their folder
    (``file_name`` ``<video>/<frame>.jpg``; frames ordered by natural sort of the file
    names) and each annotation is a kept instance (objectness = CLIP score = 1, track
    id = annotation ``id``, box from ``bbox``); polygons are converted to RLE.

    Raises:
        BadInputError: malformed files, unknown image or category ids, mask sizes that
            differ from the image, naming the file and the entry.
    """
    source = str(json_path)
    data = _read_json(json_path)
    imgs = _coco_images(data, source)
    ext = data.get("uvis") if isinstance(data.get("uvis"), dict) else {}
    if "annotations" not in data:
        raise BadInputError(f"{source}: missing top-level list 'annotations'")
    prompts, config = _extension(ext, source)
    return _coco_table(data["annotations"], imgs, source, predictions=False, config=config, prompts=prompts)


def read_coco_predictions(results_path: str | Path, annotations_path: str | Path) -> dict[str, ImportedVideo]:
    """Read COCO results (``[{image_id, category_id, segmentation, score, [bbox]}]``) against
    the COCO annotation file they refer to; each result is a kept, untracked instance
    with objectness = CLIP score = its score (a ``track_id`` key, if present, is kept)."""
    imgs = _coco_images(_read_json(annotations_path), str(annotations_path))
    return _coco_table(_read_json(results_path), imgs, str(results_path), predictions=True, config=None, prompts=[])


# ============================================================================ ground truth
@dataclass(frozen=True)
class YtvisGroundTruthSet:
    """A validated YouTube-VIS ground truth with its frames.

    Attributes:
        json_path: the annotation file.
        frames_dir: the image root the ``file_names`` are relative to.
        truth: the parsed annotations (:class:`uvis.formats.ytvis.YtvisGroundTruth`).
        data: the JSON content (for writing per-video subsets).
        frame_paths: video id -> its frame files, in ``file_names`` order.
        warnings: tolerated oddities (e.g. a frame folder holding extra images).
    """

    json_path: Path
    frames_dir: Path
    truth: Any
    data: dict[str, Any]
    frame_paths: dict[int, tuple[Path, ...]]
    warnings: tuple[str, ...] = ()

    def video_dir(self, video_id: int) -> Path:
        """The frame folder of a video."""
        return self.frame_paths[video_id][0].parent


def load_ytvis_ground_truth(json_path: str | Path, frames_dir: str | Path) -> YtvisGroundTruthSet:
    """Read and validate a YouTube-VIS annotation file and its frames.

    Checks, besides the JSON content (ids, categories, segmentation lengths and sizes,
    see :mod:`uvis.formats.ytvis`): every ``file_names`` entry is a relative path that
    stays inside ``frames_dir``, exists there and its image (header) has the video's width and height, and each
    video's frames share one folder.

    Raises:
        BadInputError: naming the file and the place, e.g. ``videos[3].file_names[7]``
            or ``annotations[3]: segmentations[7]``.
    """
    from uvis.video import image_header_size, list_frame_files

    json_path = Path(json_path)
    frames_dir = Path(frames_dir)
    source = str(json_path)
    if not frames_dir.is_dir():
        raise BadInputError(f"frames folder {frames_dir} not found (the image root of {json_path})")
    data = _read_json(json_path)
    truth = _parse_ytvis(data, source)
    frame_paths: dict[int, tuple[Path, ...]] = {}
    warnings: list[str] = []
    for i, v in enumerate(data["videos"]):
        meta = truth.videos[int(v["id"])]
        where = f"{source}: videos[{i}]"
        if not meta.file_names:
            raise BadInputError(f"{where}: no 'file_names'; the video's frames cannot be located")
        paths = []
        for k, fn in enumerate(meta.file_names):
            p = frames_dir / fn.replace("\\", "/")
            if not _inside(p, frames_dir):  # the parser refuses '..' and absolute names; belt and braces
                raise BadInputError(f"{where}.file_names[{k}]: {fn!r} points outside the frames folder {frames_dir}")
            if not p.is_file():
                raise BadInputError(f"{where}.file_names[{k}]: frame {p} not found (under {frames_dir})")
            try:
                w, h = image_header_size(p)
            except BadInputError as exc:
                raise BadInputError(f"{where}.file_names[{k}]: {exc}") from exc
            if (w, h) != (meta.width, meta.height):
                raise BadInputError(f"{where}.file_names[{k}]: frame {p} is {w}x{h} but the video is "
                                    f"{meta.width}x{meta.height} (width x height)")
            paths.append(p)
        folders = {p.parent for p in paths}
        if len(folders) > 1:
            raise BadInputError(f"{where}: frames lie in {len(folders)} folders; a video's frames must share one")
        on_disk = [p.name for p in list_frame_files(paths[0].parent)]
        if on_disk != [p.name for p in paths]:
            warnings.append(f"{where}: folder {paths[0].parent} holds {len(on_disk)} images but file_names lists "
                            f"{len(paths)}; ground-truth frames are matched to processed frames by file name")
        frame_paths[meta.id] = tuple(paths)
    return YtvisGroundTruthSet(json_path, frames_dir, truth, data, frame_paths, tuple(warnings))


def _inside(path: Path, folder: Path) -> bool:
    """Whether ``path`` lies in ``folder`` lexically (symbolic links inside are followed later)."""
    import os

    return os.path.normpath(path).startswith(os.path.join(os.path.normpath(folder), ""))


@dataclass(frozen=True)
class ImportSummary:
    """What :func:`import_ytvis_into_workspace` did.

    ``added``: videos newly registered; ``existing``: videos already in the workspace
    (same frame folder; their caches are untouched); ``ground_truth``: video -> the
    per-video ground-truth file written; ``folders``: video -> its frame folder.
    """

    added: tuple[str, ...]
    existing: tuple[str, ...]
    ground_truth: dict[str, Path]
    folders: dict[str, Path] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()


def ground_truth_dir(workspace: Any) -> Path:
    """``<workspace>/ground_truth``: per-video YouTube-VIS ground-truth files."""
    return Path(workspace.root) / "ground_truth"


def import_ytvis_into_workspace(workspace: Any, json_path: str | Path, frames_dir: str | Path, *,
                                videos: Sequence[str] | None = None) -> ImportSummary:
    """Register the videos of a YouTube-VIS ground truth in a workspace.

    Each video's frame folder is registered in the workspace database (status
    ``new``, no cache yet; label it with ``python -m uvis label <folder>``, the name is
    the same) and its ground truth is written to ``<workspace>/ground_truth/<video>.json``
    (a YouTube-VIS file holding that video, original ids and all categories) and
    recorded in the ``ground_truth`` table (:meth:`uvis.db.WorkspaceDB.ground_truth`).
    Everything is validated before anything is written; re-importing is idempotent.

    Args:
        workspace: a :class:`uvis.workspace.Workspace`.
        json_path, frames_dir: the annotation file and its image root.
        videos: only these workspace names (default: all).

    Raises:
        BadInputError: invalid ground truth or frames (see :func:`load_ytvis_ground_truth`),
            two videos with the same name, or a name already used in the workspace by a
            different video.
    """
    from uvis.workspace import video_name_for

    gt = load_ytvis_ground_truth(json_path, frames_dir)
    db = workspace.db
    plan: list[tuple[str, int, Path]] = []
    seen: dict[str, Path] = {}
    for vid in gt.truth.videos:
        folder = gt.video_dir(vid).resolve()
        name = video_name_for(folder)
        if videos is not None and name not in videos:
            continue
        if name in seen and seen[name] != folder:
            raise BadInputError(f"{json_path}: videos in {seen[name]} and {folder} would both be named '{name}'")
        seen[name] = folder
        rec = db.video(name)
        if rec is not None and Path(rec.path).resolve() != folder:
            raise BadInputError(f"workspace {workspace.root} already has a video '{name}' from {rec.path}, "
                                f"not {folder}; import into another workspace or rename the folder")
        plan.append((name, vid, folder))
    if videos is not None:
        missing = sorted(set(videos) - {n for n, _, _ in plan})
        if missing:
            raise BadInputError(f"{json_path}: no video named {', '.join(missing)}")
    out_dir = ground_truth_dir(workspace)
    categories = gt.data["categories"]
    by_video: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for a in gt.data["annotations"]:
        by_video[int(a["video_id"])].append(a)
    videos_by_id = {int(v["id"]): v for v in gt.data["videos"]}
    added, existing, files = [], [], {}
    for name, vid, folder in plan:
        subset = {"info": gt.data.get("info", {}), "licenses": gt.data.get("licenses", []),
                  "videos": [videos_by_id[vid]], "categories": categories, "annotations": by_video.get(vid, []),
                  "uvis_source": {"file": str(Path(json_path).resolve()), "video_id": vid}}
        path = atomic_write_json(out_dir / f"{name}.json", subset)
        files[name] = path
        meta = gt.truth.videos[vid]
        if db.video(name) is None:
            db.upsert_video(name, str(folder), num_frames=meta.length, width=meta.width, height=meta.height,
                            status="new")
            added.append(name)
        else:
            existing.append(name)
        db.set_ground_truth(name, str(path), str(Path(json_path).resolve()), vid, str(folder))
    return ImportSummary(tuple(added), tuple(existing), files, {n: f for n, _, f in plan}, gt.warnings)


# ============================================================================ FiftyOne
_FO_ATTRS = ("label", "bounding_box", "mask", "confidence", "index", "objectness", "best_prompt",
             "pmf_similarity", "similarity", "reason", "curated", "instance_label", "proposal_index", "box_xyxy")


def import_fiftyone_dataset(dataset_name: str) -> dict[str, ImportedVideo]:
    """Read a dataset written by :func:`uvis.export.fiftyone_export.export_fiftyone`.

    ``pseudo_labels`` and ``dropped_labels`` of every frame are turned back into the
    decision table: each cropped mask is pasted into its box's pixel region of a
    full frame and RLE-encoded (bit-identical to the exported mask), boxes, track ids
    (``index``), labels, scores, prompts, decisions and curated flags are restored.
    Values are read column by column with ``values()`` (no per-label objects).

    Raises:
        BadInputError: no such dataset, or a dataset/sample not written by UVIS Studio.
        MissingDependencyError: fiftyone is not installed.
    """
    from uvis.export.fiftyone_export import DROPPED_FIELD, KEPT_FIELD, SAMPLE_FIELD, load_exported

    ds = load_exported(dataset_name)  # repairs what a killed export left first
    if ds.media_type != "video" or not ds.has_sample_field(SAMPLE_FIELD):
        raise BadInputError(f"FiftyOne dataset '{dataset_name}' was not exported by UVIS Studio "
                            f"(no video samples with a '{SAMPLE_FIELD}' field)")
    schema = ds.get_frame_field_schema(flat=True)
    exts = ds.values(SAMPLE_FIELD)
    paths = ds.values("filepath")
    frame_numbers = ds.values("frames.frame_number")
    columns: dict[str, dict[str, list]] = {}
    for fld in (KEPT_FIELD, DROPPED_FIELD):
        columns[fld] = {}
        for attr in _FO_ATTRS:
            path = f"{fld}.detections.{attr}"
            columns[fld][attr] = ds.values(f"frames.{path}") if path in schema else None
    out: dict[str, ImportedVideo] = {}
    for s, ext in enumerate(exts):
        where = f"dataset '{dataset_name}', sample {paths[s]}"
        if not isinstance(ext, dict) or "info" not in ext:
            raise BadInputError(f"{where}: no '{SAMPLE_FIELD}' field; this sample was not exported by UVIS Studio")
        info = VideoInfo.from_dict(ext["info"])
        vocab = list(ext.get("vocabulary", []))
        prompts = list(ext.get("prompts", []))
        mw, mh = int(ext["media_width"]), int(ext["media_height"])
        label_index = {c: i for i, c in enumerate(vocab)}
        prompt_index = {p: i for i, p in enumerate(prompts)}
        b = _TableBuilder(info.height, info.width)
        for fld in (KEPT_FIELD, DROPPED_FIELD):
            cols = columns[fld]
            boxes = cols["bounding_box"]
            if boxes is None:
                continue
            for f, fn in enumerate(frame_numbers[s]):
                dets = boxes[s][f]
                for k in range(len(dets or [])):
                    def get(attr: str, s=s, f=f, k=k, cols=cols) -> Any:
                        c = cols[attr]
                        return None if c is None or c[s][f] is None else c[s][f][k]

                    b.add(*_from_columns(get, fn - 1, info, mw, mh, label_index, prompt_index,
                                         f"{where}, frame {fn}, {fld}[{k}]"))
        inst, user, pidx = b.build()
        cfg = ds.info.get("uvis_configs", {}).get(ext.get("config_sha", ""), ds.info.get("uvis_config"))
        out[info.name] = ImportedVideo(info.name, info, inst, vocab, prompts, user, pidx, cfg)
    return out


def _from_columns(get: Any, t: int, info: VideoInfo, mw: int, mh: int, label_index: dict[str, int],
                  prompt_index: dict[str, int], where: str) -> tuple[list[RLE], dict[str, np.ndarray]]:
    bx, by, bw, bh = (float(v) for v in get("bounding_box"))
    x0, y0 = int(round(bx * mw)), int(round(by * mh))
    x1, y1 = x0 + int(round(bw * mw)), y0 + int(round(bh * mh))
    full = np.zeros((info.height, info.width), dtype=np.uint8)
    mask = get("mask")
    if mask is not None:
        crop = np.asarray(mask).astype(bool)
        if crop.shape != (y1 - y0, x1 - x0) or x0 < 0 or y0 < 0 or x1 > info.width or y1 > info.height:
            raise BadInputError(f"{where}: mask of shape {crop.shape} does not fit its box region "
                                f"x {x0}..{x1}, y {y0}..{y1} of the {info.width}x{info.height} frame")
        full[y0:y1, x0:x1] = crop
    rle = mask_ops.encode(full)

    def num(key: str) -> float:
        v = get(key)
        return np.nan if v is None else float(v)

    inst_label = get("instance_label") or get("label")
    prompt = get("best_prompt")
    box = get("box_xyxy") or [x0, y0, x1, y1]
    reason = get("reason") or "kept"
    try:
        decision = Reason.from_key(str(reason))
    except KeyError as exc:
        raise BadInputError(f"{where}: unknown reason {reason!r}") from exc
    index, pidx = get("index"), get("proposal_index")
    cols = {
        "frame": np.array([t], np.int32),
        "proposal_index": np.array([-1 if pidx is None else int(pidx)], np.int32),
        "track_id": np.array([-1 if index is None else int(index)], np.int32),
        "label": np.array([label_index.get(inst_label, -1) if inst_label is not None else -1], np.int32),
        "objectness": np.array([num("objectness")], np.float32),
        "clip_score": np.array([num("confidence")], np.float32),
        "best_prompt": np.array([prompt_index.get(prompt, -1) if prompt is not None else -1], np.int32),
        "decision": np.array([decision], np.int8),
        "similarity": np.array([num("similarity")], np.float32),
        "pmf_similarity": np.array([num("pmf_similarity")], np.float32),
        "box": np.asarray(box, np.float32).reshape(1, 4),
        "curated": np.array([bool(get("curated"))]),
    }
    return [rle], cols


#: Label tags read by :func:`import_fiftyone_curation` (set them in the FiftyOne App).
CURATION_TAGS = ("accept", "reject", "relabel:<class>")


@dataclass(frozen=True)
class PlannedAction:
    """A curation action found in a FiftyOne dataset: video, action, its log payload, and
    the instance it refers to with provenance (the cache the dataset was exported from and
    the instance's fingerprint, see :mod:`uvis.curation`)."""

    video: str
    action: str
    payload: dict[str, Any]
    items: tuple[Any, ...] = ()
    cache_key: str | None = None


def import_fiftyone_curation(workspace: Any, dataset_name: str, *, dry_run: bool = False) -> list[PlannedAction]:
    """Bring curation done in FiftyOne back into the workspace's curation log.

    Error analysis happens in the FiftyOne App; there, tag labels (in
    ``pseudo_labels`` or ``dropped_labels``) with ``reject``, ``accept`` or
    ``relabel:<class>`` (a class of the vocabulary). Each tagged label becomes the
    matching curation action (undoable like any other) for *that* instance: the item
    names the cache the dataset was exported from and the label's fingerprint (its box
    and mask as exported), so it applies only to that instance — carried over by mask IoU
    if the video was re-labelled since, or listed as not applying (``uvis show``, the
    app), never moved to whatever instance now has the same index. Tags that are already
    the effective state of the instance are skipped, so importing twice logs nothing new.

    Args:
        workspace: a :class:`uvis.workspace.Workspace` holding the exported videos.
        dataset_name: a dataset written by :func:`uvis.export.fiftyone_export.export_fiftyone`.
        dry_run: only return the actions.

    Returns:
        The actions logged (or that would be logged).

    Raises:
        BadInputError: unknown dataset or video, a video whose frames differ from the
            dataset's, conflicting tags on one label, an unknown class in ``relabel:``.
    """
    from uvis.curation import cache_key_of, fingerprint, src_frame_of
    from uvis.db import ItemRef
    from uvis.export.fiftyone_export import DROPPED_FIELD, KEPT_FIELD, SAMPLE_FIELD, load_exported

    ds = load_exported(dataset_name)  # repairs what a killed export left first
    if not ds.has_sample_field(SAMPLE_FIELD):
        raise BadInputError(f"FiftyOne dataset '{dataset_name}' was not exported by UVIS Studio")
    schema = ds.get_frame_field_schema(flat=True)
    exts = ds.values(SAMPLE_FIELD)
    frame_numbers = ds.values("frames.frame_number")
    tables: dict[str, ImportedVideo] | None = None
    planned: list[PlannedAction] = []
    for s, ext in enumerate(exts):
        info = VideoInfo.from_dict(ext["info"])
        name = info.name
        cache = workspace.load_cache(name)
        if (cache.info.width, cache.info.height, cache.info.num_frames) != (info.width, info.height, info.num_frames):
            raise BadInputError(f"video {name} in dataset '{dataset_name}' is {info.width}x{info.height}x"
                                f"{info.num_frames} but the workspace's cache is {cache.info.width}x"
                                f"{cache.info.height}x{cache.info.num_frames}; re-export it")
        key = ext.get("cache_key") or cache_key_of(cache)  # exports before provenance: the current cache
        vocab = set(ext.get("vocabulary", []))
        state = {(e.cache_key or "", e.fingerprint): (e.kind, e.label) for e in workspace.db.effect(name).effects}
        for fld in (KEPT_FIELD, DROPPED_FIELD):
            if f"{fld}.detections.tags" not in schema:
                continue
            tags = ds.values(f"frames.{fld}.detections.tags")[s]
            pidx = ds.values(f"frames.{fld}.detections.proposal_index")[s]
            for f, fn in enumerate(frame_numbers[s]):
                for k, label_tags in enumerate(tags[f] or []):
                    wanted = [tg for tg in (label_tags or [])
                              if tg in ("accept", "reject") or tg.startswith("relabel:")]
                    if not wanted:
                        continue
                    where = f"dataset '{dataset_name}', video {name}, frame {fn}, {fld}[{k}]"
                    if len(wanted) > 1:
                        raise BadInputError(f"{where}: conflicting curation tags {wanted}")
                    tag = wanted[0]
                    t, index = fn - 1, int(pidx[f][k])
                    payload: dict[str, Any] = {"items": [[t, index]], "scope": "instance"}
                    action, label = tag, None
                    if tag.startswith("relabel:"):
                        action, label = "relabel", tag.split(":", 1)[1]
                        if label not in vocab:
                            raise BadInputError(f"{where}: tag '{tag}' names a class outside the vocabulary")
                        payload["label"] = label
                    if tables is None:
                        tables = import_fiftyone_dataset(dataset_name)
                    inst = tables[name].instances
                    rows = np.flatnonzero((inst.frame == t) & (tables[name].proposal_index == index))
                    if not len(rows):
                        raise BadInputError(f"{where}: the label has no instance in the dataset's tables")
                    row = int(rows[0])
                    counts = inst.masks[row]["counts"]
                    fp = fingerprint(t, inst.boxes[row], counts)
                    if action == "accept" and inst.label is not None and 0 <= int(inst.label[row]) < len(
                            tables[name].vocabulary):
                        label = tables[name].vocabulary[int(inst.label[row])]
                    if state.get((key, fp)) == (action, label if action != "reject" else None):
                        continue
                    item = ItemRef(t, index, fp, key, src_frame_of(cache, t), counts, label)
                    planned.append(PlannedAction(name, action, payload, (item,), key))
    if not dry_run:
        for p in planned:
            workspace.db.log(p.video, p.action, p.payload, cache_key=p.cache_key, items=list(p.items))
    return planned


__all__ = [
    "CURATION_TAGS", "ImportSummary", "ImportedVideo", "PlannedAction", "YtvisGroundTruthSet", "ground_truth_dir",
    "import_fiftyone_curation", "import_fiftyone_dataset", "import_ytvis_into_workspace", "load_ytvis_ground_truth",
    "read_coco_instances", "read_coco_predictions", "read_ytvis_instances", "read_ytvis_predictions",
]
