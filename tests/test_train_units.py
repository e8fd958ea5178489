"""Small pieces of the training side: batch sampler (determinism, sharding), resize rule,
config validation, YouTube-VIS training samples, the criterion on a batch without targets."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from uvis.errors import ConfigError
from uvis.masks import encode
from uvis.vis.criterion import SetCriterion
from uvis.vis.matcher import HungarianMatcher
from uvis.vis.points import GridPoints, RandomPoints, torch_rand
from uvis.vis.train_config import TrainConfig, preset
from uvis.vis.train_data import Augment, IterationSampler, from_ytvis, shortest_edge_size


def test_sampler_is_a_function_of_seed_and_iteration():
    full = list(IterationSampler(7, 4, seed=3, start=0, end=6))
    resumed = list(IterationSampler(7, 4, seed=3, start=4, end=6))
    assert resumed == full[4:]
    # every epoch is a permutation of the samples
    flat = [i for batch in full for i, _ in batch]
    assert sorted(flat[:7]) == list(range(7)) and sorted(flat[7:14]) == list(range(7))
    # two ranks take disjoint halves of the same global batch
    r0 = list(IterationSampler(7, 4, seed=3, start=0, end=6, rank=0, world=2))
    r1 = list(IterationSampler(7, 4, seed=3, start=0, end=6, rank=1, world=2))
    for g, a, b in zip(full, r0, r1):
        assert sorted(a + b) == sorted(g) and len(a) == len(b) == 2
    assert list(IterationSampler(7, 4, seed=4, start=0, end=6)) != full


def test_shortest_edge_rule_matches_detectron2():
    # detectron2 ResizeShortestEdge: scale the short side, cap the long side, int(x + 0.5)
    assert shortest_edge_size(576, 768, 360, 1333) == (360, 480)
    assert shortest_edge_size(288, 384, 480, 1333) == (480, 640)
    assert shortest_edge_size(100, 1000, 480, 1333) == (133, 1333)
    img = np.zeros((288, 384, 3), np.uint8)
    masks = np.zeros((1, 288, 384), np.uint8)
    masks[0, :, :10] = 1
    rng = np.random.default_rng(0)
    seen_flip = set()
    for _ in range(20):
        out, m = Augment((360, 480), 1333, 0.5)(img, masks, rng)
        assert out.shape[0] in (360, 480) and m.shape[1:] == out.shape[:2]
        seen_flip.add(bool(m[0, :, -1].any()))
    assert seen_flip == {True, False}


def test_train_config_validation_and_presets():
    assert TrainConfig().batch_size == 16 and TrainConfig().steps == (4000,) and TrainConfig().clip_norm == 0.01
    tiny = preset("tiny")
    assert tiny.model["dec_layers"] == 2 and tiny.model["num_queries"] == 16 and tiny.model["hidden_dim"] == 64
    with pytest.raises(ConfigError, match="train.steps"):
        TrainConfig(steps=(10, 5))
    with pytest.raises(ConfigError, match="num_classes"):
        TrainConfig(model={"num_classes": 3})
    with pytest.raises(ConfigError, match="unknown training config"):
        TrainConfig.from_dict({"lr_typo": 1})
    merged = TrainConfig.from_dict({"model": {"num_queries": 8}}, base=tiny)
    assert merged.model["num_queries"] == 8 and merged.model["dec_layers"] == 2


def test_samples_from_ytvis(tmp_path):
    import cv2

    frames = tmp_path / "frames" / "v1"
    frames.mkdir(parents=True)
    for t in range(3):
        cv2.imwrite(str(frames / f"{t:05d}.jpg"), np.full((20, 30, 3), 40 * t, np.uint8))
    m = np.zeros((20, 30), np.uint8)
    m[5:10, 5:15] = 1
    gt = {"videos": [{"id": 4, "width": 30, "height": 20, "length": 3,
                      "file_names": [f"v1/{t:05d}.jpg" for t in range(3)]}],
          "categories": [{"id": 9, "name": "dog"}, {"id": 2, "name": "cat"}],
          "annotations": [{"id": 1, "video_id": 4, "category_id": 9, "segmentations": [encode(m), None, encode(m)]},
                          {"id": 2, "video_id": 4, "category_id": 2, "iscrowd": 1,
                           "segmentations": [encode(m), encode(m), None]}]}
    path = tmp_path / "gt.json"
    path.write_text(json.dumps(gt))
    data = from_ytvis(path, tmp_path / "frames")
    assert data.classes == ["cat", "dog"]  # category id order
    assert [s.labels for s in data.samples] == [(1,), (), (1,)]  # the crowd track is skipped
    with pytest.raises(Exception, match="not found"):
        from_ytvis(path, tmp_path)


def test_batch_without_targets_gives_zero_mask_terms_with_gradients():
    torch.manual_seed(0)
    logits = torch.randn(2, 5, 4, requires_grad=True)
    masks = torch.randn(2, 5, 8, 8, requires_grad=True)
    outputs = {"pred_logits": logits, "pred_masks": masks,
               "aux_outputs": [{"pred_logits": logits * 1.0, "pred_masks": masks * 1.0}]}
    empty = {"labels": torch.zeros(0, dtype=torch.long), "masks": torch.zeros(0, 32, 32)}
    crit = SetCriterion(3, HungarianMatcher(num_points=64))
    res = crit(outputs, [empty, empty], RandomPoints(torch_rand(torch.Generator().manual_seed(0))))
    assert res.unweighted["loss_mask"].item() == 0.0 and res.unweighted["loss_dice_0"].item() == 0.0
    # every query is "no object": CE = -log softmax[no object], the weighted mean over all queries
    expected = -torch.log_softmax(logits, -1)[..., 3].mean()
    assert torch.allclose(res.unweighted["loss_ce"], expected)
    res.total.backward()
    assert masks.grad is not None and logits.grad is not None


def test_grid_points_need_a_square_count():
    with pytest.raises(ValueError, match="square"):
        GridPoints().matcher_points(1000, torch.device("cpu"))
