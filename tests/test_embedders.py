"""Embedders: crop geometry, tiny random CLIP, EfficientNet-Lite0 weights, offline errors."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from uvis import masks as mask_utils
from uvis import netcheck
from uvis.config import EmbedderConfig
from uvis.embedders.base import Embedder
from uvis.embedders.crops import GREY, crop_boxes, crop_images, crop_windows, to_model_input
from uvis.errors import BadInputError, ConfigError, MissingWeightsError, UvisError

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    """Small models run fastest on one thread, and far faster when other jobs share the CPU."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _frame(h: int = 120, w: int = 160, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)


def _rect_rle(h: int, w: int, x1: int, y1: int, x2: int, y2: int):
    m = np.zeros((h, w), dtype=bool)
    m[y1:y2, x1:x2] = True
    return mask_utils.encode(m)


# ---------------------------------------------------------------- crop geometry
def test_crop_windows_padding_and_clipping():
    boxes = np.array(
        [
            [40, 40, 60, 80],  # w 20, h 40 -> +2 px left/right, +4 px top/bottom
            [-10, -10, 20, 20],  # outside top-left: clipped to 0
            [150, 100, 170, 130],  # beyond bottom-right: clipped to frame edge
        ],
        dtype=np.float32,
    )
    win = crop_windows(boxes, (120, 160), padding=0.1)
    assert win.tolist() == [[38, 36, 62, 84], [0, 0, 23, 23], [148, 97, 160, 120]]
    assert crop_windows(boxes[:1], (120, 160), padding=0.0).tolist() == [[40, 40, 60, 80]]


def test_crop_windows_degenerate_boxes_are_one_pixel():
    boxes = np.array([[50, 50, 50, 50], [500, 500, 600, 600], [30, 20, 10, 5], [-9, -9, -1, -1]], np.float32)
    win = crop_windows(boxes, (120, 160), padding=0.1)
    x1, y1, x2, y2 = win.T
    assert (x2 - x1 >= 1).all() and (y2 - y1 >= 1).all()
    assert (x1 >= 0).all() and (y1 >= 0).all() and (x2 <= 160).all() and (y2 <= 120).all()
    assert win[0].tolist() == [50, 50, 51, 51]
    assert win[1].tolist() == [159, 119, 160, 120]
    crops = crop_boxes(_frame(), boxes, out_size=32)
    assert crops.shape == (4, 3, 32, 32) and torch.isfinite(crops).all()


def test_crop_padding_and_letterbox_exact_at_scale_one():
    frame = _frame()
    # padded window is 24 wide x 48 high; out 48 -> scale 1, centred horizontally
    crop = crop_images(frame, np.array([[40, 40, 60, 80]], np.float32), padding=0.1, out_size=48)[0]
    assert crop.shape == (48, 48, 3)
    np.testing.assert_array_equal(crop[:, 12:36], frame[36:84, 38:62])
    assert (crop[:, :12] == GREY).all() and (crop[:, 36:] == GREY).all()


def test_crop_downscale_keeps_aspect_ratio():
    frame = _frame(300, 400)
    # 200 wide x 100 high, no padding, out 64: content 64 x 32 at rows 16..48
    crop = crop_images(frame, np.array([[100, 50, 300, 150]], np.float32), padding=0.0, out_size=64)[0]
    expected = cv2.resize(frame[50:150, 100:300], (64, 32), interpolation=cv2.INTER_AREA)
    np.testing.assert_array_equal(crop[16:48], expected)
    assert (crop[:16] == GREY).all() and (crop[48:] == GREY).all()


def test_grey_background_changes_only_outside_mask_pixels():
    h, w = 120, 160
    frame = _frame(h, w)
    frame[frame == GREY] = 127  # so "became grey" is visible everywhere
    box = np.array([[40, 40, 72, 72]], np.float32)
    rle = _rect_rle(h, w, 40, 40, 56, 72)  # left half of the box
    plain = crop_images(frame, box, [rle], padding=0.0, out_size=32)[0]
    grey = crop_images(frame, box, [rle], padding=0.0, grey_background=True, out_size=32)[0]
    np.testing.assert_array_equal(plain, frame[40:72, 40:72])
    np.testing.assert_array_equal(grey[:, :16], plain[:, :16])  # inside the mask: untouched
    assert (grey[:, 16:] == GREY).all()  # outside: grey
    assert (plain[:, 16:] != GREY).all()


