"""Linear CKA against the HSIC formula on known matrices."""

import numpy as np
import pytest
import torch

from generators.landscape.cka import linear_cka, pair_cka


def _hsic_cka(x: np.ndarray, y: np.ndarray) -> float:
    n = len(x)
    h = np.eye(n) - np.ones((n, n)) / n
    k, l = h @ (x @ x.T) @ h, h @ (y @ y.T) @ h
    return float(np.trace(k @ l) / np.sqrt(np.trace(k @ k) * np.trace(l @ l)))


def test_one_dimensional_cka_is_the_squared_correlation():
    x = torch.tensor([[1.0], [2.0], [3.0]])
    y = torch.tensor([[1.0], [0.0], [2.0]])  # centred: (-1, 0, 1) and (0, -1, 1); correlation 1/2
    assert linear_cka(x, y).item() == pytest.approx(0.25)


def test_cka_equals_the_centred_gram_formula():
    rng = np.random.default_rng(0)
    for c, d in ((3, 3), (5, 2)):
        x, y = rng.normal(size=(20, c)), rng.normal(size=(20, d))
        assert linear_cka(torch.from_numpy(x), torch.from_numpy(y)).item() == pytest.approx(_hsic_cka(x, y), rel=1e-10)


def test_cka_invariances_and_degenerate_input():
    rng = np.random.default_rng(1)
    x = torch.from_numpy(rng.normal(size=(30, 4)))
    q, _ = torch.linalg.qr(torch.from_numpy(rng.normal(size=(4, 4))))
    assert linear_cka(x, 3.0 * x @ q + 5.0).item() == pytest.approx(1.0, abs=1e-12)
    assert linear_cka(x, torch.ones(30, 2)).isnan().item()


def test_pair_cka_is_batched_over_pairs():
    logits = torch.randn(4, 25, 3)
    got = pair_cka(logits, np.array([0, 0, 2]), np.array([1, 3, 3]))
    want = [linear_cka(logits[a], logits[b]).item() for a, b in ((0, 1), (0, 3), (2, 3))]
    np.testing.assert_allclose(got, want, rtol=1e-12)
