"""Loading detectron2-format CutLER checkpoints: key mapping, strictness, variants."""
from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from uvis.errors import BadInputError
from uvis.proposers.cutler import CheckpointError, CutlerNet, load_checkpoint_file, load_cutler
from uvis.proposers.cutler.checkpoint import (
    convert_detectron2_state_dict,
    detectron2_key,
    map_key,
    num_stages_of,
    unwrap_checkpoint,
)
from uvis.proposers.cutler.config import CutlerConfig
from uvis.proposers.cutler.testing import recipe_state_dict, write_recipe_checkpoint

FIXTURES = Path(__file__).resolve().parents[1].parent / "shared" / "fixtures" / "cutler-ref"
MANIFEST = FIXTURES / "dev_astronaut.json"


@pytest.fixture(scope="module")
def cascade_sd() -> dict[str, torch.Tensor]:
    if not MANIFEST.is_file():
        pytest.fail(f"reference fixture missing: {MANIFEST}")
    return recipe_state_dict(MANIFEST)


@pytest.fixture(scope="module")
def expected() -> dict[str, torch.Size]:
    return {k: v.shape for k, v in CutlerNet().state_dict().items()}


def mrcnn_from_cascade(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A one-stage (cutler_mrcnn_final-style) state dict: stage 0's box head, unindexed."""
    out = {}
    for key, value in sd.items():
        m = re.match(r"roi_heads\.(box_head|box_predictor)\.(\d)\.(.*)", key)
        if m is None:
            out[key] = value
        elif m.group(2) == "0":
            out[f"roi_heads.{m.group(1)}.{m.group(3)}"] = value
    return out


def test_every_manifest_key_maps_one_to_one(expected: dict[str, torch.Size]) -> None:
    manifest = json.loads(MANIFEST.read_text())["manifest"]
    assert len(manifest) == 408
    targets = set()
    for key, shape, _dtype in manifest:
        target = map_key(key)
        assert target in expected, key
        assert tuple(expected[target]) == tuple(shape), key
        assert detectron2_key(target, 3) == key
        targets.add(target)
    assert targets == set(expected), "the network has parameters no checkpoint key fills"


def test_missing_unused_and_misshaped_keys_are_all_listed(
    cascade_sd: dict[str, torch.Tensor], expected: dict[str, torch.Size]
) -> None:
    sd = dict(cascade_sd)
    del sd["backbone.bottom_up.res3.2.conv2.norm.running_var"]
    sd["roi_heads.keypoint_head.fcn1.weight"] = torch.zeros(3)
    sd["roi_heads.box_predictor.1.cls_score.weight"] = torch.zeros(81, 1024)
    with pytest.raises(CheckpointError) as info:
        convert_detectron2_state_dict(sd, expected)
    msg = str(info.value)
    assert "1 unused key(s): roi_heads.keypoint_head.fcn1.weight" in msg
    assert "1 missing key(s): backbone.bottom_up.res3.2.conv2.norm.running_var" in msg
    assert "roi_heads.box_predictor.1.cls_score.weight: checkpoint (81, 1024) vs network (2, 1024)" in msg
    assert isinstance(info.value, BadInputError)


def test_load_cutler_is_strict(cascade_sd: dict[str, torch.Tensor]) -> None:
    sd = dict(cascade_sd)
    sd.pop("roi_heads.mask_head.deconv.bias")
    with pytest.raises(CheckpointError, match="roi_heads.mask_head.deconv.bias"):
        load_cutler(sd)


def test_official_wrapper_and_weights_only_file(tmp_path: Path, cascade_sd: dict[str, torch.Tensor]) -> None:
    path = write_recipe_checkpoint(tmp_path / "cutler_recipe.pth", MANIFEST, seed=7)
    loaded = load_checkpoint_file(path)
    assert set(loaded) == set(cascade_sd)
    assert torch.equal(loaded["roi_heads.box_head.2.fc1.weight"], cascade_sd["roi_heads.box_head.2.fc1.weight"])
    # detectron2 training checkpoints carry trainer state next to "model"
    assert set(unwrap_checkpoint({"model": cascade_sd, "iteration": 7})) == set(cascade_sd)
    model = load_cutler({"model": cascade_sd})
    assert model.config.num_stages == 3 and not model.training


def test_unsafe_pickle_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "evil.pth"
    torch.save({"model": argparse.Namespace(payload="arbitrary object")}, path)  # not allowed by weights_only
    with pytest.raises(CheckpointError, match="weights_only"):
        load_checkpoint_file(path)
    with pytest.raises(BadInputError, match="not found"):
        load_checkpoint_file(tmp_path / "absent.pth")


def test_one_stage_mask_rcnn_checkpoint(cascade_sd: dict[str, torch.Tensor]) -> None:
    sd = mrcnn_from_cascade(cascade_sd)
    assert num_stages_of(sd) == 1 and num_stages_of(cascade_sd) == 3
    model = load_cutler(sd, min_size=64)
    assert model.config.num_stages == 1
    assert model.config.bbox_reg_weights == CutlerConfig.mask_rcnn().bbox_reg_weights
    image = np.random.default_rng(0).integers(0, 256, (64, 96, 3), dtype=np.uint8)
    inst = model.detect(image, score_threshold=0.0)
    assert inst.image_size == (64, 96) and 0 < len(inst) <= 100
    # stage 0 of the cascade + no averaging: the scores equal the cascade's first-stage probabilities,
    # so they differ from the cascade's (averaged) ones
    cascade = load_cutler(cascade_sd, min_size=64).detect(image, score_threshold=0.0)
    assert not np.allclose(np.sort(inst.objectness), np.sort(cascade.objectness)[: len(inst)])


def test_checkpoint_normalisation_buffers_are_used(cascade_sd: dict[str, torch.Tensor]) -> None:
    sd = dict(cascade_sd)
    sd["pixel_mean"] = torch.tensor([1.0, 2.0, 3.0]).view(3, 1, 1)
    sd["pixel_std"] = torch.tensor([4.0, 5.0, 6.0]).view(3, 1, 1)
    model = load_cutler(sd)
    assert model.config.pixel_mean == (1.0, 2.0, 3.0)
    assert model.pixel_std.flatten().tolist() == [4.0, 5.0, 6.0]


def test_fused_batch_norm_gives_the_same_outputs(cascade_sd: dict[str, torch.Tensor]) -> None:
    image = torch.from_numpy(np.random.default_rng(1).integers(0, 256, (3, 96, 128), dtype=np.uint8))
    plain = load_cutler(cascade_sd, fuse_bn=False, channels_last=False)
    fused = load_cutler(cascade_sd)
    with torch.inference_mode():
        a = plain.features(plain.preprocess([image])[0])
        b = fused.features(fused.preprocess([image])[0])
    for fa, fb in zip(a, b):
        assert (fa - fb).abs().max().item() < 1e-3


def test_not_a_cutler_checkpoint() -> None:
    with pytest.raises(CheckpointError, match="box_predictor"):
        load_cutler({"backbone.bottom_up.stem.conv1.weight": torch.zeros(64, 3, 7, 7)})
    with pytest.raises(CheckpointError, match="not a CutLER checkpoint"):
        unwrap_checkpoint([1, 2, 3])
