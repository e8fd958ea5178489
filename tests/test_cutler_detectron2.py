"""The optional detectron2 backend: output conversion, config, and the missing-package error."""
from __future__ import annotations

import importlib.util
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from uvis import masks as mask_ops
from uvis.errors import MissingDependencyError
from uvis.proposers.cutler.config import CutlerConfig
from uvis.proposers.cutler.detectron2_backend import (
    Detectron2CutlerProposer,
    detectron2_config_overrides,
    instances_from_detectron2,
)


def fake_detectron2_instances(h: int = 24, w: int = 32) -> SimpleNamespace:
    """An object with the fields of detectron2's post-processed ``Instances``."""
    masks = torch.zeros(3, h, w, dtype=torch.bool)
    masks[0, 2:10, 3:12] = True
    masks[1, 12:20, 16:30] = True  # third mask empty
    boxes = torch.tensor([[3.0, 2.0, 12.0, 10.0], [16.0, 12.0, 30.0, 20.0], [0.5, 0.5, 1.5, 1.5]])
    return SimpleNamespace(
        image_size=(h, w), pred_boxes=SimpleNamespace(tensor=boxes),
        scores=torch.tensor([0.9, 0.8, 0.1]), pred_masks=masks, pred_classes=torch.zeros(3, dtype=torch.int64),
    )


def test_instances_from_detectron2_fields() -> None:
    d2 = fake_detectron2_instances()
    inst = instances_from_detectron2(d2, t=4)
    assert inst.image_size == (24, 32) and len(inst) == 3
    np.testing.assert_array_equal(inst.boxes, d2.pred_boxes.tensor.numpy())
    np.testing.assert_allclose(inst.objectness, [0.9, 0.8, 0.1])
    assert (inst.frame == 4).all()
    for rle, dense in zip(inst.masks, d2.pred_masks.numpy()):
        assert isinstance(rle["counts"], str)
        np.testing.assert_array_equal(mask_ops.decode(rle), dense)


def test_instances_from_detectron2_plain_tensors_and_empty() -> None:
    d2 = fake_detectron2_instances()
    d2.pred_boxes = d2.pred_boxes.tensor  # a bare tensor works too
    d2.pred_masks = d2.pred_masks[:, None].to(torch.uint8)  # (N, 1, H, W) uint8
    assert len(instances_from_detectron2(d2)) == 3
    empty = SimpleNamespace(image_size=(5, 6), pred_boxes=torch.zeros(0, 4), scores=torch.zeros(0),
                            pred_masks=torch.zeros(0, 5, 6, dtype=torch.bool))
    out = instances_from_detectron2(empty)
    assert len(out) == 0 and out.image_size == (5, 6)


def test_config_overrides_describe_cutler() -> None:
    cascade = detectron2_config_overrides(CutlerConfig(), min_size=480, max_size=1333, score_threshold=0.0,
                                          device="cpu")
    cfg = dict(zip(cascade[::2], cascade[1::2]))
    assert cfg["MODEL.ROI_HEADS.NAME"] == "CascadeROIHeads"
    assert cfg["MODEL.ROI_BOX_CASCADE_HEAD.BBOX_REG_WEIGHTS"] == [[10, 10, 5, 5], [20, 20, 10, 10], [30, 30, 15, 15]]
    assert cfg["MODEL.RESNETS.STRIDE_IN_1X1"] is False and cfg["MODEL.FPN.NORM"] == "BN"
    assert cfg["MODEL.RPN.NMS_THRESH"] == 0.65 and cfg["MODEL.RPN.POST_NMS_TOPK_TEST"] == 1000
    assert cfg["MODEL.ROI_BOX_HEAD.CLS_AGNOSTIC_BBOX_REG"] is True
    assert cfg["INPUT.MIN_SIZE_TEST"] == 480 and cfg["INPUT.FORMAT"] == "RGB"
    one = detectron2_config_overrides(CutlerConfig.mask_rcnn(), min_size=800, max_size=1333, score_threshold=0.1,
                                      device="cpu")
    cfg1 = dict(zip(one[::2], one[1::2]))
    assert cfg1["MODEL.ROI_HEADS.NAME"] == "StandardROIHeads"
    assert "MODEL.ROI_BOX_CASCADE_HEAD.BBOX_REG_WEIGHTS" not in cfg1


@pytest.mark.skipif(importlib.util.find_spec("detectron2") is not None, reason="detectron2 is installed here")
def test_missing_detectron2_names_the_install_command(tmp_path) -> None:
    with pytest.raises(MissingDependencyError, match="pip install .*detectron2"):
        Detectron2CutlerProposer(tmp_path / "any.pth")
