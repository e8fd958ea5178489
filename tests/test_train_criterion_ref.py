"""The matcher and the losses reproduce MinVIS's training semantics (shared/fixtures/minvis-ref).

The recipe weights are loaded into the port (uvis.vis.load_minvis), the two stored training
frames go through it in train mode, and the criterion runs with the fixture's targets in
its three random-point variants (README "Training semantics"):

* ``torch_rng``: the 40 uniform draws replayed from ``torch.Generator().manual_seed(train_seed)``
  in the recorded call order (shape of every call checked against ``rand_calls``);
* ``recipe_rng``: the k-th draw is ``recipe.training_uniform(train_seed, k, shape)``;
* ``grid``: the fixed 112 x 112 grid for the matcher and the loss (no importance sampling).

Expected: identical matcher indices for every layer and image; every loss term (unweighted
and weighted) and the weighted total within relative 1e-3.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from uvis.proposers.cutler.testing import load_recipe, recipe_state_dict
from uvis.vis.criterion import SetCriterion
from uvis.vis.matcher import HungarianMatcher
from uvis.vis.points import GridPoints, RandomPoints

FIXTURE = Path(__file__).resolve().parents[1].parent / "shared" / "fixtures" / "minvis-ref"
JSON = FIXTURE / "dev_vtest_360.json"
NPZ = FIXTURE / "dev_vtest_360.npz"
REL = 1e-3


class Replay:
    """A RandFn returning pre-made draws in order and checking each requested shape."""

    def __init__(self, draws: list[torch.Tensor]) -> None:
        self.draws, self.calls = draws, 0

    def __call__(self, shape, device):
        assert self.calls < len(self.draws), "more torch.rand calls than the reference made"
        d = self.draws[self.calls]
        assert tuple(shape) == tuple(d.shape), f"call {self.calls}: shape {tuple(shape)} vs reference {tuple(d.shape)}"
        self.calls += 1
        return d.to(device)


@pytest.fixture(scope="module")
def ref():
    if not JSON.is_file():
        pytest.fail(f"fixture missing: {JSON} (../shared must sit beside the repo)")
    meta = json.loads(JSON.read_text())
    arrays = np.load(NPZ)
    return meta, arrays


@pytest.fixture(scope="module")
def outputs_targets(ref):
    from uvis.vis.model import load_minvis

    meta, z = ref
    torch.manual_seed(0)
    model = load_minvis(recipe_state_dict(JSON))
    model.train()
    frames = [z["input_resized"][int(i)] for i in z["train_frames"]]
    images, _sizes = model.preprocess(frames)
    assert list(images.shape[-2:]) == list(meta["padded_hw"])
    with torch.no_grad():
        out = model(images)
    hp, wp = images.shape[-2:]
    targets = []
    for img in (0, 1):
        m = z[f"train_masks_img{img}"]
        pad = torch.zeros((len(m), hp, wp))
        pad[:, : m.shape[1], : m.shape[2]] = torch.from_numpy(m.astype(np.float32))
        targets.append({"labels": torch.from_numpy(z[f"train_labels_img{img}"]).long(), "masks": pad})
    return out, targets


def _criterion(meta) -> SetCriterion:
    n_cls = meta["training_shapes"]["pred_logits"][-1] - 1
    return SetCriterion(n_cls, HungarianMatcher(2.0, 5.0, 5.0, 12544))


def _points(variant: str, meta, recipe):
    calls = meta["training"][variant]["rand_calls"]
    seed = int(meta["train_seed"])
    if variant == "torch_rng":
        g = torch.Generator().manual_seed(seed)
        replay = Replay([torch.rand(c["shape"], generator=g) for c in calls])
        return RandomPoints(replay, 3.0, 0.75), replay
    if variant == "recipe_rng":
        replay = Replay([torch.from_numpy(recipe.training_uniform(seed, c["index"], c["shape"])) for c in calls])
        return RandomPoints(replay, 3.0, 0.75), replay
    return GridPoints(), None


def _rel(a: float, b: float) -> float:
    return abs(a - b) / max(abs(b), 1e-12)


def test_recipe_grid_is_ours(ref):
    """The grid variant's points are the recipe's grid (x fastest, cell centres)."""
    from uvis.vis.points import grid_coords

    recipe = load_recipe(FIXTURE)
    np.testing.assert_array_equal(grid_coords(112).numpy(), recipe.grid_points())


@pytest.mark.parametrize("variant", ["torch_rng", "recipe_rng", "grid"])
def test_losses_and_matches_equal_reference(ref, outputs_targets, variant):
    meta, _ = ref
    out, targets = outputs_targets
    recipe = load_recipe(FIXTURE)
    points, replay = _points(variant, meta, recipe)
    expected = meta["training"][variant]
    res = _criterion(meta)(out, targets, points)
    if replay is not None:
        assert replay.calls == len(expected["rand_calls"]), "number of torch.rand calls differs from the reference"
    for m in expected["matcher_named"]:
        got = res.matches[m["layer"]][m["image"]]
        assert got.src.tolist() == m["src"], (variant, m["layer"], m["image"], "src")
        assert got.tgt.tolist() == m["tgt"], (variant, m["layer"], m["image"], "tgt")
    assert set(res.unweighted) == set(expected["unweighted"])
    bad = {k: (float(res.unweighted[k]), v) for k, v in expected["unweighted"].items()
           if _rel(float(res.unweighted[k]), v) > REL}
    bad.update({f"weighted {k}": (float(res.weighted[k]), v) for k, v in expected["weighted"].items()
                if _rel(float(res.weighted[k]), v) > REL})
    assert not bad, f"{variant}: terms outside relative {REL}: {bad}"
    assert _rel(float(res.total), expected["total_weighted"]) <= REL


def test_torch_rng_points_equal_stored(ref, outputs_targets):
    """The replayed final-layer matcher points and importance-sampled loss points are the stored ones."""
    meta, z = ref
    out, targets = outputs_targets
    recorded: dict[str, list[torch.Tensor]] = {"matcher": [], "loss": []}
    points, _ = _points("torch_rng", meta, None)

    class Spy(RandomPoints):
        def matcher_points(self, n, device):
            p = super().matcher_points(n, device)
            recorded["matcher"].append(p)
            return p

        def loss_points(self, logits, n):
            p = super().loss_points(logits, n)
            recorded["loss"].append(p)
            return p

    spy = Spy(points.rand, 3.0, 0.75)
    _criterion(meta)(out, targets, spy)
    np.testing.assert_array_equal(torch.cat(recorded["matcher"][:2]).numpy(),
                                  z["train_torch_rng_matcher_points_final"])
    got, want = recorded["loss"][0].numpy(), z["train_torch_rng_loss_points_final"]
    assert got.shape == want.shape
    # the 3136 uniform points are appended in order: identical
    np.testing.assert_array_equal(got[:, 9408:], want[:, 9408:])
    # the 9408 most uncertain ones: the same set (topk orders near-equal values differently;
    # float rounding of the port's logits may swap a point at the cut-off)
    for m in range(len(got)):
        a = {tuple(x) for x in got[m, :9408].tolist()}
        b = {tuple(x) for x in want[m, :9408].tolist()}
        assert len(a ^ b) <= 2 * 10, f"mask {m}: {len(a ^ b) // 2} of 9408 importance-sampled points differ"
