"""COCO export: loads with pycocotools, masks equal the source, frames on disk, round trip."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from test_export_common import assert_same_table, build_workspace, decide

from uvis.cli import main
from uvis.errors import BadInputError
from uvis.export.coco import export_coco
from uvis.export.importers import read_coco_instances, read_coco_predictions
from uvis.masks import decode


@pytest.fixture(scope="module")
def workspace_dir(tmp_path_factory):
    """The shared test workspace (two videos, curated), built once per module."""
    return build_workspace(tmp_path_factory.mktemp("ws"), videos=("alpha", "beta"))


@pytest.fixture(scope="module")
def coco_export(workspace_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("coco")
    results = decide(workspace_dir)
    return results, export_coco(results, out)


def test_pycocotools_loads_it_and_masks_equal_the_source(coco_export):
    results, path = coco_export
    coco = COCO(str(path))
    assert sorted(coco.getCatIds()) == [1, 2, 3]
    n_frames = sum(r.info.num_frames for r in results.values())
    assert len(coco.getImgIds()) == n_frames
    assert len(coco.getAnnIds()) == sum(int(r.kept.sum()) for r in results.values())
    first_image = 1
    for name, r in results.items():
        labels = {t.track_id: t.label for t in r.tracks}
        inst = r.instances
        for row in np.flatnonzero(r.kept):
            t = int(inst.frame[row])
            img_id = first_image + t
            img = coco.loadImgs(img_id)[0]
            assert img["file_name"] == f"{name}/{t:05d}.jpg" and (img["width"], img["height"]) == (75, 45)
            anns = coco.loadAnns(coco.getAnnIds(imgIds=img_id))
            ann = next(a for a in anns if a["uvis"]["proposal_index"] == row - np.searchsorted(inst.frame, t))
            assert np.array_equal(coco.annToMask(ann).astype(bool), decode(inst.masks[row]))
            # a person's class wins (the relabel to cow); other instances take their track's class
            expected = inst.label[row] if r.user[row] else labels[int(inst.track_id[row])]
            assert ann["category_id"] == expected + 1
            assert ann["area"] == int(decode(inst.masks[row]).sum())
            x, y, w, h = ann["bbox"]
            ys, xs = np.nonzero(decode(inst.masks[row]))
            assert (x, y, x + w, y + h) == (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
        first_image += r.info.num_frames


def test_images_are_written_beside_the_json(coco_export):
    results, path = coco_export
    data = json.loads(path.read_text())
    root = path.parent / "images"
    for img in data["images"]:
        f = root / img["file_name"]
        im = cv2.imread(str(f))
        assert im is not None and im.shape == (img["height"], img["width"], 3)
    assert sorted(p.name for p in root.iterdir()) == sorted(results)


def test_round_trip_is_exact(coco_export):
    results, path = coco_export
    back = read_coco_instances(path)
    assert list(back) == list(results)
    for name, r in results.items():
        assert_same_table(r, back[name], np.flatnonzero(r.kept))
        assert back[name].info == r.info and back[name].config == r.config.to_dict()


def test_foreign_coco_with_polygons_and_results(tmp_path):
    data = {
        "images": [{"id": 10, "file_name": "clip/f2.jpg", "width": 12, "height": 9},
                   {"id": 11, "file_name": "clip/f10.jpg", "width": 12, "height": 9},
                   {"id": 12, "file_name": "other/0.jpg", "width": 5, "height": 4}],
        "categories": [{"id": 3, "name": "owl"}, {"id": 1, "name": "fox"}],
        "annotations": [{"id": 100, "image_id": 11, "category_id": 3, "segmentation": [[1, 1, 6, 1, 6, 5, 1, 5]],
                         "bbox": [1, 1, 5, 4], "iscrowd": 0, "area": 20}],
    }
    ann = tmp_path / "ann.json"
    ann.write_text(json.dumps(data))
    got = read_coco_instances(ann)
    assert set(got) == {"clip", "other"}
    clip = got["clip"]
    assert clip.info.num_frames == 2 and clip.info.frame_names == ("f2.jpg", "f10.jpg")  # natural order
    assert clip.instances.frame.tolist() == [1] and clip.vocabulary == ["fox", "owl"]
    assert clip.instances.label.tolist() == [1] and clip.instances.track_id.tolist() == [100]
    poly = mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects([[1, 1, 6, 1, 6, 5, 1, 5]], 9, 12)))
    assert np.array_equal(decode(clip.instances.masks[0]), poly.astype(bool))
    m = np.zeros((9, 12), np.uint8)
    m[0:3, 0:4] = 1
    rle = mask_utils.encode(np.asfortranarray(m))
    res = [{"image_id": 10, "category_id": 1, "score": 0.25, "segmentation": {"size": [9, 12],
                                                                               "counts": rle["counts"].decode()}}]
    (tmp_path / "res.json").write_text(json.dumps(res))
    pred = read_coco_predictions(tmp_path / "res.json", ann)["clip"]
    assert pred.instances.clip_score.tolist() == [0.25] and pred.instances.frame.tolist() == [0]
    assert np.array_equal(decode(pred.instances.masks[0]), m.astype(bool))
    assert len(read_coco_predictions(tmp_path / "res.json", ann)["other"].instances) == 0


def test_coco_errors_name_the_place(coco_export, tmp_path):
    _, path = coco_export
    data = json.loads(path.read_text())
    data["annotations"][4]["category_id"] = 42
    bad = tmp_path / "cat.json"
    bad.write_text(json.dumps(data))
    with pytest.raises(BadInputError, match=r"annotations\[4\]: unknown category_id 42"):
        read_coco_instances(bad)
    data = json.loads(path.read_text())
    seg = data["annotations"][2]["segmentation"]
    data["annotations"][2]["segmentation"] = {"size": [45, 80], "counts": seg["counts"]}
    bad.write_text(json.dumps(data))
    with pytest.raises(BadInputError, match=r"annotations\[2\]\.segmentation: RLE size \[45, 80\] does not match"):
        read_coco_instances(bad)
    data = json.loads(path.read_text())
    data["annotations"][0]["image_id"] = 99999
    bad.write_text(json.dumps(data))
    with pytest.raises(BadInputError, match=r"annotations\[0\]: image_id 99999 is not in"):
        read_coco_instances(bad)
    bad.write_text("[1, 2")
    with pytest.raises(BadInputError, match="malformed JSON"):
        read_coco_instances(bad)


def test_cli_coco(workspace_dir, tmp_path):
    out = tmp_path / "coco"
    assert main(["export", "--workspace", str(workspace_dir), "--to", "coco", "--out", str(out), "--quiet"]) == 0
    coco = COCO(str(out / "annotations.json"))
    assert len(coco.getImgIds()) == 24 and (out / "images" / "alpha" / "00011.jpg").is_file()
    assert main(["export", "--workspace", str(workspace_dir), "--to", "coco", "--out", str(out),
                 "--results", str(tmp_path / "r.json")]) == 2  # --results is for ytvis
    assert Path(out / "annotations.json").is_file()
