"""Item 5: a statistic fitted to data that cannot support it (a spectrum without spread, too few
eigenvalues, a constant tensor or representation) is stored as NaN with its reason, never as a huge
finite number that then dominates a mean."""

import shutil

import numpy as np
import pytest
import torch

import zoo
from generators.landscape import compute_landscape
from generators.landscape.cka import linear_cka
from generators.landscape.spectra import (
    ALPHA_REASONS,
    esd,
    fit_power_law,
    layer_alpha_fits,
)
from zoo.normalization import NormStats, compute_norm_stats, normalize


def _orthogonal(rows: int, cols: int, seed: int = 0) -> torch.Tensor:
    q, _ = torch.linalg.qr(torch.randn(max(rows, cols), min(rows, cols), generator=torch.Generator().manual_seed(seed)))
    return (q if rows >= cols else q.T)[:rows, :cols].float().contiguous()


@pytest.mark.parametrize("matrix", [_orthogonal(32, 32), 3 * torch.eye(32)], ids=["orthogonal", "scaled identity"])
def test_a_spectrum_without_spread_has_no_alpha(matrix):
    eigs = esd(matrix[None])[0].numpy()  # 32 eigenvalues equal up to float32 rounding
    fit = fit_power_law(eigs)
    assert np.isnan(fit.alpha) and fit.reason == "no spread"  # was alpha 3.8e6 and 2.3e15
    assert fit_power_law(eigs[:3]).reason == "too few eigenvalues"
    random = esd(torch.randn(1, 32, 64, generator=torch.Generator().manual_seed(1)))[0].numpy()
    assert 1 < fit_power_law(random).alpha < 20 and fit_power_law(random).reason == "fitted"


def test_landscape_alpha_of_a_degenerate_model_is_nan_with_its_reason(tiny_zoo_path, tmp_path):
    path = tmp_path / "z.zarr"
    shutil.copytree(tiny_zoo_path, path)
    z = zoo.open(path, mode="r+")
    mid = int(z.models.query("width == 8")["model_id"].iloc[0])
    layout = z.layout(str(z.models.loc[mid, "arch_key"]))
    w = z.weights([mid], checkpoint=-1)[0].clone()
    for i, e in enumerate(layout.entries):  # every weight matrix orthogonal: all eigenvalues 1
        if len(e.shape) == 2:
            w[e.offset:e.offset + e.numel] = _orthogonal(*e.shape, seed=i).reshape(-1)
    weights = torch.stack([z.weights([mid], checkpoint=c)[0] for c in range(len(z.checkpoint_epochs) - 1)] + [w])
    z.write_model(mid, weights=weights, metrics={}, status="ok", record={})
    compute_landscape(z, {"metrics": ["alpha"]}, progress=False)
    z = zoo.open(path)
    codes = z.landscape("alpha_reason")
    assert np.isnan(z.landscape("alpha")[mid]) and np.isnan(z.landscape("alpha_layers")[mid]).all()
    assert [ALPHA_REASONS[int(c)] for c in codes[mid]] == ["no spread", "no spread"]
    assert z.landscape_settings("alpha_reason")["settings"]["nan_reasons"] == list(ALPHA_REASONS)
    width4 = z.models.query("width == 4")["model_id"].to_numpy()
    assert {ALPHA_REASONS[int(c)] for c in codes[width4].ravel()} == {"too few eigenvalues"}
    other = z.models.query("width == 8 and model_id != @mid")["model_id"].to_numpy()
    assert (codes[other] == 0).all() and (z.landscape("alpha")[other] < 20).all()


def test_layer_fits_report_non_finite_weights():
    from kernels.layout import ParamLayout

    layout = ParamLayout.from_shapes([("w", (8, 16)), ("b", (8,))])
    flat = torch.randn(2, layout.n_params, generator=torch.Generator().manual_seed(0))
    flat[1, 3] = float("nan")
    alpha, reasons = layer_alpha_fits(layout, flat)
    assert np.isfinite(alpha[0, 0]) and reasons[0, 0] == 0
    assert np.isnan(alpha[1, 0]) and ALPHA_REASONS[reasons[1, 0]] == "non-finite weights"


def test_a_constant_tensor_is_centred_not_divided_by_a_clamped_std():
    from kernels.layout import ParamLayout

    layout = ParamLayout.from_shapes([("w", (4, 3)), ("b", (4,))])
    train = torch.randn(6, layout.n_params, generator=torch.Generator().manual_seed(0))
    train[:, 12:] = 0.25  # the bias never moved in the train models
    stats = compute_norm_stats([train], layout)
    assert torch.isnan(stats.std[1]) and not torch.isnan(stats.std[0])
    held_out = train[:1].clone()
    held_out[0, 12:] += 1e-3
    z = normalize(held_out, stats, layout)
    torch.testing.assert_close(z[0, 12:], torch.full((4,), 1e-3), rtol=1e-3, atol=0)  # was 1e5 (std clamped to 1e-8)
    assert NormStats.from_record(stats.to_record()).constant.tolist() == [False, True]


def test_cka_of_a_constant_representation_is_nan():
    x = torch.randn(50, 10, generator=torch.Generator().manual_seed(0))
    dead = torch.ones(50, 10) * 3.0 + 1e-9 * torch.randn(50, 10, generator=torch.Generator().manual_seed(1))
    assert np.isnan(linear_cka(dead, x).item()) and np.isnan(linear_cka(x, dead).item())
    assert linear_cka(x, 2 * x + 1).item() == pytest.approx(1.0)
