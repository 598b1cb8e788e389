"""Heavy-tail exponent: power-law fits on known samples, ESDs of weight matrices, FARMS pooling."""

import numpy as np
import pytest
import torch

from generators.landscape.spectra import (
    esd,
    farms_eigenvalues,
    farms_shape,
    fit_power_law,
    layer_alphas,
    weight_matrices,
)
from zoo.architectures import build_architecture, layout_of


def _pareto(alpha: float, n: int, xmin: float, seed: int) -> np.ndarray:
    """Samples with density ~ x^-alpha for x >= xmin (numpy's pareto(a) + 1 has density ~ x^-(a+1))."""
    return (np.random.default_rng(seed).pareto(alpha - 1.0, n) + 1.0) * xmin


@pytest.mark.parametrize("alpha", [1.8, 2.5, 4.0])
def test_fit_recovers_the_exponent_of_a_power_law_sample(alpha):
    fit = fit_power_law(_pareto(alpha, 1500, 0.5, seed=1))
    assert fit.alpha == pytest.approx(alpha, rel=0.05)
    assert fit.xmin >= 0.5 and fit.n_tail >= 500  # any cut-off above the true one fits a pure power law


def test_fit_finds_the_tail_above_a_bulk_and_ignores_scale():
    rng = np.random.default_rng(2)
    tail = _pareto(3.0, 1000, 4.0, seed=3)
    sample = np.concatenate([rng.uniform(0.1, 4.0, 1500), tail])
    fit = fit_power_law(sample)
    assert fit.alpha == pytest.approx(3.0, rel=0.07)
    assert 3.0 < fit.xmin < 6.0 and fit.n_tail < len(sample)
    scaled = fit_power_law(sample * 123.0)
    assert scaled.alpha == pytest.approx(fit.alpha, rel=1e-9) and scaled.n_tail == fit.n_tail


def test_fit_needs_enough_values():
    assert np.isnan(fit_power_law(np.array([1.0, 2.0, 3.0]), min_tail=5).alpha)
    assert np.isnan(fit_power_law(np.ones(20)).alpha)  # no spread: no tail to fit


def test_esd_is_the_spectrum_of_wtw_and_conv_kernels_are_reshaped():
    module = build_architecture("cnn1d", (16,), 4, {"width": 3, "depth": 1, "kernel_size": 3})
    layout = layout_of(module)
    flat = layout.flatten(dict(module.named_parameters()), batch_dims=0).detach()[None]
    mats = weight_matrices(layout, flat)
    assert [(name, tuple(w.shape[1:])) for name, w in mats] == [("convs.0.weight", (3, 3)), ("head.weight", (4, 24))]
    w = mats[1][1][0].double()
    nonzero = torch.linalg.eigvalsh(w.T @ w)[-4:]  # W^T W is 24 x 24 with rank 4
    torch.testing.assert_close(esd(mats[1][1])[0].sort().values, nonzero, rtol=1e-8, atol=1e-10)


def test_farms_windows_and_pooling():
    assert farms_shape(8, 40, 1.0) == (8, 8)
    assert farms_shape(30, 40, 2.0) == (20, 40)
    assert farms_shape(30, 40, 1.0, sub_rows=10) == (10, 10)
    w = torch.randn(2, 40, 8, dtype=torch.float64)  # oriented to 8 x 40 inside
    pooled = farms_eigenvalues(w, q=1.0, windows=5)
    assert pooled.shape == (2, 5 * 8)  # one row position (the window fills 8 rows), 5 column positions
    first = w[0].T[:, 0:8]
    torch.testing.assert_close(pooled[0, :8].sort().values, torch.linalg.svdvals(first).square().sort().values)
    square = torch.randn(1, 6, 6, dtype=torch.float64)
    torch.testing.assert_close(farms_eigenvalues(square, windows=10).sort().values, esd(square).sort().values)


def test_layer_alphas_of_a_population_with_and_without_farms():
    modules = []
    for seed in range(3):
        torch.manual_seed(seed)
        modules.append(build_architecture("mlp", (40,), 10, {"width": 32, "depth": 2}))
    layout = layout_of(modules[0])
    flat = torch.stack([layout.flatten(dict(m.named_parameters())) for m in modules]).detach()
    plain = layer_alphas(layout, flat)
    assert plain.shape == (3, 3) and np.isfinite(plain).all() and (plain > 1).all()
    farms = layer_alphas(layout, flat, farms=True, farms_windows=4)
    assert farms.shape == (3, 3) and np.isfinite(farms).all()
    strict = layer_alphas(layout, flat, min_eigs=11)  # the 10-class head has 10 eigenvalues
    assert np.isnan(strict[:, 2]).all() and np.isfinite(strict[:, :2]).all()
    alone = layer_alphas(layout, flat[1:2])
    np.testing.assert_allclose(alone[0], plain[1])
