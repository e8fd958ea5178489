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
import json
import math
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import cv2
import numpy as np
from pycocotools import mask as coco_mask

from uvis import masks as mask_ops
from uvis import masks as mask_utils
from uvis.errors import BadInputError
from uvis.types import Instances


@dataclass
class _Proposal:
    mask: dict[str, Any]  # compressed RLE, str counts, at the file's size
    score: float
    box: np.ndarray | None  # (4,) xyxy at the file's size, or None (use the mask's box)


def _load_json(path: Path, what: str) -> Any:
    if not path.is_file():
        raise BadInputError(f"{path}: {what} not found")
    raw = path.read_bytes()
    try:
        return json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise BadInputError(f"{path}: {what} is not UTF-8 text JSON ({exc.reason} at byte {exc.start})") from exc
    except json.JSONDecodeError as exc:
        raise BadInputError(f"{path}: {what} is not valid JSON ({exc.msg} at line {exc.lineno}, "
                            f"column {exc.colno})") from exc


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
        data = _load_json(self.path, "proposal file")
        index_data = None if self.index_path is None else _load_json(self.index_path, "index file")
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
        if not isinstance(entries, list):
            raise BadInputError(f"{self.path}: 'annotations' must be a list")
        videos: dict[Any, dict] = {}
        candidates: dict[Any, set[str]] = {}
        if catalogue is not None:
            vids = catalogue.get("videos")
            if not isinstance(vids, list):
                raise BadInputError(f"{catalogue_path}: 'videos' must be a list")
            for i, v in enumerate(vids):
                if not isinstance(v, dict) or "id" not in v:
                    raise self._fail(f"videos[{i}]", "must be an object with an 'id'", catalogue_path)
                names = {str(v["id"])}
                if isinstance(v.get("name"), str):
                    names.add(v["name"])
                files = v.get("file_names")
                if isinstance(files, list) and files and isinstance(files[0], str):
                    folder = Path(files[0]).parent.name
                    if folder:
                        names.add(folder)
                videos[v["id"]] = v
                candidates[v["id"]] = names
        else:  # bare results: videos known by id only
            for i, e in enumerate(entries):
                if not isinstance(e, dict) or "video_id" not in e:
                    raise self._fail(f"entry [{i}]", "must be an object with 'video_id'")
                candidates.setdefault(e["video_id"], {str(e["video_id"])})
        vid = self._match(candidates, catalogue_path)
        meta = videos.get(vid, {})
        length = meta.get("length") or (len(meta["file_names"]) if isinstance(meta.get("file_names"), list) else None)
        size = None
        if isinstance(meta.get("height"), int) and isinstance(meta.get("width"), int):
            size = (meta["height"], meta["width"])
        self._size = size
        max_len = 0
        for i, e in enumerate(entries):
            if not isinstance(e, dict) or "video_id" not in e:
                raise self._fail(f"entry [{i}]", "must be an object with 'video_id'")
            if e["video_id"] != vid:
                continue
            segs = e.get("segmentations")
            if not isinstance(segs, list):
                raise self._fail(f"entry [{i}]", "'segmentations' must be a list (one RLE or null per frame)")
            if length is not None and len(segs) != length:
                raise self._fail(f"entry [{i}]", f"has {len(segs)} segmentations but video {vid!r} has {length} frames")
            max_len = max(max_len, len(segs))
            score = self._score(e, f"entry [{i}]", need_score)
            for f, seg in enumerate(segs):
                if seg is None:
                    continue
                rle = self._rle(seg, f"entry [{i}] segmentations[{f}]", size)
                self._frames[f].append(_Proposal(rle, score, None))
        self.num_frames = int(length) if length is not None else (max_len or None)

    # COCO -------------------------------------------------------------------------------------
    def _parse_coco(self, entries: Any, catalogue: dict, catalogue_path: Path | None, need_score: bool) -> None:
        if not isinstance(entries, list):
            raise BadInputError(f"{self.path}: 'annotations' must be a list")
        images = catalogue.get("images")
        if not isinstance(images, list):
            raise BadInputError(f"{catalogue_path}: 'images' must be a list")
        video_names: dict[Any, str] = {}
        for v in catalogue.get("videos") or []:
            if isinstance(v, dict) and "id" in v and isinstance(v.get("name"), str):
                video_names[v["id"]] = v["name"]
        groups: dict[Any, list[tuple[int, dict]]] = defaultdict(list)
        candidates: dict[Any, set[str]] = defaultdict(set)
        for i, im in enumerate(images):
            if not isinstance(im, dict) or "id" not in im:
                raise self._fail(f"images[{i}]", "must be an object with an 'id'", catalogue_path)
            fname = im.get("file_name")
            folder = Path(fname).parent.as_posix() if isinstance(fname, str) else ""
            folder = "" if folder == "." else folder
            if "video_id" in im:
                key: Any = ("id", im["video_id"])
                candidates[key].add(str(im["video_id"]))
                if im["video_id"] in video_names:
                    candidates[key].add(video_names[im["video_id"]])
            elif folder:
                key = ("folder", folder)
            else:
                raise self._fail(f"images[{i}]", "needs 'video_id' or a 'file_name' inside a video folder "
                                                 "(<video>/<frame>.jpg) to know its video", catalogue_path)
            if folder:
                candidates[key].update({folder, Path(folder).name})
            groups[key].append((i, im))
        key = self._match(dict(candidates), catalogue_path)
        frame_of: dict[Any, int] = {}
        sizes: dict[Any, tuple[int, int] | None] = {}
        members = groups[key]
        if all("frame_index" in im for _, im in members):
            for i, im in members:
                fi = im["frame_index"]
                if not isinstance(fi, int) or fi < 0:
                    raise self._fail(f"images[{i}]", f"'frame_index' must be an integer >= 0, got {fi!r}",
                                     catalogue_path)
                frame_of[im["id"]] = fi
        else:
            from uvis.video import natural_key

            for i, im in members:
                if not isinstance(im.get("file_name"), str):
                    raise self._fail(f"images[{i}]", "needs 'frame_index' or a 'file_name' to order frames",
                                     catalogue_path)
            ordered = sorted(members, key=lambda m: natural_key(Path(m[1]["file_name"]).name))
            frame_of = {im["id"]: f for f, (_, im) in enumerate(ordered)}
        seen: dict[int, int] = {}
        for i, im in members:
            fi = frame_of[im["id"]]
            if fi in seen:
                raise self._fail(f"images[{i}]", f"frame {fi} of the video is also images[{seen[fi]}]",
                                 catalogue_path)
            seen[fi] = i
            h, w = im.get("height"), im.get("width")
            sizes[im["id"]] = (h, w) if isinstance(h, int) and isinstance(w, int) else None
        all_images = {im.get("id") for im in images if isinstance(im, dict)}
        for i, e in enumerate(entries):
            if not isinstance(e, dict) or "image_id" not in e:
                raise self._fail(f"entry [{i}]", "must be an object with 'image_id'")
            img = e["image_id"]
            if img not in frame_of:
                if img not in all_images:
                    raise self._fail(f"entry [{i}]", f"image_id {img!r} is not in the images list")
                continue
            if "segmentation" not in e:
                raise self._fail(f"entry [{i}]", "has no 'segmentation'")
            score = self._score(e, f"entry [{i}]", need_score)
            rle = self._rle(e["segmentation"], f"entry [{i}] segmentation", sizes[img])
            box = None
            if e.get("bbox") is not None:
                bb = e["bbox"]
                if (not isinstance(bb, list) or len(bb) != 4
                        or not all(isinstance(v, (int, float)) and math.isfinite(v) for v in bb)):
                    raise self._fail(f"entry [{i}]", f"'bbox' must be [x, y, w, h] numbers, got {bb!r}")
                x, y, bw, bh = (float(v) for v in bb)
                if bw < 0 or bh < 0:
                    raise self._fail(f"entry [{i}]", f"'bbox' has a negative width or height: {bb!r}")
                box = np.array([x, y, x + bw, y + bh], np.float32)
            self._frames[frame_of[img]].append(_Proposal(rle, score, box))
        self.num_frames = max(frame_of.values()) + 1 if frame_of else None

    # values ------------------------------------------------------------------------------------
    def _score(self, e: dict, where: str, required: bool) -> float:
        if "score" not in e:
            if required:
                raise self._fail(where, "has no 'score'")
            return 1.0
        s = e["score"]
        if isinstance(s, bool) or not isinstance(s, (int, float)) or not math.isfinite(s) or not 0 <= s <= 1:
            raise self._fail(where, f"'score' must be a number in [0, 1], got {s!r}")
        return float(s)

    def _rle(self, seg: Any, where: str, size: tuple[int, int] | None) -> dict[str, Any]:
        """Validate one segmentation (RLE or polygons) -> compressed RLE with str counts."""
        if isinstance(seg, dict):
            sz, counts = seg.get("size"), seg.get("counts")
            if (not isinstance(sz, list) or len(sz) != 2 or not all(isinstance(v, int) and v > 0 for v in sz)):
                raise self._fail(where, f"RLE 'size' must be [height, width] positive integers, got {sz!r}")
            h, w = sz
            if size is not None and (h, w) != tuple(size):
                raise self._fail(where, f"mask size {w}x{h} differs from the frame size {size[1]}x{size[0]} "
                                        "declared for this video")
            if isinstance(counts, list):
                if not all(isinstance(c, int) and c >= 0 for c in counts) or sum(counts) != h * w:
                    raise self._fail(where, f"uncompressed RLE 'counts' must be non-negative integers summing to "
                                            f"{h}*{w}")
                rle = coco_mask.frPyObjects({"size": [h, w], "counts": counts}, h, w)
                return {"size": [h, w], "counts": rle["counts"].decode("ascii")}
            if isinstance(counts, str) and counts.isascii():
                if mask_utils.area([{"size": [h, w], "counts": counts}])[0] > h * w:
                    raise self._fail(where, "compressed RLE 'counts' covers more pixels than the mask size")
                return {"size": [h, w], "counts": counts}
            raise self._fail(where, "RLE 'counts' must be a string (compressed) or a list of integers")
        if isinstance(seg, list):
            if size is None:
                raise self._fail(where, "a polygon segmentation needs the frame size (height/width of the "
                                        "image or video in the JSON)")
            if not seg or not all(isinstance(p, list) and len(p) >= 6 and len(p) % 2 == 0
                                  and all(isinstance(v, (int, float)) for v in p) for p in seg):
                raise self._fail(where, "polygons must be lists of at least 3 x,y pairs")
            h, w = size
            rle = coco_mask.merge(coco_mask.frPyObjects(seg, h, w))
            return {"size": [h, w], "counts": rle["counts"].decode("ascii")}
        raise self._fail(where, f"segmentation must be an RLE object or a polygon list, got {type(seg).__name__}")
