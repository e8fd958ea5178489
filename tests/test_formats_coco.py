"""uvis.formats.coco: COCO instances and results, grouping of images into videos."""
from __future__ import annotations

import copy

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from uvis.formats.base import FormatError
from uvis.formats.coco import parse_coco_annotations, parse_coco_dataset

H, W = 6, 8


def rle() -> dict:
    m = np.zeros((H, W), np.uint8)
    m[1:4, 2:6] = 1
    return {"size": [H, W], "counts": mask_utils.encode(np.asfortranarray(m))["counts"].decode()}


def coco() -> dict:
    return {
        "images": [{"id": 1, "file_name": "cam/10.jpg", "height": H, "width": W},
                   {"id": 2, "file_name": "cam/2.jpg", "height": H, "width": W},
                   {"id": 3, "file_name": "x.jpg", "height": H, "width": W, "video_id": 7, "frame_index": 0},
                   {"id": 4, "file_name": "flat.jpg", "height": H, "width": W}],
        "videos": [{"id": 7, "name": "walk"}],
        "categories": [{"id": 1, "name": "cat"}],
        "annotations": [{"id": 1, "image_id": 2, "category_id": 1, "segmentation": rle(), "bbox": [2, 1, 4, 3]},
                        {"id": 2, "image_id": 1, "category_id": 1, "segmentation": [[1, 1, 6, 1, 6, 5]]}],
    }


def test_grouping_and_frame_order():
    ds = parse_coco_dataset(coco(), "c.json")
    vids = {v.name: v for v in ds.videos()}
    assert sorted(vids) == ["cam", "images", "walk"]
    assert vids["cam"].frames == {2: 0, 1: 1}  # natural order: 2.jpg before 10.jpg
    assert vids["walk"].aliases == {"walk", "7"} and vids["cam"].size == (H, W)
    anns = parse_coco_annotations(coco()["annotations"], ds, "c.json")
    assert anns[0].bbox == (2.0, 1.0, 4.0, 3.0) and anns[0].segmentation == rle()
    assert anns[1].segmentation["size"] == [H, W]


def mutated(change) -> dict:
    d = copy.deepcopy(coco())
    change(d)
    return d


@pytest.mark.parametrize("change,message", [
    (lambda d: d["images"][0].update(height=-1), r"images\[0\]\.height: must be >= 1"),
    (lambda d: d["images"][0].update(width="8"), r"images\[0\]\.width: must be an integer"),
    (lambda d: d["images"][1].update(id=1), r"images\[1\]: duplicate image id 1"),
    (lambda d: d["images"][0].update(file_name="../x/1.jpg"), r"images\[0\]\.file_name: must be a relative path"),
    (lambda d: d.pop("images"), r"missing or invalid top-level list 'images'"),
])
def test_invalid_images(change, message):
    with pytest.raises(FormatError, match=message):
        parse_coco_dataset(mutated(change), "c.json")


@pytest.mark.parametrize("change,message", [
    (lambda d: d["images"][0].update(file_name="cam/2.jpg"), r"images\[1\]: file name 'cam/2.jpg' is also images\[0\]"),
    (lambda d: d["images"][0].update(height=H + 1), r"images of video 'cam' have different sizes"),
    (lambda d: d["images"][1].update(video_id=7, frame_index=0), r"frame 0 of the video is also images\[1\]"),
    (lambda d: d["images"][0].update(file_name="other/cam/1.jpg"), r"a second video named 'cam'"),
])
def test_videos_that_cannot_be_formed(change, message):
    with pytest.raises(FormatError, match=message):
        parse_coco_dataset(mutated(change), "c.json").videos()


@pytest.mark.parametrize("change,message", [
    (lambda a: a.update(image_id=99), r"annotations\[0\]: image_id 99 is not in the images list"),
    (lambda a: a.update(category_id=5), r"annotations\[0\]: unknown category_id 5"),
    (lambda a: a.update(bbox=[0, 0, -1, 2]), r"annotations\[0\]\.bbox: 'bbox' has a negative width"),
    (lambda a: a.update(bbox=[0, 0, float("inf"), 2]), r"annotations\[0\]\.bbox: 'bbox' must be"),
    (lambda a: a.update(segmentation=[[0, 0, 1e300, 0, 3, 3]]), r"annotations\[0\]\.segmentation\[0\]: polygon x"),
    (lambda a: a["segmentation"].update(counts="garbage~"), r"annotations\[0\]\.segmentation\.counts: compressed"),
    (lambda a: a["segmentation"].update(size=[H, W + 1]), r"annotations\[0\]\.segmentation: RLE size"),
    (lambda a: a.update(iscrowd=2), r"annotations\[0\]\.iscrowd"),
    (lambda a: a.pop("segmentation"), r"annotations\[0\]: missing key\(s\) 'segmentation'"),
])
def test_invalid_annotations(change, message):
    d = coco()
    change(d["annotations"][0])
    ds = parse_coco_dataset(d, "c.json")
    with pytest.raises(FormatError, match=message):
        parse_coco_annotations(d["annotations"], ds, "c.json")


def test_results_need_a_finite_score():
    ds = parse_coco_dataset(coco(), "c.json")
    with pytest.raises(FormatError, match=r"r\.json: \[0\]: missing key\(s\) 'score'"):
        parse_coco_annotations([{"image_id": 1, "category_id": 1, "segmentation": rle()}], ds, "r.json", results=True)
    with pytest.raises(FormatError, match=r"r\.json: \[0\]\.score: must be a finite number"):
        parse_coco_annotations([{"image_id": 1, "category_id": 1, "segmentation": rle(), "score": None}], ds,
                               "r.json", results=True)
