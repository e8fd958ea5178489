"""``CutlerProposer``: the pipeline's cutler backend, on a local recipe checkpoint."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from uvis import masks as mask_ops
from uvis.errors import BadInputError, MissingWeightsError
from uvis.proposers.base import Proposer
from uvis.proposers.cutler import CutlerProposer
from uvis.proposers.cutler.postprocess import resized_hw
from uvis.proposers.cutler.testing import write_recipe_checkpoint
from uvis.weights import sha256_file

FIXTURES = Path(__file__).resolve().parents[1].parent / "shared" / "fixtures" / "cutler-ref"
MANIFEST = FIXTURES / "dev_astronaut.json"
MIN_SIZE = 128  # small, for speed


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not MANIFEST.is_file():
        pytest.fail(f"reference fixture missing: {MANIFEST}")
    return write_recipe_checkpoint(tmp_path_factory.mktemp("cutler") / "recipe_seed7.pth", MANIFEST, seed=7)


@pytest.fixture(scope="module")
def proposer(checkpoint: Path) -> CutlerProposer:
    return CutlerProposer(checkpoint, min_size=MIN_SIZE, batch_size=2)


@pytest.fixture(scope="module")
def frames() -> list[np.ndarray]:
    photo = np.load(FIXTURES / "dev_astronaut.npz")["input_resized"]  # 480x480 RGB
    return [np.ascontiguousarray(photo[40:136, 60:188]), np.ascontiguousarray(photo[200:296, 250:378])]


def test_is_a_proposer_with_a_cache_key_name(proposer: CutlerProposer, checkpoint: Path) -> None:
    assert isinstance(proposer, Proposer)
    assert proposer.context_frames == 0
    digest = sha256_file(checkpoint)
    assert f"{checkpoint.name}@{digest[:12]}" in proposer.name
    assert f"min{MIN_SIZE}" in proposer.name and "max1333" in proposer.name
    assert proposer.weights_sha256 == digest
    proposer.reset()


def test_name_changes_with_settings(checkpoint: Path, proposer: CutlerProposer) -> None:
    other = CutlerProposer(checkpoint, min_size=160)
    assert other.name != proposer.name and "min160" in other.name
    assert CutlerProposer(checkpoint, min_size=MIN_SIZE, score_threshold=0.3).name != proposer.name


def test_propose_returns_frame_instances(proposer: CutlerProposer, frames: list[np.ndarray]) -> None:
    frame = frames[0]
    inst = proposer.propose(frame, 5)
    h, w = frame.shape[:2]
    assert inst.image_size == (h, w)
    assert 0 < len(inst) <= 100
    assert inst.boxes.dtype == np.float32 and inst.boxes.shape == (len(inst), 4)
    assert (inst.boxes[:, 0] >= 0).all() and (inst.boxes[:, 2] <= w).all()
    assert (inst.boxes[:, 1] >= 0).all() and (inst.boxes[:, 3] <= h).all()
    assert (inst.boxes[:, 2] > inst.boxes[:, 0]).all() and (inst.boxes[:, 3] > inst.boxes[:, 1]).all()
    assert np.all(np.diff(inst.objectness) <= 0) and ((inst.objectness > 0) & (inst.objectness < 1)).all()
    assert (inst.frame == 5).all()
    assert all(isinstance(m["counts"], str) and list(m["size"]) == [h, w] for m in inst.masks)
    # masks lie inside their (slightly grown) boxes
    tight = mask_ops.to_bbox(inst.masks)
    nonempty = mask_ops.area(inst.masks) > 0
    assert (tight[nonempty, :2] >= np.floor(inst.boxes[nonempty, :2]) - 1).all()
    assert (tight[nonempty, 2:] <= np.ceil(inst.boxes[nonempty, 2:]) + 1).all()


def test_propose_batch_equals_one_by_one(proposer: CutlerProposer, frames: list[np.ndarray]) -> None:
    batch = proposer.propose_batch(frames, 10)
    assert [int(b.frame[0]) for b in batch] == [10, 11]
    for frame, got, t in zip(frames, batch, (10, 11)):
        single = proposer.propose(frame, t)
        assert len(single) == len(got)
        np.testing.assert_allclose(got.boxes, single.boxes, atol=1e-2)
        np.testing.assert_allclose(got.objectness, single.objectness, atol=1e-4)


def test_bad_frames_are_rejected(proposer: CutlerProposer) -> None:
    with pytest.raises(BadInputError, match="uint8"):
        proposer.propose(np.zeros((32, 32, 3), np.float32), 0)
    with pytest.raises(BadInputError, match=r"\(H, W, 3\)"):
        proposer.propose(np.zeros((32, 32), np.uint8), 0)


def test_bad_settings_and_weights(checkpoint: Path) -> None:
    with pytest.raises(BadInputError, match="min_size"):
        CutlerProposer(checkpoint, min_size=8)
    with pytest.raises(BadInputError, match="score_threshold"):
        CutlerProposer(checkpoint, score_threshold=1.5)
    with pytest.raises(MissingWeightsError, match="no such file"):
        CutlerProposer("/nonexistent/cutler.pth")


def test_resize_shortest_edge_sizes() -> None:
    assert resized_hw(300, 451, 800, 1333) == (800, 1203)  # dev_chelsea_800
    assert resized_hw(512, 512, 480, 1333) == (480, 480)  # dev_astronaut
    assert resized_hw(576, 768, 800, 1333) == (800, 1067)
    assert resized_hw(100, 2000, 800, 1333) == (67, 1333)  # long side capped


def test_resize_maps_outputs_back_to_the_frame(proposer: CutlerProposer, frames: list[np.ndarray]) -> None:
    frame = frames[1]
    inst = proposer.model.detect(frame, score_threshold=0.0)  # resized to 128 x 171 inside
    assert inst.image_size == frame.shape[:2]
    out = proposer.model.detect(frame, output_hw=(192, 256), score_threshold=0.0)
    assert out.image_size == (192, 256) and len(out) == len(inst)
    np.testing.assert_allclose(out.boxes, inst.boxes * 2.0, rtol=1e-5, atol=1e-3)
