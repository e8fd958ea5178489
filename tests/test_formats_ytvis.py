"""uvis.formats.ytvis: YouTube-VIS datasets and results, valid and invalid."""
from __future__ import annotations

import copy
import json

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from uvis.formats.base import MAX_TOTAL_FRAMES, MAX_VIDEO_LENGTH, FormatError
from uvis.formats.ytvis import (parse_ytvis_dataset, parse_ytvis_results, read_ytvis_dataset, read_ytvis_results,
                                write_ytvis_results)

H, W = 6, 8


def rle(x0: int, x1: int) -> dict:
    m = np.zeros((H, W), np.uint8)
    m[1:5, x0:x1] = 1
    r = mask_utils.encode(np.asfortranarray(m))
    return {"size": [H, W], "counts": r["counts"].decode()}


def dataset() -> dict:
    return {
        "videos": [{"id": 1, "width": W, "height": H, "length": 3, "file_names": [f"v1/{t:05d}.jpg" for t in range(3)]},
                   {"id": 2, "width": W, "height": H, "length": 2, "name": "two"}],
        "categories": [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}],
        "annotations": [
            {"id": 5, "video_id": 1, "category_id": 1, "segmentations": [rle(0, 3), None, rle(1, 4)],
             "areas": [12, None, 12], "bboxes": [[0, 1, 3, 4], None, [1, 1, 3, 4]], "iscrowd": 0},
            {"id": 6, "video_id": 2, "category_id": 2, "segmentations": [[[1, 1, 5, 1, 5, 4]], None]},
        ],
    }


def test_valid_dataset_and_results_round_trip(tmp_path):
    gt = parse_ytvis_dataset(dataset(), "gt.json")
    assert [v.name for v in gt.videos.values()] == ["v1", "2"] and gt.videos[2].declared_name == "two"
    assert gt.categories == {1: "cat", 2: "dog"} and gt.annotations[0].id == 5
    assert gt.annotations[0].segmentations[1] is None
    assert isinstance(gt.annotations[1].segmentations[0]["counts"], bytes)  # polygon rasterised
    results = [{"video_id": 1, "category_id": 2, "score": 0.5, "segmentations": [rle(0, 2), None, None]}]
    path = write_ytvis_results(tmp_path / "r.json", results)
    assert json.loads(path.read_text()) == results
    tracks = read_ytvis_results(path, gt)
    assert tracks[0].score == 0.5 and tracks[0].segmentations[0]["counts"] == results[0]["segmentations"][0][
        "counts"].encode()


def mutated(change) -> dict:
    d = copy.deepcopy(dataset())
    change(d)
    return d


