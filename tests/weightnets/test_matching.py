"""Weight matching: a planted permutation is recovered exactly and the permuted model computes the same
function (MLP, 1-D CNN, 2-D CNN); barriers on the linear path."""

from __future__ import annotations

import pytest
import torch
from helpers.compose_fixtures import quick_problem

import kernels
import zoo
from weightnets.compose.matching import (
    align,
    aligned_average,
    linear_path,
    match_and_compare,
    weight_matching,
)

ARCHS = [("mlp", (40,), {"width": 16, "depth": 2}), ("cnn1d", (40,), {"width": 8, "depth": 2}),
         ("cnn2d", (1, 28, 28), {})]


def model(name, shape, cfg, seed):
    torch.manual_seed(seed)
    m = zoo.build_architecture(name, shape, 10, cfg)
    return m, zoo.layout_of(m), torch.cat([p.detach().reshape(-1) for p in m.parameters()])


@pytest.mark.parametrize("name,shape,cfg", ARCHS)
def test_planted_permutation_is_recovered_exactly(name, shape, cfg):
    arch, layout, a = model(name, shape, cfg, 0)
    planted = layout.random_permutations(torch.Generator().manual_seed(1))
    b = kernels.permute(a[None], layout, planted)[0]
    assert not torch.equal(a, b)
    perms = weight_matching(layout, a, b, seed=3)
    for p, q in zip(perms, planted):  # the inverse of the planted permutation
        assert torch.equal(q[p], torch.arange(len(p)))
    back = align(layout, b, perms)
    assert torch.equal(back, a)
    x = torch.randn(16, *shape, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        out_b = kernels.population_forward(b[None], arch, x)[0]
        out_back = kernels.population_forward(back[None], arch, x)[0]
    torch.testing.assert_close(out_back, out_b, atol=1e-5, rtol=1e-5)  # same function


def test_matching_increases_the_alignment_of_independent_models():
    _, layout, a = model("mlp", (40,), {"width": 32, "depth": 2}, 0)
    _, _, b = model("mlp", (40,), {"width": 32, "depth": 2}, 1)
    aligned = align(layout, b, weight_matching(layout, a, b))
    assert float(a @ aligned) > float(a @ b)
    assert torch.allclose(aligned.norm(), b.norm())


def test_barriers():
    problem = quick_problem()  # a trained base, on its own task
    arch, layout, a = problem.arch, problem.vectors.layout, problem.vectors.base
    x, y = problem.base_task.split("test")
    g = torch.Generator().manual_seed(4)
    same = linear_path(a, a, arch, x, y, n_points=5)
    assert same.loss_barrier == pytest.approx(0.0, abs=1e-6) and same.error_barrier == pytest.approx(0.0, abs=1e-9)
    b = kernels.permute(a[None], layout, layout.random_permutations(g))[0]
    report = match_and_compare(layout, a, b, arch, x, y)
    assert report.loss_barrier_after == pytest.approx(0.0, abs=1e-5)  # a permuted copy: no barrier once matched
    assert report.loss_barrier_before > report.loss_barrier_after
    avg = aligned_average(layout, torch.stack([a, b]))
    torch.testing.assert_close(avg, a)


def test_matching_rejects_mismatched_models():
    _, layout, a = model("mlp", (40,), {"width": 16, "depth": 1}, 0)
    with pytest.raises(zoo.ArchitectureMismatchError, match="do not fit one architecture"):
        weight_matching(layout, a, a[:-1])
