"""Proposals imported from a results JSON (another model's output, or ground truth).

Accepted layouts (detected from the content):

1. **YouTube-VIS results**: a list ``[{video_id, score, category_id, segmentations}]``
   where ``segmentations`` has one entry per video frame: an RLE (compressed ``counts``
   string or uncompressed ``counts`` list, ``size`` = [H, W]) or ``null``. Every
   non-null frame segmentation is one proposal of that frame with objectness =
   ``score``. Videos are named by id (``"7"`` or 7); to name them by folder name pass
   ``index=`` a YouTube-VIS dataset JSON (``videos[{id, file_names, width, height,
   length}]``; the name is ``videos[].name`` if present, else the folder of
   ``file_names[0]``).
2. **YouTube-VIS dataset** (ground truth or an export): one object ``{videos,
   annotations}``, annotations with ``segmentations`` as above; ``score`` optional
   (default 1.0).
3. **COCO results**: a list ``[{image_id, segmentation, bbox, score, category_id}]``
   (segmentation an RLE or a polygon list, ``bbox`` xywh pixels, optional). Needs the
   image -> (video, frame) mapping from ``index=`` a COCO instances JSON whose
   ``images[{id, file_name, height, width, video_id?, frame_index?}]`` describe the
   frames: the video is ``video_id`` if given, else the folder of ``file_name``
   (``<video>/<frame>.jpg``); the frame is ``frame_index`` (0-based) if given, else the
   rank of ``file_name`` in natural order within its video. A video is named by its
   folder, its ``video_id``, or ``videos[{id, name}]`` when the index has them.
4. **COCO instances** with annotations: one object ``{images, annotations}`` (as 3, in
   one file; ``score`` optional, default 1.0).

``category_id`` is ignored: proposals are class-agnostic. Masks of zero area are
skipped. Boxes: the COCO ``bbox`` when given, else the mask's tight box (xyxy).

Frame numbers in the file are the dataset's frames of the video; ``frame_map[t]``
maps processed frame t to them (pass ``VideoInfo.source_indices`` when reading with
a stride; default identity). Masks are at the file's size; a processed frame that is
a uniform downscale of it (same aspect ratio within 1 %) gets masks resized (nearest)
and boxes scaled; any other size mismatch is an error.

Every problem raises :class:`~uvis.errors.BadInputError` naming the file and the
place (``entry [i]``, ``images[i]``, frame).
"""
from __future__ import annotations

import hashlib
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import cv2
import numpy as np

from uvis import masks as mask_ops
from uvis import masks as mask_utils
from uvis.errors import BadInputError
from uvis.formats.coco import parse_coco_annotations, parse_coco_dataset
from uvis.formats.json_io import read_json
from uvis.formats.ytvis import YtvisGroundTruth, YtvisVideo, parse_ytvis_dataset, parse_ytvis_results, str_rle
from uvis.types import Instances


@dataclass
class _Proposal:
    mask: dict[str, Any]  # compressed RLE, str counts, at the file's size
    score: float
    box: np.ndarray | None  # (4,) xyxy at the file's size, or None (use the mask's box)


def _sanitise(name: str) -> str:
    from uvis.workspace import video_name_for

    return video_name_for(name)


