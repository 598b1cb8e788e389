"""Mode connectivity and the straight-line barrier: signs on constructed curves and model pairs."""

import numpy as np
import pytest
import torch
from helpers.landscape_helpers import one_thread  # noqa: F401  (autouse fixture)

import zoo
from generators.landscape.connectivity import bezier, curve_values, linear_barrier, mc_from_curve, train_bends
from generators.landscape.population_data import population_of


def test_mc_sign_on_constructed_curves():
    barrier = np.array([1.0, 1.5, 2.0, 1.5, 1.0])
    dip = np.array([1.0, 0.5, 0.2, 0.5, 1.0])
    assert mc_from_curve(barrier) == pytest.approx(-1.0)  # loss rises between the ends
    assert mc_from_curve(dip) == pytest.approx(0.8)  # the path is better than its ends
    # t* is where |L(t) - mean of the ends| is largest: here the dip (0.9) beats the bump (0.3)
    mixed = np.array([1.0, 1.3, 0.1, 1.0])
    assert mc_from_curve(mixed) == pytest.approx(0.9)
    # t ranges over [0, 1] with the endpoints (issue and PTMZ definition): unequal ends give
    # mc = -|L(0) - L(1)| / 2 unless an inner point deviates more
    assert mc_from_curve(np.array([2.0, 1.5, 1.0])) == pytest.approx(-0.5)
    assert mc_from_curve(np.array([1.0, 1.0, 1.0])) == pytest.approx(0.0)
    np.testing.assert_allclose(mc_from_curve(np.stack([barrier, dip])), [-1.0, 0.8])


def test_straight_line_barrier_on_constructed_curves():
    ts = np.linspace(0, 1, 5)
    assert linear_barrier(np.array([1.0, 1.25, 1.5, 1.75, 2.0]), ts) == pytest.approx(0.0)
    assert linear_barrier(np.array([1.0, 1.25, 3.0, 1.75, 2.0]), ts) == pytest.approx(1.5)
    assert linear_barrier(np.array([1.0, 0.5, 0.2, 0.5, 1.0]), ts) == pytest.approx(0.0)  # never above the chord


def test_bezier_endpoints_and_midpoint_bend_is_the_straight_line():
    a, b = torch.randn(3, 10), torch.randn(3, 10)
    mid = 0.5 * (a + b)
    torch.testing.assert_close(bezier(a, mid, b, 0.0), a)
    torch.testing.assert_close(bezier(a, mid, b, 1.0), b)
    t = torch.tensor([0.1, 0.5, 0.8])
    torch.testing.assert_close(bezier(a, mid, b, t), (1 - t[:, None]) * a + t[:, None] * b)


@pytest.fixture(scope="module")
def permuted_pairs(tiny_zoo_path):
    """Trained models and functionally identical copies with permuted hidden units."""
    z = zoo.open(tiny_zoo_path)
    model, layout, a = population_of(z, [4, 5, 6], -1)
    gen = torch.Generator().manual_seed(0)
    b = torch.stack([w[layout.permutation_index(layout.random_permutations(gen))] for w in a])
    from zoo.tasks import build_task
    return model, layout, a, b, build_task(z.task_spec(4))


def test_permuted_copies_have_a_barrier_that_bend_training_lowers(permuted_pairs):
    model, layout, a, b, task = permuted_pairs
    x, y = task.x_train[:512], task.y_train[:512]
    line, _, ts = curve_values(model, layout, a, 0.5 * (a + b), b, x, y, 7)
    np.testing.assert_allclose(line[:, 0], line[:, -1], rtol=1e-5)  # same function at both ends
    assert (linear_barrier(line, ts) > 0).all() and (mc_from_curve(line) < 0).all()
    pairs = [(4, 100), (5, 101), (6, 102)]
    kwargs = dict(epochs=2, lr=0.05, momentum=0.9, weight_decay=0.0, batch_size=64, seed=0)
    bend = train_bends(model, layout, a, b, task.x_train, task.y_train, pairs, **kwargs)
    curve, _, _ = curve_values(model, layout, a, bend, b, x, y, 7)
    np.testing.assert_allclose(curve[:, [0, -1]], line[:, [0, -1]], rtol=1e-6)  # endpoints stay fixed
    assert (mc_from_curve(curve) > mc_from_curve(line)).all()
    # each bend trains as it would alone
    alone = train_bends(model, layout, a[1:2], b[1:2], task.x_train, task.y_train, pairs[1:2], **kwargs)
    torch.testing.assert_close(alone, bend[1:2], rtol=1e-4, atol=1e-5)