def test_grey_background_requires_matching_masks():
    frame = _frame()
    box = np.array([[10, 10, 50, 50]], np.float32)
    with pytest.raises(BadInputError, match="one mask per box"):
        crop_images(frame, box, [], grey_background=True, out_size=16)
    with pytest.raises(BadInputError, match="size"):
        crop_images(frame, box, [_rect_rle(60, 80, 0, 0, 5, 5)], grey_background=True, out_size=16)


def test_crop_input_validation():
    with pytest.raises(BadInputError, match="uint8"):
        crop_images(np.zeros((10, 10, 3), np.float32), np.zeros((0, 4)), out_size=8)
    with pytest.raises(BadInputError, match=r"\(H, W, 3\)"):
        crop_images(np.zeros((10, 10), np.uint8), np.zeros((0, 4)), out_size=8)
    with pytest.raises(BadInputError, match="NaN"):
        crop_images(_frame(), np.array([[0, 0, np.nan, 5]]), out_size=8)
    assert crop_boxes(_frame(), np.zeros((0, 4)), out_size=8).shape == (0, 3, 8, 8)


def test_to_model_input_normalises_per_channel():
    images = np.zeros((1, 2, 2, 3), np.uint8)
    images[..., 0], images[..., 1], images[..., 2] = 255, 0, 51
    x = to_model_input(images, mean=(0.5, 0.5, 0.2), std=(0.5, 0.25, 0.1))
    assert x.shape == (1, 3, 2, 2) and x.dtype == torch.float32
    np.testing.assert_allclose(x[0, :, 0, 0].numpy(), [1.0, -2.0, 0.0], atol=1e-6)


# ---------------------------------------------------------------- netcheck
def test_network_reachable_checks_tcp_and_tls_within_timeout(monkeypatch):
    for var in ("HTTPS_PROXY", "https_proxy"):
        monkeypatch.delenv(var, raising=False)
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(4)
        port = server.getsockname()[1]
        assert netcheck.network_reachable("127.0.0.1", port, timeout=1.0, tls=False)
        # accepts TCP but never completes a TLS handshake (like a firewall that accepts everything)
        t0 = time.monotonic()
        assert not netcheck.network_reachable("127.0.0.1", port, timeout=0.5, tls=True)
        assert time.monotonic() - t0 < 1.5
    assert not netcheck.network_reachable("127.0.0.1", port, timeout=1.0, tls=False)  # closed now
    assert not netcheck.network_reachable("no-such-host.invalid", 443, timeout=1.0)