class FileProposer:
    """Serves the proposals of one video from a results JSON; see the module docstring.

    Args:
        path: results or dataset JSON (layouts 1-4 of the module docstring).
        video: video name or id (int, or a numeric string matching an id).
        index: a YouTube-VIS or COCO dataset JSON giving video names (layout 1) or the
            image -> (video, frame) mapping (layout 3).
        frame_map: ``frame_map[t]`` = file frame of processed frame t (default t).

    Attributes:
        num_frames: frames the file covers for this video (None if unknown).
        num_proposals: proposals of this video in the file (non-empty masks).
    """

    context_frames = 0

    def __init__(self, path: str | Path, video: str | int, *, index: str | Path | None = None,
                 frame_map: Sequence[int] | None = None) -> None:
        self.path = Path(path).expanduser()
        self.index_path = None if index is None else Path(index).expanduser()
        self.video = video
        self.frame_map = None if frame_map is None else [int(i) for i in frame_map]
        data = read_json(self.path, "proposal file")
        index_data = None if self.index_path is None else read_json(self.index_path, "index file")
        digest = hashlib.sha256(self.path.read_bytes())
        if self.index_path is not None:
            digest.update(self.index_path.read_bytes())
        self.name = f"file({self.path.name},sha256={digest.hexdigest()[:12]},video={video})"
        self._frames: dict[int, list[_Proposal]] = defaultdict(list)
        self.num_frames: int | None = None
        self._size: tuple[int, int] | None = None  # (H, W) of the file's masks when known
        self._parse(data, index_data)
        self.num_proposals = sum(len(v) for v in self._frames.values())

    # ---- Proposer protocol ----------------------------------------------------------------
    def reset(self) -> None:
        """Stateless: nothing to reset."""

    def propose(self, frame: np.ndarray, t: int) -> Instances:
        """The file's proposals for processed frame ``t`` at ``frame``'s size.

        Returns:
            :class:`Instances` (boxes xyxy, RLE masks at frame size, objectness = score).
        Raises:
            BadInputError: the file has fewer frames than the video, or its masks do
                not fit the frame size.
        """
        H, W = int(frame.shape[0]), int(frame.shape[1])
        if self.frame_map is not None:
            if not 0 <= t < len(self.frame_map):
                raise BadInputError(f"{self.path}: frame {t} is outside the frame map of {len(self.frame_map)} frames")
            fi = self.frame_map[t]
        else:
            fi = t
        if self.num_frames is not None and fi >= self.num_frames:
            raise BadInputError(
                f"{self.path}: video {self.video!r} has {self.num_frames} frames in this file, but frame {fi} "
                "was requested (is it the right video, or the right stride?)"
            )
        props = self._frames.get(fi, [])
        if not props:
            return Instances.empty((H, W)).with_fields(frame=np.zeros(0, np.int32) + t)
        rles, boxes = [], []
        for p in props:
            h, w = p.mask["size"]
            if (h, w) == (H, W):
                rles.append(p.mask)
                boxes.append(p.box)
                continue
            if abs(h * W - w * H) > 0.01 * h * W:
                raise BadInputError(
                    f"{self.path}: masks of video {self.video!r} frame {fi} are {w}x{h} but the frame is {W}x{H} "
                    "(different aspect ratio: wrong video, or a frame size the results were not made for)"
                )
            dense = mask_utils.decode(p.mask).astype(np.uint8)
            rles.append(mask_utils.encode(cv2.resize(dense, (W, H), interpolation=cv2.INTER_NEAREST) > 0))
            boxes.append(None if p.box is None else p.box * np.float32([W / w, H / h, W / w, H / h]))
        box_arr = mask_utils.to_bbox(rles)  # the mask's tight box unless the file gives one
        for i, b in enumerate(boxes):
            if b is not None:
                box_arr[i] = b
        keep = mask_ops.area(rles) > 0
        inst = Instances(boxes=box_arr, masks=rles, objectness=np.array([p.score for p in props], np.float32),
                         image_size=(H, W), frame=np.full(len(rles), t, np.int32))
        return inst[keep]

    # ---- parsing -----------------------------------------------------------------------------
    def _fail(self, where: str, problem: str, file: Path | None = None) -> BadInputError:
        return BadInputError(f"{file or self.path}: {where}: {problem}")

    def _parse(self, data: Any, index: Any) -> None:
        if isinstance(data, dict):
            if "annotations" not in data:
                raise BadInputError(f"{self.path}: a JSON object must have 'annotations' (with 'videos' or "
                                    f"'images'); found keys {sorted(data)[:8]}")
            if "images" in data:  # COCO (may also list videos, for their names)
                self._parse_coco(data["annotations"], data, self.path, need_score=False)
            elif "videos" in data:
                self._parse_ytvis(data["annotations"], data, self.path, need_score=False)
            else:
                raise BadInputError(f"{self.path}: has 'annotations' but neither 'videos' (YouTube-VIS) nor "
                                    "'images' (COCO) to place them in videos and frames")
            return
        if not isinstance(data, list):
            raise BadInputError(f"{self.path}: expected a list of results or an object with 'annotations', "
                                f"got {type(data).__name__}")
        if not data:
            raise BadInputError(f"{self.path}: the results list is empty (no video {self.video!r})")
        first = data[0]
        if not isinstance(first, dict):
            raise self._fail("entry [0]", f"expected an object, got {type(first).__name__}")
        if "segmentations" in first:
            if index is not None and not (isinstance(index, dict) and isinstance(index.get("videos"), list)):
                raise BadInputError(f"{self.index_path}: a YouTube-VIS index needs a 'videos' list")
            self._parse_ytvis(data, index, self.index_path, need_score=True)
        elif "image_id" in first:
            if index is None:
                raise BadInputError(
                    f"{self.path}: COCO results need the image -> (video, frame) mapping: pass the COCO "
                    "instances JSON with 'images' as index"
                )
            if not (isinstance(index, dict) and isinstance(index.get("images"), list)):
                raise BadInputError(f"{self.index_path}: a COCO index needs an 'images' list")
            self._parse_coco(data, index, self.index_path, need_score=True)
        else:
            raise self._fail("entry [0]", "neither a YouTube-VIS result (needs 'segmentations') nor a COCO "
                                          f"result (needs 'image_id'); keys {sorted(first)[:8]}")

    def _match(self, candidates: dict[Any, set[str]], described_in: Path | None) -> Any:
        """The key whose names include ``self.video`` (exact, then sanitised)."""
        wanted = str(self.video)
        for attempt in (lambda n: n, _sanitise):
            hits = [k for k, names in candidates.items() if wanted in {attempt(n) for n in names}]
            if len(hits) == 1:
                return hits[0]
            if len(hits) > 1:
                raise BadInputError(f"{described_in or self.path}: video name {wanted!r} is ambiguous "
                                    f"({len(hits)} videos match)")
        known = sorted({n for names in candidates.values() for n in names}, key=str)
        shown = ", ".join(known[:10]) + (", ..." if len(known) > 10 else "")
        raise BadInputError(f"{described_in or self.path}: unknown video {wanted!r}; known videos: {shown or 'none'}")

    # YouTube-VIS ------------------------------------------------------------------------------
    def _parse_ytvis(self, entries: Any, catalogue: dict | None, catalogue_path: Path | None,
                     need_score: bool) -> None:
        """Results (``need_score``, ``catalogue`` the optional index) or a dataset (``catalogue``
        is the file itself), validated by :mod:`uvis.formats.ytvis`."""
        videos: dict[int, YtvisVideo] = {}
        if catalogue is not None:
            index_source = str(catalogue_path or self.path)
            videos = parse_ytvis_dataset(catalogue, index_source, check_categories=False,
                                         require_annotations=False).videos
        if need_score:
            dataset = YtvisGroundTruth(videos, {}, (), str(catalogue_path)) if catalogue is not None else None
            tracks = parse_ytvis_results(entries, dataset, str(self.path), check_categories=False,
                                         allow_polygons=True)
        else:
            tracks = list(parse_ytvis_dataset(catalogue, str(self.path), check_categories=False).annotations)
        if catalogue is not None:
            candidates = {vid: {str(vid), v.name, *([v.declared_name] if v.declared_name else [])}
                          for vid, v in videos.items()}
        else:
            candidates = {tr.video_id: {str(tr.video_id)} for tr in tracks}
        vid = self._match(candidates, catalogue_path)
        meta = videos.get(vid)
        self._size = None if meta is None else (meta.height, meta.width)
        max_len = 0
        for tr in tracks:
            if tr.video_id != vid:
                continue
            where = f"[{tr.index}]" if need_score else f"annotations[{tr.index}]"
            score = self._score(tr.score, where)
            max_len = max(max_len, len(tr.segmentations))
            for f, seg in enumerate(tr.segmentations):
                if seg is not None:
                    self._frames[f].append(_Proposal(str_rle(seg), score, None))
        self.num_frames = meta.length if meta is not None else (max_len or None)

    # COCO -------------------------------------------------------------------------------------
    def _parse_coco(self, entries: Any, catalogue: dict, catalogue_path: Path | None, need_score: bool) -> None:
        """COCO results (``need_score``) or instances, validated by :mod:`uvis.formats.coco`."""
        dataset = parse_coco_dataset(catalogue, str(catalogue_path or self.path), check_categories=False,
                                     require_sizes=False)
        anns = parse_coco_annotations(entries, dataset, str(self.path), results=need_score, check_categories=False)
        groups = {v.key: v for v in dataset.videos()}
        key = self._match({k: set(v.aliases) for k, v in groups.items()}, catalogue_path)
        video = groups[key]
        for a in anns:
            t = video.frames.get(a.image_id)
            if t is None:
                continue
            score = self._score(1.0 if a.score is None else a.score,
                                f"[{a.index}]" if need_score else f"annotations[{a.index}]")
            box = None
            if a.bbox is not None:
                x, y, bw, bh = a.bbox
                box = np.array([x, y, x + bw, y + bh], np.float32)
            self._frames[t].append(_Proposal(a.segmentation, score, box))
        self.num_frames = max(video.frames.values()) + 1 if video.frames else None

    # values ------------------------------------------------------------------------------------
    def _score(self, s: float, where: str) -> float:
        """A score used as objectness: must lie in [0, 1]."""
        if not 0 <= s <= 1:
            raise self._fail(where, f"'score' must be a number in [0, 1] (it is used as objectness), got {s!r}")
        return float(s)
