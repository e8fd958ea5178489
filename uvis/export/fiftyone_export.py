"""FiftyOne export: one video sample per video, pseudo-labels as frame-level detections.

Dataset layout (DESIGN §4):

* sample ``filepath``: the video as processed (stride and ``max_side`` applied, at the
  processed frame rate) re-encoded to H.264 MP4 (yuv420p, ``+faststart``) with ffmpeg
  into ``media_dir`` as ``<video>-<key>.mp4``; ``key`` hashes the source file (path,
  size, mtime) and the processing, so re-exports reuse the file and a dataset never
  sees its media change. Odd frame sizes are padded by one black pixel on the
  right/bottom (H.264 4:2:0 needs even sizes). The source file is only read.
* sample fields: ``video`` (name), ``uvis`` (dict: ``name``, ``info`` = VideoInfo,
  ``vocabulary``, ``prompts``, ``config_sha``, ``media_width``/``media_height``,
  ``uvis_version``), ``metadata`` (``fo.VideoMetadata``), tag ``uvis``.
* frame fields (FiftyOne frame numbers are 1-based: processed frame t is frame t+1):
  ``pseudo_labels``: ``fo.Detections`` of the kept instances; ``dropped_labels``: the
  dropped ones. Each ``fo.Detection`` has

  ================  ========================================================================
  label             track's voted label (the instance's own label if untracked)
  bounding_box      [x, y, w, h] relative to the media frame, of the whole-pixel region the
                    mask is cropped to (the instance box rounded outwards, grown to hold
                    the whole mask)
  mask              bool (h, w) crop of the mask to that region
  confidence        CLIP score
  index             track id (None if untracked)
  objectness,       proposer objectness, CLIP score, text of the closest prompt,
  clip_score,       PMF similarity (None when PMF did not apply), the similarity that
  best_prompt,      decided (None if none)
  pmf_similarity,
  similarity
  decision          ``kept`` or ``dropped``
  reason            ``kept``, ``objectness``, ``clip_score``, ``pmf`` or ``user_reject``
  curated           a person accepted, rejected or relabelled it
  instance_label    the instance's own label; proposal_index: its index among the frame's
                    proposals (identity in the workspace); box_xyxy: exact box, pixels
  ================  ========================================================================

* ``dataset.info``: ``uvis_config`` (config of the latest export), ``uvis_version``,
  ``uvis_configs`` (config sha -> config, for every export appended).

Atomicity: the dataset is always built under a temporary name
(``<name>.uvis-tmp-<pid>-<rand>``) and renamed when complete; ``overwrite`` then
replaces the old dataset (renamed aside, deleted only after the new one took its
name), ``append`` builds on a clone. On any failure the temporary dataset is deleted,
and temporaries left by killed processes (datasets and media files) are cleaned up by
the next export; the next reader restores a dataset a killed overwrite left aside
(:func:`load_exported`).

Frame documents are written through ``set_values(..., validate=False)`` with the
label documents built directly (FiftyOne's ODM costs ~1 ms per detection, too slow
for 20k-detection videos); the documents are exactly those ``fo.Detection`` stores.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
from pycocotools import mask as mask_utils

import uvis
from uvis import masks as mask_ops
from uvis.decide import VideoResult
from uvis.errors import BadInputError, MissingDependencyError, UvisError, require
from uvis.export._common import common_vocabulary, export_labels, proposal_indices
from uvis.fsutil import DEFAULT_MAX_TEMP_AGE_S, atomic_path, clean_stale_temps, owner_gone
from uvis.export.frames import iter_processed_frames
from uvis.types import Reason, VideoInfo

KEPT_FIELD = "pseudo_labels"
DROPPED_FIELD = "dropped_labels"
SAMPLE_FIELD = "uvis"
VIDEO_FIELD = "video"
TMP_MARK = ".uvis-tmp-"
OLD_MARK = ".uvis-old-"
ENCODER_VERSION = "h264-crf18-v1"


@dataclass(frozen=True)
class ExportProgress:
    """Progress of an export: ``stage`` (``encode`` | ``labels`` | ``save``), the video,
    and ``done`` of ``total`` frames (``save``: videos)."""

    stage: str
    video: str
    done: int
    total: int


ProgressFn = Callable[[ExportProgress], None]


# ============================================================================ media
def _fps_arg(fps: float) -> str:
    f = fps if (math.isfinite(fps) and fps > 0) else 30.0
    frac = Fraction(f).limit_denominator(100000)
    return f"{frac.numerator}/{frac.denominator}"


def media_key(info: VideoInfo) -> str:
    """Hash of what the encoded video depends on: source file identity and processing."""
    src = Path(info.path)
    try:
        st = src.stat()
        ident = [str(src.resolve()), st.st_size, st.st_mtime_ns]
    except OSError:
        ident = [str(src), None, None]
    raw = json.dumps([ENCODER_VERSION, ident, info.width, info.height, info.num_frames, info.fps,
                      list(info.source_indices)])
    return hashlib.sha1(raw.encode()).hexdigest()[:12]


def media_size(info: VideoInfo) -> tuple[int, int]:
    """(width, height) of the encoded video: the processed size rounded up to even."""
    return info.width + info.width % 2, info.height + info.height % 2


def encode_video(info: VideoInfo, media_dir: str | Path,
                 on_frame: Callable[[int, int], None] | None = None) -> Path:
    """Encode a video's processed frames to H.264 MP4 in ``media_dir`` (atomically).

    Returns the existing file when one with the same :func:`media_key` is present.

    Raises:
        MissingDependencyError: ffmpeg is not on PATH.
        BadInputError: the source video is missing or changed.
        UvisError: ffmpeg failed (its message is included).
    """
    media_dir = Path(media_dir)
    out = media_dir / f"{info.name}-{media_key(info)}.mp4"
    if out.is_file() and out.stat().st_size > 0:
        return out
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        raise MissingDependencyError("ffmpeg is needed to re-encode videos for FiftyOne; install it with: "
                                     "apt-get install ffmpeg (Debian/Ubuntu) or brew install ffmpeg (macOS)")
    mw, mh = media_size(info)
    vf = ["-vf", f"pad={mw}:{mh}:0:0:black"] if (mw, mh) != (info.width, info.height) else []
    with atomic_path(out) as tmp, tempfile.TemporaryFile() as err:
        cmd = [ffmpeg, "-hide_banner", "-loglevel", "error", "-y", "-f", "rawvideo", "-pix_fmt", "rgb24",
               "-s", f"{info.width}x{info.height}", "-framerate", _fps_arg(info.fps), "-i", "pipe:0", "-an",
               *vf, "-c:v", "libx264", "-preset", "veryfast", "-crf", "18", "-pix_fmt", "yuv420p",
               "-movflags", "+faststart", str(tmp)]
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=err)
        assert proc.stdin is not None
        broken = False
        try:
            for t, rgb in iter_processed_frames(info):
                try:
                    proc.stdin.write(np.ascontiguousarray(rgb, dtype=np.uint8).tobytes())
                except BrokenPipeError:
                    broken = True
                    break
                if on_frame is not None:
                    on_frame(t + 1, info.num_frames)
            try:
                proc.stdin.close()
            except BrokenPipeError:
                broken = True
            rc = proc.wait()
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        if rc != 0 or broken:
            err.seek(0)
            msg = err.read().decode(errors="replace").strip()[-2000:]
            raise UvisError(f"ffmpeg could not encode video {info.name} (exit code {rc}): {msg or 'no message'}")
    return out


# ============================================================================ labels
def _crop_region(box: np.ndarray, tight: np.ndarray, height: int, width: int) -> tuple[int, int, int, int]:
    """Whole-pixel region (x0, y0, x1, y1), exclusive ends, holding the box and the mask."""
    x0 = min(math.floor(float(box[0])), int(tight[0])) if tight[2] > tight[0] else math.floor(float(box[0]))
    y0 = min(math.floor(float(box[1])), int(tight[1])) if tight[3] > tight[1] else math.floor(float(box[1]))
    x1 = max(math.ceil(float(box[2])), int(tight[2]))
    y1 = max(math.ceil(float(box[3])), int(tight[3]))
    x0, y0 = min(max(x0, 0), width - 1), min(max(y0, 0), height - 1)
    x1, y1 = min(max(x1, x0 + 1), width), min(max(y1, y0 + 1), height)
    return x0, y0, x1, y1


def _value(x: float) -> float | None:
    v = float(x)
    return v if math.isfinite(v) else None


def frame_documents(r: VideoResult, media_w: int, media_h: int,
                    on_frame: Callable[[int, int], None] | None = None
                    ) -> tuple[dict[int, dict[str, Any]], dict[int, dict[str, Any]]]:
    """FiftyOne ``Detections`` documents of every processed frame.

    Returns ``(kept, dropped)``: 1-based frame number -> ``Detections`` document (a
    dict in FiftyOne's storage form, masks serialised by
    ``fiftyone.core.utils.serialize_numpy_array``), for every frame of the video.
    """
    from bson import ObjectId
    from fiftyone.core.utils import serialize_numpy_array

    inst = r.instances
    info = r.info
    h, w = info.height, info.width
    vocab, prompts = r.vocabulary, r.prompts
    labels = export_labels(r)
    pidx = proposal_indices(inst.frame)
    tight = mask_ops.to_bbox(inst.masks).astype(np.int64) if len(inst) else np.zeros((0, 4), np.int64)
    kept_mask = r.kept
    kept_docs: dict[int, dict[str, Any]] = {}
    dropped_docs: dict[int, dict[str, Any]] = {}
    slices = inst.frame_slices(info.num_frames)

    def name(i: int) -> str | None:
        return vocab[i] if 0 <= i < len(vocab) else None

    for t in range(info.num_frames):
        sl = slices[t]
        kept_list: list[dict[str, Any]] = []
        dropped_list: list[dict[str, Any]] = []
        if sl.stop > sl.start:
            rows = range(sl.start, sl.stop)
            dense = mask_utils.decode([{"size": inst.masks[i]["size"], "counts": inst.masks[i]["counts"].encode()}
                                       for i in rows])
            for k, row in enumerate(rows):
                x0, y0, x1, y1 = _crop_region(inst.boxes[row], tight[row], h, w)
                crop = np.ascontiguousarray(dense[y0:y1, x0:x1, k], dtype=bool)
                tid = int(inst.track_id[row])
                kept = bool(kept_mask[row])
                bp = int(inst.best_prompt[row])
                doc = {
                    "_id": ObjectId(), "_cls": "Detection", "tags": [], "attributes": {},
                    "label": name(int(labels[row]) if kept else int(inst.label[row])),
                    "bounding_box": [x0 / media_w, y0 / media_h, (x1 - x0) / media_w, (y1 - y0) / media_h],
                    "mask": serialize_numpy_array(crop),
                    "confidence": _value(inst.clip_score[row]),
                    "index": tid if tid >= 0 else None,
                    "objectness": _value(inst.objectness[row]),
                    "clip_score": _value(inst.clip_score[row]),
                    "best_prompt": prompts[bp] if 0 <= bp < len(prompts) else None,
                    "pmf_similarity": _value(inst.pmf_similarity[row]),
                    "similarity": _value(inst.similarity[row]),
                    "decision": "kept" if kept else "dropped",
                    "reason": Reason(int(inst.decision[row])).key,
                    "curated": bool(r.user[row]),
                    "instance_label": name(int(inst.label[row])),
                    "proposal_index": int(pidx[row]),
                    "box_xyxy": [float(v) for v in inst.boxes[row]],
                }
                (kept_list if kept else dropped_list).append(doc)
        kept_docs[t + 1] = {"_id": ObjectId(), "_cls": "Detections", "detections": kept_list}
        dropped_docs[t + 1] = {"_id": ObjectId(), "_cls": "Detections", "detections": dropped_list}
        if on_frame is not None:
            on_frame(t + 1, info.num_frames)
    return kept_docs, dropped_docs


# ============================================================================ dataset
def _config_sha(config_dict: dict[str, Any]) -> str:
    return hashlib.sha1(json.dumps(config_dict, sort_keys=True).encode()).hexdigest()[:12]


def _mark_pid(full: str, prefix: str) -> int | None:
    try:
        return int(full[len(prefix):].split("-", 1)[0])
    except ValueError:
        return None


def _created(fo: Any, name: str) -> float:
    """Creation time of a dataset (epoch seconds); FiftyOne stores naive UTC."""
    from datetime import timezone

    created = fo.load_dataset(name).created_at
    if created is None:
        return 0.0
    return (created if created.tzinfo else created.replace(tzinfo=timezone.utc)).timestamp()


def cleanup_temporaries(dataset_name: str, *, max_age_s: float = DEFAULT_MAX_TEMP_AGE_S) -> list[str]:
    """Remove leftovers of exports to ``dataset_name`` killed mid-way.

    A leftover is stale when its process is gone: its PID is not running, or runs a
    process started after the dataset was made (a reused PID), or it is older than
    ``max_age_s``. A stale temporary dataset is deleted; a dataset renamed aside by an
    interrupted overwrite is restored to ``dataset_name`` if that name is free (the
    overwrite never completed), else deleted. Every reader of an exported dataset
    calls this first (:func:`load_exported`), so a killed overwrite is repaired on the
    next access, not only on the next export. Returns the names acted on.
    """
    fo = require("fiftyone", "pip install fiftyone")
    done = []
    now = time.time()
    for n in sorted(fo.list_datasets()):
        for mark in (TMP_MARK, OLD_MARK):
            prefix = dataset_name + mark
            if not n.startswith(prefix):
                continue
            pid = _mark_pid(n, prefix)
            created = _created(fo, n)
            stale = pid is None or now - created > max_age_s or (pid != os.getpid() and owner_gone(pid, created))
            if not stale:
                continue
            if mark == OLD_MARK and not fo.dataset_exists(dataset_name):
                fo.load_dataset(n).name = dataset_name
            else:
                fo.delete_dataset(n)
            done.append(n)
    return done


def load_exported(dataset_name: str) -> Any:
    """Load a dataset written by :func:`export_fiftyone`, first repairing what a killed
    export left (:func:`cleanup_temporaries`).

    Raises:
        BadInputError: no such dataset. MissingDependencyError: fiftyone missing.
    """
    fo = require("fiftyone", "pip install fiftyone")
    cleanup_temporaries(dataset_name)
    if not fo.dataset_exists(dataset_name):
        raise BadInputError(f"FiftyOne dataset '{dataset_name}' does not exist")
    return fo.load_dataset(dataset_name)


def _swap_in(fo: Any, ds: Any, name: str, replace: bool) -> None:
    if not replace:
        if fo.dataset_exists(name):
            raise BadInputError(f"FiftyOne dataset '{name}' was created by someone else during the export; "
                                "pass --overwrite to replace it or --append to add to it")
        ds.name = name
        return
    if not fo.dataset_exists(name):  # deleted by someone else meanwhile
        ds.name = name
        return
    old = fo.load_dataset(name)
    old.name = f"{name}{OLD_MARK}{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        ds.name = name
    except BaseException:
        old.name = name
        raise
    old.delete()


def _add_video(fo: Any, ds: Any, name: str, r: VideoResult, media: Path, config_sha: str,
               progress: ProgressFn | None) -> None:
    info = r.info
    mw, mh = media_size(info)
    fps = info.fps if (math.isfinite(info.fps) and info.fps > 0) else 30.0
    sample = fo.Sample(
        filepath=str(media.resolve()), tags=["uvis"],
        metadata=fo.VideoMetadata(size_bytes=media.stat().st_size, mime_type="video/mp4", frame_width=mw,
                                  frame_height=mh, frame_rate=fps, total_frame_count=info.num_frames,
                                  duration=info.num_frames / fps, encoding_str="avc1"),
    )
    sample[VIDEO_FIELD] = name
    sample[SAMPLE_FIELD] = {"name": name, "info": info.to_dict(), "vocabulary": list(r.vocabulary),
                            "cache_key": r.cache_key,
                            "prompts": list(r.prompts), "config_sha": config_sha, "media_width": mw,
                            "media_height": mh, "uvis_version": uvis.__version__}
    for t in range(info.num_frames):
        sample.frames[t + 1] = fo.Frame()
    ds.add_sample(sample)
    kept, dropped = frame_documents(
        r, mw, mh, None if progress is None else (lambda d, n: progress(ExportProgress("labels", name, d, n))))
    ds.set_values(f"frames.{KEPT_FIELD}", {sample.id: kept}, key_field="id", validate=False)
    ds.set_values(f"frames.{DROPPED_FIELD}", {sample.id: dropped}, key_field="id", validate=False)


def export_fiftyone(results: Mapping[str, VideoResult], dataset_name: str, *, overwrite: bool = False,
                    append: bool = False, media_dir: str | Path, progress: ProgressFn | None = None) -> str:
    """Export decisions to a persistent FiftyOne video dataset (see the module docstring).

    Args:
        results: video name -> decisions.
        dataset_name: the FiftyOne dataset to create.
        overwrite: replace an existing dataset of that name (atomically).
        append: add the videos to an existing dataset (created if absent); a video
            already in it is refused.
        media_dir: folder for the re-encoded H.264 videos.
        progress: optional callback receiving :class:`ExportProgress`.

    Returns:
        ``dataset_name``.

    Raises:
        BadInputError: the dataset exists (without overwrite/append), both flags given,
            an appended video already present, a bad name, a missing source video.
        MissingDependencyError: fiftyone or ffmpeg missing.
    """
    if overwrite and append:
        raise BadInputError("choose one of --overwrite and --append, not both")
    if not isinstance(dataset_name, str) or not dataset_name.strip():
        raise BadInputError("the FiftyOne dataset name must be a non-empty string")
    if TMP_MARK in dataset_name or OLD_MARK in dataset_name:
        raise BadInputError(f"dataset names containing '{TMP_MARK}' or '{OLD_MARK}' are reserved")
    vocab, _ = common_vocabulary(results)
    fo = require("fiftyone", "pip install fiftyone")
    cleanup_temporaries(dataset_name)
    exists = fo.dataset_exists(dataset_name)
    if exists and not (overwrite or append):
        raise BadInputError(f"FiftyOne dataset '{dataset_name}' already exists; pass --overwrite to replace it "
                            "or --append to add these videos to it")
    if exists and append:
        present = set(fo.load_dataset(dataset_name).distinct(VIDEO_FIELD)) & set(results)
        if present:
            raise BadInputError(f"FiftyOne dataset '{dataset_name}' already holds {', '.join(sorted(present))}; "
                                "use --overwrite to rebuild it")
    clean_stale_temps(media_dir)  # media files of killed exports
    media = {}
    for name, r in results.items():
        media[name] = encode_video(r.info, media_dir, None if progress is None else
                                   (lambda d, n, v=name: progress(ExportProgress("encode", v, d, n))))
    config = next(iter(results.values())).config.to_dict()
    sha = _config_sha(config)
    tmp_name = f"{dataset_name}{TMP_MARK}{os.getpid()}-{uuid.uuid4().hex[:8]}"
    ds = None
    try:
        try:
            if exists and append:
                ds = fo.load_dataset(dataset_name).clone(tmp_name, persistent=True)
            else:
                ds = fo.Dataset(tmp_name, persistent=True)
                ds.media_type = "video"
        except ValueError as exc:  # e.g. a name whose URL slug collides with another dataset's
            raise BadInputError(f"cannot create FiftyOne dataset '{dataset_name}': {exc}") from exc
        for fld in (KEPT_FIELD, DROPPED_FIELD):
            if not ds.has_frame_field(fld):
                ds.add_frame_field(fld, fo.EmbeddedDocumentField, embedded_doc_type=fo.Detections)
        for k, (name, r) in enumerate(results.items()):
            _add_video(fo, ds, name, r, media[name], sha, progress)
            if progress is not None:
                progress(ExportProgress("save", name, k + 1, len(results)))
        ds.add_dynamic_frame_fields()
        configs = dict(ds.info.get("uvis_configs", {}))
        configs[sha] = config
        ds.info.update({"uvis_config": config, "uvis_version": uvis.__version__, "uvis_configs": configs})
        classes = list(ds.default_classes or [])
        ds.default_classes = classes + [c for c in vocab if c not in classes]
        ds.save()
        _swap_in(fo, ds, dataset_name, replace=exists)
    except BaseException:
        if fo.dataset_exists(tmp_name):
            fo.delete_dataset(tmp_name)
        raise
    return dataset_name