def test_offline_switches(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("UVIS_OFFLINE", "true")
    assert netcheck.offline_requested() == "UVIS_OFFLINE"
    assert "UVIS_OFFLINE" in netcheck.is_offline()
    monkeypatch.setenv("UVIS_OFFLINE", "0")
    assert netcheck.offline_requested() is None
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert netcheck.offline_requested() == "HF_HUB_OFFLINE"


# ---------------------------------------------------------------- tiny CLIP
@pytest.fixture(scope="module")
def tiny():
    from uvis.embedders.testing import tiny_clip_embedder

    return tiny_clip_embedder(batch_size=4)


def _boxes() -> np.ndarray:
    return np.array(
        [[0, 0, 40, 30], [10, 20, 90, 110], [100, 5, 150, 60], [60, 60, 61, 61], [30, 30, 130, 90],
         [5, 70, 45, 118], [120, 80, 160, 120]],
        np.float32,
    )


def test_tiny_clip_embeds_normalised_rows(tiny):
    assert isinstance(tiny, Embedder)
    assert "random" in tiny.name and tiny.has_text and tiny.dim == 32
    assert tiny.logit_scale == pytest.approx(1 / 0.07, rel=1e-4)  # open_clip's init: exp(log(1/0.07))
    emb = tiny.embed_crops(_frame(), _boxes(), None)
    assert emb.shape == (7, 32) and emb.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    assert np.abs(emb[0] - emb[1]).max() > 1e-3  # different crops, different embeddings
    empty = tiny.embed_crops(_frame(), np.zeros((0, 4), np.float32), [])
    assert empty.shape == (0, 32) and empty.dtype == np.float32


def test_tiny_clip_batched_equals_one_by_one(tiny):
    frame, boxes = _frame(), _boxes()
    batched = tiny.embed_crops(frame, boxes, None)  # batches of 4, 3
    single = np.concatenate([tiny.embed_crops(frame, boxes[i : i + 1], None) for i in range(len(boxes))])
    np.testing.assert_allclose(batched, single, atol=1e-5)


def test_tiny_clip_text(tiny):
    prompts = [f"a photo of {c}" for c in ("person", "dog", "cat", "earless seal", "tennis racket", "bear")]
    text = tiny.encode_text(prompts)
    assert text.shape == (6, 32) and text.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(text, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(text[2:3], tiny.encode_text(["a photo of cat"]), atol=1e-5)
    assert np.abs(text[0] - text[1]).max() > 1e-3
    assert tiny.encode_text([]).shape == (0, 32)
    with pytest.raises(BadInputError):
        tiny.encode_text("a photo of cat")


def test_tiny_clip_random_init_is_seeded():
    from uvis.embedders.testing import tiny_clip_embedder

    frame, boxes = _frame(), _boxes()[:2]
    a, b, c = tiny_clip_embedder(), tiny_clip_embedder(), tiny_clip_embedder(seed=1)
    np.testing.assert_array_equal(a.embed_crops(frame, boxes), b.embed_crops(frame, boxes))
    assert np.abs(a.embed_crops(frame, boxes) - c.embed_crops(frame, boxes)).max() > 1e-3
    assert a.name != c.name


def test_grey_background_embedding_ignores_outside_pixels():
    from uvis.embedders.testing import tiny_clip_embedder

    h, w = 120, 160
    frame = _frame(h, w)
    other = frame.copy()
    other[40:80, 70:80] = 255 - other[40:80, 70:80]  # inside the crop window, outside the mask
    box = np.array([[40, 40, 80, 80]], np.float32)
    rle = [_rect_rle(h, w, 40, 40, 60, 80)]
    grey = tiny_clip_embedder(grey_background=True, padding=0.0)
    plain = tiny_clip_embedder(padding=0.0)
    np.testing.assert_allclose(grey.embed_crops(frame, box, rle), grey.embed_crops(other, box, rle), atol=1e-6)
    assert np.abs(plain.embed_crops(frame, box, rle) - plain.embed_crops(other, box, rle)).max() > 1e-4


def test_register_tiny_clip_idempotent_and_refuses_conflicts():
    import open_clip

    from uvis.embedders.testing import TINY_CLIP_NAME, register_tiny_clip, tiny_clip_config

    assert register_tiny_clip() == register_tiny_clip() == TINY_CLIP_NAME
    assert open_clip.list_models().count(TINY_CLIP_NAME) == 1
    assert open_clip.get_model_config(TINY_CLIP_NAME) == tiny_clip_config()
    with pytest.raises(UvisError, match="different config"):
        register_tiny_clip("ViT-B-32")


def test_local_checkpoint_path_loads_weights(tiny, tmp_path):
    from uvis.embedders.clip import ClipEmbedder

    ckpt = tmp_path / "tiny.pt"
    torch.save(tiny.model.state_dict(), ckpt)
    loaded = ClipEmbedder("uvis-tiny-vit", str(ckpt), batch_size=4)
    assert loaded.name.startswith("clip:uvis-tiny-vit:file:tiny.pt:")
    frame, boxes = _frame(), _boxes()
    np.testing.assert_allclose(loaded.embed_crops(frame, boxes), tiny.embed_crops(frame, boxes), atol=1e-6)


def test_missing_weights_offline_is_fast_and_names_the_file(monkeypatch, tmp_path):
    import open_clip

    from uvis.embedders.clip import ClipEmbedder, _find_cached

    monkeypatch.delenv("UVIS_OFFLINE", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("UVIS_CACHE", str(tmp_path))
    cfg = open_clip.get_pretrained_cfg("ViT-B-32", "openai")
    if _find_cached(cfg, tmp_path / "open_clip"):
        pytest.skip("ViT-B-32/openai weights are cached on this machine")
    t0 = time.monotonic()
    with pytest.raises(MissingWeightsError) as info:
        ClipEmbedder("ViT-B-32", "openai")
    assert time.monotonic() - t0 < 5.0
    msg = str(info.value)
    assert "timm/vit_base_patch32_clip_224.openai" in msg and "open_clip_model.safetensors" in msg
    assert "HF_HUB_OFFLINE=1 is set" in msg and "--clip-pretrained" in msg and str(tmp_path) in msg


def test_missing_local_checkpoint_and_unknown_tag(tmp_path):
    from uvis.embedders.clip import ClipEmbedder

    missing = tmp_path / "nowhere" / "clip.pt"
    with pytest.raises(MissingWeightsError, match=str(missing)):
        ClipEmbedder("uvis-tiny-vit", str(missing))
    with pytest.raises(ConfigError, match="laion2b_s34b_b79k"):
        ClipEmbedder("ViT-B-32", "no-such-tag")
    with pytest.raises(ConfigError, match="not an open_clip model"):
        ClipEmbedder("ViT-Q-99", "none")


def test_factory_builds_configured_clip():
    from uvis.embedders.factory import make_embedder

    emb = make_embedder(EmbedderConfig(clip_model="uvis-tiny-vit", clip_pretrained="none", crop_padding=0.25,
                                       batch_size=3, grey_background=True))
    assert emb.name == "clip:uvis-tiny-vit:random-seed0"
    assert (emb.padding, emb.batch_size, emb.grey_background) == (0.25, 3, True)
    with pytest.raises(ConfigError, match="embedder.backend"):
        make_embedder(EmbedderConfig(backend="resnet"))
    with pytest.raises(BadInputError, match="device"):
        make_embedder(EmbedderConfig(clip_model="uvis-tiny-vit", clip_pretrained="none", device="nonsense"))


def test_tiny_clip_by_name_in_fresh_process():
    code = (
        "from uvis.config import EmbedderConfig\n"
        "from uvis.embedders.factory import make_embedder\n"
        "e = make_embedder(EmbedderConfig(clip_model='uvis-tiny-vit', clip_pretrained='none'))\n"
        "print(e.name, e.dim, e.encode_text(['a photo of dog']).shape)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120, env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["clip:uvis-tiny-vit:random-seed0", "32", "(1,", "32)"]


# ---------------------------------------------------------------- EfficientNet-Lite0
@pytest.fixture(scope="module")
def effnet():
    from uvis.embedders.efficientnet import EfficientNetEmbedder

    return EfficientNetEmbedder(batch_size=4)


def test_efficientnet_weights_classify_real_images(effnet):
    from skimage import data

    logits = effnet.classify([data.chelsea(), data.coffee()])
    assert logits.shape == (2, 1000)
    top = logits.argmax(axis=1)
    assert 281 <= top[0] <= 285, f"chelsea top-1 class {top[0]} is not a cat class"
    assert top[1] == 967, f"coffee top-1 class {top[1]} is not espresso"


def test_efficientnet_embeds_and_has_no_text(effnet):
    assert isinstance(effnet, Embedder) and not effnet.has_text and effnet.logit_scale == 1.0
    frame, boxes = _frame(), _boxes()[:5]
    emb = effnet.embed_crops(frame, boxes)
    assert emb.shape == (5, 1280) and emb.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    single = np.concatenate([effnet.embed_crops(frame, boxes[i : i + 1]) for i in range(5)])
    np.testing.assert_allclose(emb, single, atol=1e-5)
    assert effnet.embed_crops(frame, np.zeros((0, 4))).shape == (0, 1280)
    with pytest.raises(UvisError, match="no text encoder.*exemplars"):
        effnet.encode_text(["a photo of cat"])


def test_efficientnet_key_mapping_and_strict_loading(tmp_path):
    from uvis.embedders.efficientnet import build_model, map_key, weights_path

    assert map_key("_conv_stem.weight") == "conv_stem.weight"
    assert map_key("_blocks.0._project_conv.weight") == "blocks.0.0.conv_pw.weight"
    assert map_key("_blocks.4._expand_conv.weight") == "blocks.2.1.conv_pw.weight"
    assert map_key("_blocks.15._bn2.running_var") == "blocks.6.0.bn3.running_var"
    assert map_key("_fc.bias") == "classifier.bias"
    sd = torch.load(weights_path(), map_location="cpu", weights_only=True)
    del sd["_blocks.3._bn1.weight"]
    sd["_blocks.3._se_reduce.weight"] = torch.zeros(1)
    bad = tmp_path / "bad.pth"
    torch.save(sd, bad)
    with pytest.raises(UvisError) as info:
        build_model(bad)
    assert "blocks.2.0.bn2.weight" in str(info.value) and "_blocks.3._se_reduce.weight" in str(info.value)
