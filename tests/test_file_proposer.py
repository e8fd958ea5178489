"""File proposer: hand-made YouTube-VIS and COCO results JSON, valid and broken."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from uvis import masks as mask_utils
from uvis.errors import BadInputError
from uvis.proposers.base import Proposer
from uvis.proposers.file import FileProposer
from uvis.testing import column_runs

H, W = 12, 16


def rect(x0: int, y0: int, x1: int, y1: int, h: int = H, w: int = W) -> np.ndarray:
    m = np.zeros((h, w), bool)
    m[y0:y1, x0:x1] = True
    return m


def uncompressed(mask: np.ndarray) -> dict:
    """Uncompressed COCO RLE (column-major run lengths starting with zeros)."""
    return {"size": list(mask.shape), "counts": column_runs(mask)}


def write(tmp_path: Path, name: str, data) -> Path:
    p = tmp_path / name
    p.write_text(json.dumps(data))
    return p


def frame(h: int = H, w: int = W) -> np.ndarray:
    return np.zeros((h, w, 3), np.uint8)


def ytvis_results() -> list[dict]:
    a0, a2 = rect(1, 1, 5, 6), rect(2, 2, 7, 9)
    b1 = rect(8, 3, 15, 11)
    return [
        {"video_id": 1, "score": 0.9, "category_id": 3,
         "segmentations": [mask_utils.encode(a0), None, uncompressed(a2)]},
        {"video_id": 1, "score": 0.4, "category_id": 1,
         "segmentations": [None, mask_utils.encode(b1), mask_utils.encode(rect(0, 0, 0, 0))]},  # empty mask
        {"video_id": 2, "score": 0.5, "category_id": 1, "segmentations": [mask_utils.encode(b1)]},
    ]


def ytvis_index() -> dict:
    return {"videos": [
        {"id": 1, "width": W, "height": H, "length": 3, "file_names": [f"vid one/{i:05d}.jpg" for i in range(3)]},
        {"id": 2, "width": W, "height": H, "length": 1, "file_names": ["b/00000.jpg"]},
    ], "categories": [{"id": 1, "name": "person"}]}


def test_ytvis_results_by_id(tmp_path):
    path = write(tmp_path, "results.json", ytvis_results())
    fp = FileProposer(path, 1)
    assert isinstance(fp, Proposer) and fp.context_frames == 0
    assert fp.num_frames == 3 and fp.num_proposals == 4  # the empty mask is stored but never served
    f0 = fp.propose(frame(), 0)
    assert len(f0) == 1 and f0.objectness.tolist() == pytest.approx([0.9])
    assert np.array_equal(mask_utils.decode(f0.masks[0]), rect(1, 1, 5, 6))
    assert f0.boxes.tolist() == [[1, 1, 5, 6]] and f0.frame.tolist() == [0]
    f1 = fp.propose(frame(), 1)
    assert f1.objectness.tolist() == pytest.approx([0.4]) and f1.boxes.tolist() == [[8, 3, 15, 11]]
    f2 = fp.propose(frame(), 2)  # the uncompressed RLE is read; the empty mask is skipped
    assert len(f2) == 1 and np.array_equal(mask_utils.decode(f2.masks[0]), rect(2, 2, 7, 9))
    assert isinstance(f2.masks[0]["counts"], str) and f2.frame.tolist() == [2]
    assert len(FileProposer(path, "2").propose(frame(), 0)) == 1


def test_ytvis_results_by_name_through_index(tmp_path):
    path = write(tmp_path, "results.json", ytvis_results())
    index = write(tmp_path, "valid.json", ytvis_index())
    assert len(FileProposer(path, "vid one", index=index).propose(frame(), 0)) == 1
    assert len(FileProposer(path, "vid_one", index=index).propose(frame(), 0)) == 1  # workspace-sanitised name
    with pytest.raises(BadInputError, match=r"valid\.json: unknown video 'other'; known videos: 1, 2, b, vid one"):
        FileProposer(path, "other", index=index)
    with pytest.raises(BadInputError, match=r"results\.json: unknown video 'vid one'; known videos: 1, 2"):
        FileProposer(path, "vid one")


def test_ytvis_dataset_style_file(tmp_path):
    data = ytvis_index()
    data["annotations"] = [{"id": 1, "video_id": 1, "category_id": 1, "iscrowd": 0,
                            "segmentations": [mask_utils.encode(rect(0, 0, 4, 4)), None, None]}]
    fp = FileProposer(write(tmp_path, "gt.json", data), "vid one")
    inst = fp.propose(frame(), 0)
    assert inst.objectness.tolist() == [1.0]  # ground truth has no score
    assert len(fp.propose(frame(), 1)) == 0


def test_frame_map_for_strided_reading(tmp_path):
    fp = FileProposer(write(tmp_path, "r.json", ytvis_results()), 1, frame_map=[0, 2])
    assert fp.propose(frame(), 1).boxes.tolist() == [[2, 2, 7, 9]]
    assert fp.propose(frame(), 1).frame.tolist() == [1]
    with pytest.raises(BadInputError, match="outside the frame map"):
        fp.propose(frame(), 2)


def test_downscaled_frames_get_resized_masks_and_boxes(tmp_path):
    big = rect(4, 4, 20, 12, h=24, w=32)
    data = [{"video_id": 5, "score": 0.8, "segmentations": [mask_utils.encode(big)]}]
    fp = FileProposer(write(tmp_path, "r.json", data), 5)
    inst = fp.propose(frame(12, 16), 0)
    assert inst.masks[0]["size"] == [12, 16] and inst.boxes.tolist() == [[2, 2, 10, 6]]
    with pytest.raises(BadInputError, match=r"r\.json: masks of video 5 frame 0 are 32x24 but the frame is 16x16"):
        fp.propose(frame(16, 16), 0)


def test_more_frames_requested_than_the_file_has(tmp_path):
    fp = FileProposer(write(tmp_path, "r.json", ytvis_results()), 1)
    with pytest.raises(BadInputError, match=r"video 1 has 3 frames in this file, but frame 3 was requested"):
        fp.propose(frame(), 3)


# ---- COCO ---------------------------------------------------------------------------------------

def coco_index() -> dict:
    # file names out of natural order on purpose; video 'cam' frames ordered 2 < 10
    return {"images": [
        {"id": 10, "file_name": "cam/10.jpg", "height": H, "width": W},
        {"id": 11, "file_name": "cam/2.jpg", "height": H, "width": W},
        {"id": 20, "file_name": "other/0.jpg", "height": H, "width": W},
    ], "categories": [{"id": 1, "name": "person"}]}


def test_coco_results_with_index(tmp_path):
    results = [
        {"image_id": 10, "category_id": 1, "score": 0.75, "bbox": [1, 2, 3, 4],
         "segmentation": mask_utils.encode(rect(1, 2, 4, 6))},
        {"image_id": 11, "category_id": 1, "score": 0.3,
         "segmentation": [[2, 2, 8, 2, 8, 6, 2, 6]]},  # polygon: needs the image size
        {"image_id": 20, "category_id": 1, "score": 0.9, "segmentation": mask_utils.encode(rect(0, 0, 3, 3))},
    ]
    path = write(tmp_path, "coco_results.json", results)
    index = write(tmp_path, "instances.json", coco_index())
    fp = FileProposer(path, "cam", index=index)
    assert fp.num_frames == 2
    first = fp.propose(frame(), 0)  # cam/2.jpg comes first in natural order
    assert first.objectness.tolist() == pytest.approx([0.3])
    m = mask_utils.decode(first.masks[0])
    assert m[3, 4] and not m[0, 0] and 20 <= m.sum() <= 40
    second = fp.propose(frame(), 1)
    assert second.boxes.tolist() == [[1, 2, 4, 6]]  # the COCO bbox (xywh) as xyxy
    assert len(FileProposer(path, "other", index=index).propose(frame(), 0)) == 1
    with pytest.raises(BadInputError, match=r"COCO results need the image -> \(video, frame\) mapping"):
        FileProposer(path, "cam")


def test_coco_instances_with_video_ids_and_frame_index(tmp_path):
    data = {
        "videos": [{"id": 7, "name": "walk"}],
        "images": [{"id": 1, "file_name": "x.jpg", "video_id": 7, "frame_index": 1, "height": H, "width": W},
                   {"id": 2, "file_name": "y.jpg", "video_id": 7, "frame_index": 0, "height": H, "width": W}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "segmentation": uncompressed(rect(0, 0, 2, 2))}],
    }
    path = write(tmp_path, "inst.json", data)
    for name in ("walk", 7, "7"):
        fp = FileProposer(path, name)
        assert len(fp.propose(frame(), 0)) == 0
        assert fp.propose(frame(), 1).objectness.tolist() == [1.0]
    data["images"][1]["frame_index"] = 1
    with pytest.raises(BadInputError, match=r"inst\.json: images\[1\]: frame 1 of the video is also images\[0\]"):
        FileProposer(write(tmp_path, "inst.json", data), "walk")


# ---- errors ---------------------------------------------------------------------------------------

def test_malformed_json(tmp_path):
    p = tmp_path / "bad.json"
    p.write_text('[{"video_id": 1,\n "score": 0.5,, }]')
    with pytest.raises(BadInputError, match=r"bad\.json: malformed JSON in the proposal file \(.* line 2, column 15\)"):
        FileProposer(p, 1)
    with pytest.raises(BadInputError, match=r"missing\.json: proposal file not found"):
        FileProposer(tmp_path / "missing.json", 1)


@pytest.mark.parametrize("data,message", [
    ({"foo": 1}, r"a JSON object must have 'annotations'"),
    ({"annotations": []}, r"neither 'videos' \(YouTube-VIS\) nor 'images' \(COCO\)"),
    ("text", r"expected a list of results or an object with 'annotations', got str"),
    ([], r"the results list is empty"),
    ([5], r"entry \[0\]: expected an object, got int"),
    ([{"x": 1}], r"entry \[0\]: neither a YouTube-VIS result"),
    ([{"video_id": 1, "score": 1, "segmentations": []}, 3], r"\[1\]: must be a JSON object, not int"),
    ([{"video_id": 1, "score": 0.5, "segmentations": "abc"}], r"\[0\]\.segmentations: 'segmentations' must be a list"),
    ([{"video_id": 1, "segmentations": [None]}], r"\[0\]: missing key\(s\) 'score'"),
    ([{"video_id": 1, "score": 1.5, "segmentations": [None]}],
     r"\[0\]: 'score' must be a number in \[0, 1\] \(it is used as objectness\), got 1.5"),
    ([{"video_id": 1, "score": 0.5, "segmentations": [None, {"size": [4], "counts": "x"}]}],
     r"\[0\]\.segmentations\[1\]\.size: RLE 'size' must be \[height, width\]"),
    ([{"video_id": 1, "score": 0.5, "segmentations": [{"size": [2, 2], "counts": [1, 2]}]}],
     r"\[0\]\.segmentations\[0\]\.counts: uncompressed RLE runs sum to 3 pixels but size 2x2 has 4"),
    ([{"video_id": 1, "score": 0.5, "segmentations": [[[0, 0, 4, 0, 4, 4]]]}],
     r"segmentations\[0\]: a polygon segmentation needs the frame size"),
    ([{"video_id": 1, "score": 0.5, "segmentations": [42]}], r"segmentation must be an RLE object or a polygon list"),
    ([{"video_id": 3, "score": 0.5, "segmentations": [None]}], r"unknown video '1'; known videos: 3"),
])
def test_wrong_structure_names_file_and_place(tmp_path, data, message):
    path = write(tmp_path, "results.json", data)
    with pytest.raises(BadInputError, match=r"results\.json: .*" + message):
        FileProposer(path, 1)


def test_mask_size_differs_from_declared_video_size(tmp_path):
    results = ytvis_results()
    results.append({"video_id": 1, "score": 0.5,
                    "segmentations": [None, None, mask_utils.encode(rect(0, 0, 2, 2, h=H + 1))]})
    with pytest.raises(BadInputError, match=r"results\.json: \[3\]\.segmentations\[2\]: RLE size \[13, 16\] does not match "
                                            r"video 1 \[height, width\] = \[12, 16\]"):
        FileProposer(write(tmp_path, "results.json", results), 1, index=write(tmp_path, "idx.json", ytvis_index()))
    results[3]["segmentations"] = [None, None]
    with pytest.raises(BadInputError, match=r"\[3\]: 'segmentations' has 2 entries but video 1 has length 3"):
        FileProposer(write(tmp_path, "results.json", results), 1, index=write(tmp_path, "idx.json", ytvis_index()))


def test_coco_entry_errors(tmp_path):
    index = write(tmp_path, "instances.json", coco_index())
    for entry, message in [
        ({"image_id": 99, "score": 0.5, "segmentation": []}, r"\[0\]: image_id 99 is not in the images list"),
        ({"image_id": 10, "score": 0.5}, r"\[0\]: missing key\(s\) 'segmentation'"),
        ({"image_id": 10, "score": 0.5, "bbox": [0, 0, -1, 2], "segmentation": mask_utils.encode(rect(0, 0, 2, 2))},
         r"\[0\]\.bbox: 'bbox' has a negative width"),
    ]:
        path = write(tmp_path, "r.json", [entry])
        with pytest.raises(BadInputError, match=r"r\.json: " + message):
            FileProposer(path, "cam", index=index)
    bad_index = write(tmp_path, "bad_index.json", {"images": [{"id": 1, "file_name": "flat.jpg"}]})
    with pytest.raises(BadInputError, match=r"bad_index\.json: unknown video 'x'; known videos: images"):
        FileProposer(write(tmp_path, "r.json", [{"image_id": 1, "score": 1,
                                                 "segmentation": mask_utils.encode(rect(0, 0, 2, 2))}]), "x",
                     index=bad_index)  # flat file names form the video 'images'
    no_video = write(tmp_path, "no_video.json", {"images": [{"id": 1, "height": H, "width": W}]})
    with pytest.raises(BadInputError, match=r"no_video\.json: images\[0\]: needs 'video_id' or a 'file_name'"):
        FileProposer(write(tmp_path, "r.json", [{"image_id": 1, "score": 1, "segmentation": []}]), "x",
                     index=no_video)


def test_name_changes_with_file_content(tmp_path):
    path = write(tmp_path, "r.json", ytvis_results())
    before = FileProposer(path, 1).name
    results = ytvis_results()
    results[0]["score"] = 0.95
    write(tmp_path, "r.json", results)
    after = FileProposer(path, 1).name
    assert before != after and before.startswith("file(r.json,") and "video=1" in after
