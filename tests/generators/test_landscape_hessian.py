"""Population Hessian metrics against a dense Hessian, and their independence of the population."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from helpers.landscape_helpers import one_thread  # noqa: F401  (autouse fixture)
from torch.func import functional_call

from generators.landscape.hessian import PopulationHVP, group_size, hessian_metrics, hutchinson_trace, top_eigenvalue
from generators.landscape.population_data import STREAM_TRACE, member_generator
from generators.population import PopulationModel
from zoo.architectures import build_architecture, layout_of

ARCHS = {  # tiny architectures: MLP (batched-matmul fast path) and 1-D CNN (vmap path)
    "mlp": ((5,), {"width": 4, "depth": 1, "activation": "tanh"}),
    "cnn1d": ((12,), {"width": 2, "depth": 1, "kernel_size": 3, "stride": 2, "activation": "tanh"}),
}


def _population(arch: str, n_models: int = 3):
    input_shape, config = ARCHS[arch]
    modules = []
    for seed in range(n_models):
        torch.manual_seed(seed)
        modules.append(build_architecture(arch, input_shape, 3, config).double())
    model = PopulationModel(modules)
    layout = layout_of(modules[0])
    flat = layout.flatten(model.params, batch_dims=1)
    gen = torch.Generator().manual_seed(7)
    x = torch.randn(40, *input_shape, generator=gen, dtype=torch.float64)
    y = torch.randint(0, 3, (40,), generator=gen)
    return modules, model, layout, flat, x, y


def _dense_hessian(module, layout, flat_row, x, y) -> torch.Tensor:
    def loss(w):
        return F.cross_entropy(functional_call(module, layout.unflatten(w), (x,)), y)
    return torch.autograd.functional.hessian(loss, flat_row)


@pytest.mark.parametrize("arch", sorted(ARCHS))
def test_hvp_is_every_members_own_hessian_times_v(arch):
    modules, model, layout, flat, x, y = _population(arch)
    v = torch.randn_like(flat)
    hv = PopulationHVP(model, layout, flat, x, y)(v)
    chunked = PopulationHVP(model, layout, flat, x, y, batch_size=7)(v)  # 6 chunks, recomputed per product
    for p, module in enumerate(modules):
        dense = _dense_hessian(module, layout, flat[p], x, y)
        torch.testing.assert_close(hv[p], dense @ v[p], rtol=1e-9, atol=1e-11)
    torch.testing.assert_close(chunked, hv, rtol=1e-9, atol=1e-11)


@pytest.mark.parametrize("arch", sorted(ARCHS))
def test_top_eigenvalue_equals_dense_hessians(arch):
    modules, model, layout, flat, x, y = _population(arch)
    hvp = PopulationHVP(model, layout, flat, x, y)
    eig, iters = top_eigenvalue(hvp, [10, 11, 12], iters=5000, tol=1e-12, seed=3)
    for p, module in enumerate(modules):
        evals = torch.linalg.eigvalsh(_dense_hessian(module, layout, flat[p], x, y))
        expected = evals[evals.abs().argmax()].item()
        assert eig[p] == pytest.approx(expected, rel=1e-6)
    assert (iters >= 1).all() and (iters < 5000).all()  # every member stopped on its own tolerance


@pytest.mark.parametrize("arch", sorted(ARCHS))
def test_hutchinson_trace_uses_each_members_vectors_and_converges_to_dense_trace(arch):
    modules, model, layout, flat, x, y = _population(arch)
    ids = [3, 4, 5]
    hvp = PopulationHVP(model, layout, flat, x, y)
    few, _, used = hutchinson_trace(hvp, ids, max_vectors=6, tol=0.0, seed=1)
    many, _, _ = hutchinson_trace(hvp, ids, max_vectors=1000, tol=0.0, seed=1)
    assert (used == 6).all()
    n = flat.shape[1]
    for p, module in enumerate(modules):
        dense = _dense_hessian(module, layout, flat[p], x, y)
        gen = member_generator(1, ids[p], STREAM_TRACE)
        vs = [torch.randint(0, 2, (n,), generator=gen).double() * 2 - 1 for _ in range(6)]
        assert few[p] == pytest.approx(np.mean([(v @ dense @ v).item() for v in vs]), rel=1e-9)
        assert many[p] == pytest.approx(torch.trace(dense).item(), rel=0.1)  # Monte Carlo error ~ 1/sqrt(1000)


def test_members_get_the_same_values_alone_as_in_the_population():
    _, model, layout, flat, x, y = _population("mlp", n_models=4)
    kwargs = dict(iters=200, tol=1e-6, trace_vectors=50, trace_tol=1e-4, seed=0)
    together = hessian_metrics(model, layout, flat, x, y, [0, 1, 2, 3], **kwargs)
    for p in range(4):
        alone = hessian_metrics(model, layout, flat[p:p + 1], x, y, [p], **kwargs)
        for key in ("top_eig", "trace", "power_iters", "trace_vectors"):
            np.testing.assert_allclose(alone[key], together[key][p:p + 1], rtol=1e-8)


def test_cache_sized_groups_change_speed_not_values():
    _, model, layout, flat, x, y = _population("mlp", n_models=5)
    kwargs = dict(iters=200, tol=1e-6, trace_vectors=50, trace_tol=1e-4, seed=0)
    whole = hessian_metrics(model, layout, flat, x, y, [0, 1, 2, 3, 4], **kwargs, group_bytes=0)
    per_member = 40 * 4 * 4  # samples x widest layer (4 units) x 4 bytes
    assert group_size(layout, 40, 5, 2 * per_member) == 2 and group_size(layout, 40, 5, 0) == 5
    assert group_size(layout, 40, 5, 1) == 1 and group_size(layout, 40, 5, 10**9) == 5
    grouped = hessian_metrics(model, layout, flat, x, y, [0, 1, 2, 3, 4], **kwargs, group_bytes=2 * per_member)
    for key in ("top_eig", "trace", "power_iters", "trace_vectors"):
        np.testing.assert_allclose(grouped[key], whole[key], rtol=1e-8)


def test_tolerance_stops_early_and_a_non_finite_member_leaves_the_others_alone():
    _, model, layout, flat, x, y = _population("mlp")
    hvp = PopulationHVP(model, layout, flat, x, y)
    loose_eig, loose = top_eigenvalue(hvp, [0, 1, 2], iters=500, tol=1e-2)
    tight_eig, tight = top_eigenvalue(hvp, [0, 1, 2], iters=500, tol=1e-9)
    assert (loose <= tight).all() and (loose < tight).any()
    broken = flat.clone()
    broken[1] = float("nan")
    eig, _ = top_eigenvalue(PopulationHVP(model, layout, broken, x, y), [0, 1, 2], iters=500, tol=1e-9)
    trace, _, _ = hutchinson_trace(PopulationHVP(model, layout, broken, x, y), [0, 1, 2], max_vectors=5, tol=0.0)
    assert np.isnan(eig[1]) and np.isnan(trace[1])
    np.testing.assert_allclose(eig[[0, 2]], tight_eig[[0, 2]], rtol=1e-10)
    assert np.isfinite(trace[[0, 2]]).all()
