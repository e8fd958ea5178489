"""Multi-scale deformable attention against a naive per-point bilinear loop (values, gradients)."""
from __future__ import annotations

import math

import pytest
import torch

from uvis.vis.msdeform import MSDeformAttn, ms_deform_attn, ms_deform_attn_grid_sample

SHAPES = [(3, 4), (2, 3), (5, 2)]
N, M, D, LQ, P = 2, 2, 3, 5, 2


def naive(value: torch.Tensor, shapes: list[tuple[int, int]], loc: torch.Tensor, attn: torch.Tensor) -> torch.Tensor:
    """One bilinear read per point and corner, in plain Python loops (align_corners=False, zeros outside)."""
    n_img, _, heads, dim = value.shape
    _, lq, _, levels, points, _ = loc.shape
    starts = [0]
    for h, w in shapes:
        starts.append(starts[-1] + h * w)
    rows = []
    for n in range(n_img):
        for q in range(lq):
            per_head = []
            for m in range(heads):
                acc = value.new_zeros(dim)
                for lvl, (h, w) in enumerate(shapes):
                    for p in range(points):
                        x = loc[n, q, m, lvl, p, 0] * w - 0.5
                        y = loc[n, q, m, lvl, p, 1] * h - 0.5
                        x0, y0 = math.floor(float(x.detach())), math.floor(float(y.detach()))
                        for yy, wy in ((y0, 1 - (y - y0)), (y0 + 1, y - y0)):
                            for xx, wx in ((x0, 1 - (x - x0)), (x0 + 1, x - x0)):
                                if 0 <= yy < h and 0 <= xx < w:
                                    v = value[n, starts[lvl] + yy * w + xx, m]
                                    acc = acc + attn[n, q, m, lvl, p] * wy * wx * v
                per_head.append(acc)
            rows.append(torch.cat(per_head))
    return torch.stack(rows).view(n_img, lq, heads * dim)


def _inputs(seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    s = sum(h * w for h, w in SHAPES)
    value = torch.randn(N, s, M, D, generator=g, dtype=torch.float64)
    loc = torch.rand(N, LQ, M, len(SHAPES), P, 2, generator=g, dtype=torch.float64) * 1.6 - 0.3  # some outside
    attn = torch.rand(N, LQ, M, len(SHAPES), P, generator=g, dtype=torch.float64)
    attn = attn / attn.sum((-1, -2), keepdim=True)
    return value, loc, attn


@pytest.mark.parametrize("impl", [ms_deform_attn, ms_deform_attn_grid_sample])
def test_values_match_the_naive_loop(impl) -> None:
    value, loc, attn = _inputs(0)
    expected = naive(value, SHAPES, loc, attn)
    got = impl(value, SHAPES, loc, attn)
    assert got.shape == (N, LQ, M * D)
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-10)
    assert (loc < 0).any() and (loc > 1).any()  # the borders were exercised


@pytest.mark.parametrize("impl", [ms_deform_attn, ms_deform_attn_grid_sample])
def test_gradients_match_the_naive_loop(impl) -> None:
    value, loc, attn = _inputs(1)
    weights = torch.randn(N, LQ, M * D, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    grads = []
    for fn in (naive, impl):
        v, lc, a = (t.clone().requires_grad_(True) for t in (value, loc, attn))
        (fn(v, SHAPES, lc, a) * weights).sum().backward()
        grads.append((v.grad, lc.grad, a.grad))
    for name, ours, theirs in zip(("value", "locations", "weights"), grads[1], grads[0]):
        assert ours is not None and theirs is not None
        torch.testing.assert_close(ours, theirs, rtol=1e-9, atol=1e-9, msg=f"gradient wrt {name}")
        assert theirs.abs().sum() > 0


def test_gradcheck_of_the_default_implementation() -> None:
    """Finite differences in value, locations and weights (float64; locations are random, so no
    point sits exactly on a pixel centre where the bilinear weight has a kink)."""
    value, loc, attn = _inputs(3)

    def fn(v: torch.Tensor, lc: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        return ms_deform_attn(v, SHAPES, lc, a)

    assert torch.autograd.gradcheck(fn, (value.requires_grad_(True), loc.requires_grad_(True),
                                         attn.requires_grad_(True)))


def test_module_shapes_and_initialisation() -> None:
    torch.manual_seed(0)
    layer = MSDeformAttn(d_model=16, n_levels=3, n_heads=2, n_points=2)
    s = sum(h * w for h, w in SHAPES)
    query, value = torch.randn(N, s, 16), torch.randn(N, s, 16)
    from uvis.vis.msdeform import reference_points

    ref = reference_points(SHAPES)
    assert ref.shape == (s, 2) and float(ref.min()) > 0 and float(ref.max()) < 1
    out = layer(query, ref, value, SHAPES)
    assert out.shape == (N, s, 16)
    # initial offsets fan out: head 0 points along +x at distances 1, 2 (pixels of each level)
    bias = layer.sampling_offsets.bias.view(2, 3, 2, 2)
    torch.testing.assert_close(bias[0, 0], torch.tensor([[1.0, 0.0], [2.0, 0.0]]))


def test_bad_shapes_are_reported() -> None:
    value, loc, attn = _inputs(4)
    with pytest.raises(ValueError, match="levels"):
        ms_deform_attn(value, SHAPES[:2], loc, attn)
    with pytest.raises(ValueError, match="positions"):
        ms_deform_attn(value[:, :-1], SHAPES, loc, attn)
