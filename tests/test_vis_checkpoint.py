"""Checkpoint loading: strict converter, inferred architecture, CutLER backbone, .pkl files, registry."""
from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from uvis import weights
from uvis.proposers.cutler.testing import recipe_state_dict
from uvis.vis.checkpoint import (CheckpointError, config_for_state_dict, cutler_backbone_state_dict, load_backbone,
                                 load_checkpoint_file)
from uvis.vis.config import MinVISConfig
from uvis.vis.model import build_minvis, load_minvis


@pytest.fixture(scope="module")
def small_sd() -> dict[str, torch.Tensor]:
    """A small random model's state dict (7 classes, 10 queries, 2 decoder and 1 encoder layer)."""
    torch.manual_seed(0)
    cfg = MinVISConfig(num_classes=7, num_queries=10, dec_layers=2, enc_layers=1, dim_feedforward=64,
                       enc_dim_feedforward=32, hidden_dim=64, mask_dim=32, nheads=4)
    return build_minvis(cfg).state_dict()


def test_architecture_is_read_from_the_state_dict(small_sd: dict[str, torch.Tensor]) -> None:
    cfg = config_for_state_dict(small_sd, MinVISConfig(nheads=4))
    assert (cfg.num_classes, cfg.num_queries, cfg.hidden_dim, cfg.mask_dim) == (7, 10, 64, 32)
    assert (cfg.dec_layers, cfg.enc_layers, cfg.dim_feedforward, cfg.enc_dim_feedforward, cfg.enc_n_points) == (
        2, 1, 64, 32, 4)
    model = load_minvis({"model": small_sd}, cfg=MinVISConfig(nheads=4))
    assert not model.training
    for key, value in model.state_dict().items():
        assert torch.equal(value, small_sd[key]), key  # loaded exactly, criterion.empty_weight included
    assert float(model.state_dict()["criterion.empty_weight"][-1]) == pytest.approx(0.1)


def test_forward_shapes_and_frozen_backbone(small_sd: dict[str, torch.Tensor]) -> None:
    model = load_minvis(small_sd, cfg=MinVISConfig(nheads=4))
    assert all(not p.requires_grad for p in model.backbone.parameters())
    assert all(p.requires_grad for p in model.sem_seg_head.parameters())
    frames = [np.full((70, 90, 3), 100, np.uint8), np.zeros((64, 96, 3), np.uint8)]
    images, sizes = model.preprocess(frames)
    assert images.shape == (2, 3, 96, 96) and sizes == [(70, 90), (64, 96)]
    assert float(images[0, :, 80:].abs().max()) == 0.0  # zero padding after normalisation
    with torch.no_grad():
        out = model(images)
    assert out["pred_logits"].shape == (2, 10, 8)
    assert out["pred_masks"].shape == (2, 10, 24, 24)
    assert out["pred_embds"].shape == (2, 10, 64)
    assert len(out["aux_outputs"]) == 2 and out["aux_outputs"][0]["pred_masks"].shape == (2, 10, 24, 24)
    one = model.frame_outputs(np.full((70, 90, 3), 100, np.uint8), resize=False)
    torch.testing.assert_close(one["pred_logits"], out["pred_logits"][0], atol=1e-4, rtol=1e-4)
    assert one["image_size"] == (70, 90) and one["padded_size"] == (96, 96)
    resized = model.frame_outputs(np.zeros((100, 200, 3), np.uint8))
    assert resized["image_size"] == (360, 720) and resized["pred_masks"].shape == (10, 96, 184)  # 384x736 padded


def test_wrong_keys_are_listed(small_sd: dict[str, torch.Tensor]) -> None:
    bad = dict(small_sd)
    bad.pop("sem_seg_head.pixel_decoder.mask_features.bias")
    bad["sem_seg_head.predictor.static_extra"] = torch.zeros(1)
    with pytest.raises(CheckpointError, match=r"unused key\(s\): sem_seg_head.predictor.static_extra.*missing key"
                                              r"\(s\): sem_seg_head.pixel_decoder.mask_features.bias"):
        load_minvis(bad, cfg=MinVISConfig(nheads=4))
    with pytest.raises(CheckpointError, match="class_embed"):
        load_minvis({"backbone.stem.conv1.weight": torch.zeros(64, 3, 7, 7)})