@pytest.mark.parametrize("change,message", [
    (lambda d: d["videos"][0].update(length=100_000_000), rf"videos\[0\]\.length: must be <= {MAX_VIDEO_LENGTH}"),
    (lambda d: d["videos"][0].update(length=-3), r"videos\[0\]\.length: must be >= 1"),
    (lambda d: d["videos"][0].update(width=1e300), r"videos\[0\]\.width: must be <= 16384"),
    (lambda d: d["videos"][0].update(height=0), r"videos\[0\]\.height: must be >= 1"),
    (lambda d: d["videos"][0].update(id="1"), r"videos\[0\]\.id: must be an integer"),
    (lambda d: d["videos"][0]["file_names"].__setitem__(1, "../../etc/passwd"), r"file_names\[1\]: file names must "
                                                                                  "be relative"),
    (lambda d: d["videos"][0]["file_names"].__setitem__(1, "/abs/x.jpg"), r"file_names\[1\]: file names must"),
    (lambda d: d["videos"][0].update(length=4), r"videos\[0\]\.length: is 4 but there are 3 file_names"),
    (lambda d: d["videos"].append(dict(d["videos"][0])), r"videos\[2\]: duplicate video id 1"),
    (lambda d: d["annotations"][0]["segmentations"].pop(), r"annotations\[0\]: 'segmentations' has 2 entries"),
    (lambda d: d["annotations"][0]["segmentations"][2].update(counts="1"),
     r"annotations\[0\]\.segmentations\[2\]\.counts: compressed RLE runs sum to 1 pixels but size 6x8 has 48"),
    (lambda d: d["annotations"][1]["segmentations"].__setitem__(0, [[1, 1, 1e300, 1, 5, 4]]),
     r"annotations\[1\]\.segmentations\[0\]\[0\]: polygon x coordinates"),
    (lambda d: d["annotations"][0].update(areas=[1, 2]), r"annotations\[0\]\.areas: must be a list of 3"),
    (lambda d: d["annotations"][0]["areas"].__setitem__(0, float("nan")), r"annotations\[0\]\.areas\[0\]"),
    (lambda d: d["annotations"][0]["bboxes"].__setitem__(0, [0, 0, "w", 1]), r"annotations\[0\]\.bboxes\[0\]"),
    (lambda d: d["annotations"][0].update(iscrowd="yes"), r"annotations\[0\]\.iscrowd: 'iscrowd' must be 0 or 1"),
    (lambda d: d["annotations"][0].update(category_id=9), r"annotations\[0\]: unknown category_id 9"),
    (lambda d: d["annotations"][0].update(video_id=9), r"annotations\[0\]: video_id 9 is not in"),
    (lambda d: d["annotations"].__setitem__(0, [1]), r"annotations\[0\]: must be a JSON object, not a list"),
    (lambda d: d.pop("categories"), r"missing top-level key 'categories'"),
    (lambda d: d["categories"].append({"id": 3, "name": "cat"}), r"categories\[2\]: duplicate category name"),
])
def test_invalid_datasets_name_the_json_path(change, message):
    with pytest.raises(FormatError, match=message) as info:
        parse_ytvis_dataset(mutated(change), "gt.json")
    assert str(info.value).startswith("gt.json: ")


def test_total_frames_are_capped():
    n = MAX_TOTAL_FRAMES // MAX_VIDEO_LENGTH + 1
    d = {"videos": [{"id": i, "width": 4, "height": 4, "length": MAX_VIDEO_LENGTH} for i in range(n)],
         "annotations": [], "categories": []}
    with pytest.raises(FormatError, match=rf"videos\[{n - 1}\]: the videos up to this one have"):
        parse_ytvis_dataset(d, "gt.json")


@pytest.mark.parametrize("entry,message", [
    ({"video_id": 1, "category_id": 1, "score": float("nan"), "segmentations": [None] * 3}, r"\[0\]\.score"),
    ({"video_id": 1, "category_id": 1, "score": 0.5, "segmentations": [[[0, 0, 1, 0, 1, 1]], None, None]},
     r"\[0\]\.segmentations\[0\]: results must use RLE"),
    ({"video_id": 1, "category_id": 1, "score": 0.5, "segmentations": [rle(0, 2), None]}, r"has 2 entries"),
    ({"video_id": 1, "category_id": 7, "score": 0.5, "segmentations": [None] * 3}, r"unknown category_id 7"),
])
def test_invalid_results(entry, message):
    gt = parse_ytvis_dataset(dataset(), "gt.json")
    with pytest.raises(FormatError, match=message):
        parse_ytvis_results([entry], gt, "pred.json")
    with pytest.raises(FormatError, match=r"pred\.json: \(top level\): YouTube-VIS results must be a JSON list"):
        parse_ytvis_results({"videos": []}, gt, "pred.json")


def test_bare_results_without_dataset_keep_lengths_consistent():
    ok = parse_ytvis_results([{"video_id": 3, "score": 1, "segmentations": [rle(0, 2), None]}], None, "r.json")
    assert ok[0].video_id == 3 and ok[0].category_id == -1
    with pytest.raises(FormatError, match=r"\[1\]\.segmentations: has 1 entries but \[0\] of video 3 has 2"):
        parse_ytvis_results([{"video_id": 3, "score": 1, "segmentations": [None, None]},
                             {"video_id": 3, "score": 1, "segmentations": [None]}], None, "r.json")


def test_read_from_file(tmp_path):
    p = tmp_path / "gt.json"
    p.write_text(json.dumps(dataset()))
    assert len(read_ytvis_dataset(p).annotations) == 2