def test_old_static_query_name_and_ignored_buffers(small_sd: dict[str, torch.Tensor]) -> None:
    old = {k.replace("query_feat", "static_query"): v for k, v in small_sd.items()}
    old["pixel_mean"] = torch.zeros(3, 1, 1)
    model = load_minvis(old, cfg=MinVISConfig(nheads=4))
    key = "sem_seg_head.predictor.query_feat.weight"
    assert torch.equal(model.sem_seg_head.predictor.query_feat.weight, small_sd[key])


def test_detectron2_pickle_and_unsafe_pickles(tmp_path: Path, small_sd: dict[str, torch.Tensor]) -> None:
    path = tmp_path / "model_final.pkl"
    with open(path, "wb") as fh:
        pickle.dump({"model": {k: v.numpy() for k, v in small_sd.items()}, "__author__": "test"}, fh)
    sd = load_checkpoint_file(path)
    assert set(sd) == set(small_sd) and isinstance(sd["criterion.empty_weight"], np.ndarray)
    load_minvis(sd, cfg=MinVISConfig(nheads=4))
    evil = tmp_path / "evil.pkl"
    with open(evil, "wb") as fh:
        pickle.dump({"model": {"x": Path("/")}}, fh)
    with pytest.raises(CheckpointError, match="refusing to load pathlib"):
        load_checkpoint_file(evil)
    pth = tmp_path / "m.pth"
    torch.save({"model": small_sd, "iteration": 5}, pth)
    assert set(load_checkpoint_file(pth)) == set(small_sd)


def test_cutler_backbone_maps_onto_the_resnet(shared_fixtures: Path, tmp_path: Path) -> None:
    """CutLER's backbone.bottom_up.* weights give the same res2..res5 as the CutLER port's own ResNet."""
    from uvis.proposers.cutler.checkpoint import convert_detectron2_state_dict
    from uvis.proposers.cutler.model import CutlerNet
    from uvis.proposers.cutler.testing import write_recipe_checkpoint
    from uvis.vis.checkpoint import load_cutler_backbone

    manifest = shared_fixtures / "cutler-ref" / "dev_astronaut.json"
    cutler_sd = recipe_state_dict(manifest)
    model = build_minvis(MinVISConfig(backbone="cutler", num_queries=10, dec_layers=1, enc_layers=1)).eval()
    load_cutler_backbone(model, write_recipe_checkpoint(tmp_path / "cutler.pth", manifest))
    torch.testing.assert_close(model.backbone.res3[0].conv2.norm.running_var,
                               cutler_sd["backbone.bottom_up.res3.0.conv2.norm.running_var"])
    load_backbone(model, cutler_backbone_state_dict({"model": cutler_sd}))
    cutler = CutlerNet()
    expected = {k: v.shape for k, v in cutler.state_dict().items()}
    cutler.load_state_dict(convert_detectron2_state_dict(cutler_sd, expected), strict=True)
    cutler.eval()
    x = torch.randn(1, 3, 64, 96, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ours = model.backbone(x)
        theirs = cutler.backbone.body(x)
    for name, ref in zip(("res2", "res3", "res4", "res5"), theirs):
        torch.testing.assert_close(ours[name], ref, rtol=1e-4, atol=1e-4 * float(ref.abs().max()))
    with pytest.raises(CheckpointError, match="no backbone.bottom_up"):
        cutler_backbone_state_dict({"model": {"roi_heads.x": torch.zeros(1)}})


def test_registry_entries_say_the_licence() -> None:
    for name, classes in (("minvis_ytvis19_R50", 40), ("minvis_ytvis21_R50", 40), ("minvis_ovis_R50", 25)):
        entry = weights.lookup(name)
        assert entry is not None and entry.filename == name + ".pth"
        assert entry.license == "NVIDIA-Source-Code-License-NC" and "non-commercial" in entry.notice
        assert entry.url.startswith("https://huggingface.co/deahuang/MinVIS-Model-Zoo/resolve/main/")
        assert f"{classes} classes" in entry.description
    m2f = weights.lookup("mask2former_coco_instance_R50")
    assert m2f is not None and m2f.url.endswith("model_final_3c8ec9.pkl") and m2f.license == "MIT"


def test_config_validation() -> None:
    from uvis.errors import ConfigError

    with pytest.raises(ConfigError, match="vis.backbone"):
        MinVISConfig(backbone="vit")
    with pytest.raises(ConfigError, match="vis.num_queries"):
        MinVISConfig(num_queries=0)
    with pytest.raises(ConfigError, match="divisible"):
        MinVISConfig(nheads=7)
    cfg = MinVISConfig(test_short_side=480)
    assert MinVISConfig.from_dict(cfg.to_dict()) == cfg
