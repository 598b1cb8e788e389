"""Merge methods: the registry over one generalised task-arithmetic core against a dense reference and
hand-checked values (sign-vote ties, density 1 and near 0, all-zero task vectors, one task, fp16)."""

from __future__ import annotations

import math

import pytest
import torch

import kernels
from weightnets.compose import (
    MergeMethod,
    get_method,
    merge,
    merged_task_vector,
    method_names,
)
from zoo import SpecError, UnknownNameError

SIZES = [7, 1, 12, 5]


def dense_reference(base, stack, method: MergeMethod, weights=None, sizes=None, seed=0):
    """Entry-by-entry formulation of the core (module docstring of weightnets.compose.methods)."""
    x = stack.double()
    T, N = x.shape
    w = torch.ones(T, dtype=torch.float64) if weights is None else weights.double()
    sizes = sizes or [N]
    if method.sparsify == "magnitude":
        kept = torch.zeros_like(x)
        off = 0
        for n in sizes:
            m = min(n, math.ceil(round(method.density * n, 6)))
            for t in range(T):
                block = x[t, off:off + n]
                if m:
                    kth = torch.sort(block.abs(), descending=True).values[m - 1]
                    kept[t, off:off + n] = torch.where((block.abs() >= kth) & (block != 0), block, 0.0)
            off += n
        x = kept
    elif method.sparsify == "random":
        x = kernels.dare(stack.double(), method.p, seed, backend="torch")  # the mask's definition
    out = torch.zeros(N, dtype=torch.float64)
    for i in range(N):
        col, wx = x[:, i], w * x[:, i]
        if method.consensus is None:
            num = wx.sum()
            den = {"sum": 1.0, "mean": float(T), "weighted_mean": float(w.sum()) or 1.0}[method.aggregation]
        else:
            S = wx.sum() if method.consensus == "sum" else torch.sign(col).sum()
            gamma = torch.sign(S)
            agree = (col != 0) & (torch.sign(col) == gamma) & (gamma != 0)
            num = wx[agree].sum()
            den = {"sum": 1.0, "mean": max(1.0, float(agree.sum())),
                   "weighted_mean": float(w[agree].sum()) or 1.0}[method.aggregation]
        out[i] = num / den
    return base.double() + method.scale * out


def test_registry_names_and_unknown_name():
    assert method_names() == ["average", "dare_linear", "dare_ties", "task_arithmetic", "ties"]
    with pytest.raises(UnknownNameError, match=r"unknown merge method 'tie'; choose from \['average', "):
        get_method("tie")
    with pytest.raises(SpecError, match="unknown options \\['lambda'\\]"):
        merge(torch.zeros(3), torch.zeros(1, 3), "ties", **{"lambda": 0.3})
    with pytest.raises(SpecError, match="aggregation must be one of"):
        merge(torch.zeros(3), torch.zeros(1, 3), "ties", aggregation="median")


@pytest.mark.parametrize("name", ["task_arithmetic", "average", "ties", "dare_linear", "dare_ties"])
@pytest.mark.parametrize("aggregation", ["sum", "mean", "weighted_mean"])
def test_every_method_matches_dense_reference(name, aggregation):
    g = torch.Generator().manual_seed(0)
    N = sum(SIZES)
    base, stack = torch.randn(N, generator=g), torch.randn(3, N, generator=g)
    weights = torch.tensor([0.5, 1.0, 2.0])
    m = get_method(name)
    m = MergeMethod(**{**m.options(), "tune": tuple(m.tune), "aggregation": aggregation, "scale": 0.7})
    out = merge(base, stack, m, weights=weights, blocks=SIZES, seed=3)
    torch.testing.assert_close(out.double(), dense_reference(base, stack, m, weights, SIZES, seed=3),
                               atol=1e-5, rtol=1e-5)


def test_hand_checked_task_arithmetic_and_average():
    base = torch.tensor([1.0, 1.0])
    stack = torch.tensor([[1.0, 2.0], [3.0, -4.0]])
    assert torch.equal(merge(base, stack, "task_arithmetic", scale=0.5), torch.tensor([3.0, 0.0]))
    assert torch.equal(merge(base, stack, "average"), torch.tensor([3.0, 0.0]))  # base + mean τ = mean of models
    assert torch.equal(merge(base, stack, "task_arithmetic", aggregation="mean", scale=2.0), torch.tensor([5.0, -1.0]))


def test_hand_checked_sign_vote_ties():
    base = torch.zeros(3)
    stack = torch.tensor([[1.0, 2.0, 3.0], [-1.0, -2.0, 1.0]])
    # entries 0 and 1 tie in the vote: nothing is merged there (mergekit/PEFT would elect +)
    assert torch.equal(merge(base, stack, "ties", density=1.0), torch.tensor([0.0, 0.0, 2.0]))  # disjoint mean
    assert torch.equal(merge(base, stack, "ties", density=1.0, aggregation="sum"), torch.tensor([0.0, 0.0, 4.0]))
    assert torch.equal(merge(base, stack, "ties", density=1.0, consensus="count"), torch.tensor([0.0, 0.0, 2.0]))
    # a weighted vote breaks the tie towards the heavier task
    w = torch.tensor([1.0, 3.0])
    assert torch.equal(merge(base, stack, "ties", density=1.0, weights=w, aggregation="weighted_mean"),
                       torch.tensor([-1.0, -2.0, 1.5]))


def test_density_one_and_near_zero():
    base = torch.tensor([10.0, 10.0, 10.0, 10.0])
    stack = torch.tensor([[4.0, -1.0, 0.5, 2.0], [1.0, -3.0, 0.25, -2.0]])
    full = merge(base, stack, "ties", density=1.0)  # every nonzero entry votes
    assert torch.equal(full, torch.tensor([12.5, 8.0, 10.375, 10.0]))  # entry 3: 2 - 2 = 0, a tie
    top1 = merge(base, stack, "ties", density=0.01)  # ceil(0.04) = 1 entry per task survives
    assert torch.equal(top1, torch.tensor([14.0, 7.0, 10.0, 10.0]))
    assert torch.equal(merge(base, stack, "ties", density=1e-9), base)  # 1e-9 * 4 rounds to 0: nothing kept
    assert torch.equal(merge(base, stack, "task_arithmetic", sparsify="magnitude", density=1e-9), base)


@pytest.mark.parametrize("name", ["task_arithmetic", "average", "ties", "dare_linear", "dare_ties"])
@pytest.mark.parametrize("aggregation", ["sum", "mean", "weighted_mean"])
def test_all_zero_task_vectors_give_the_base(name, aggregation):
    base = torch.randn(20, generator=torch.Generator().manual_seed(1))
    out = merge(base, torch.zeros(3, 20), name, aggregation=aggregation, scale=1.5)
    assert torch.equal(out, base)


def test_one_task():
    g = torch.Generator().manual_seed(2)
    base, tau = torch.randn(50, generator=g), torch.randn(1, 50, generator=g)
    for name in ("task_arithmetic", "average"):
        torch.testing.assert_close(merge(base, tau, name, scale=0.5), base + 0.5 * tau[0])
    torch.testing.assert_close(merge(base, tau, "ties", density=1.0), base + tau[0])  # one voter agrees with itself
    trimmed = merge(base, tau, "ties", density=0.1)
    assert int((trimmed != base).sum()) == 5  # ceil(0.1 * 50)
    dropped = kernels.dare(tau, 0.5, 4, backend="torch")[0]
    torch.testing.assert_close(merge(base, tau, "dare_ties", p=0.5, seed=4), base + dropped)
    torch.testing.assert_close(merge(base, tau, "dare_linear", p=0.5, seed=4), base + dropped)
    assert torch.equal(merge(base, tau, "dare_linear", p=0.0), base + tau[0])  # p = 0 drops nothing


@pytest.mark.parametrize("name", ["task_arithmetic", "ties", "dare_ties"])
def test_fp16(name):
    g = torch.Generator().manual_seed(3)
    base, stack = torch.randn(300, generator=g), 0.1 * torch.randn(4, 300, generator=g)
    half = merge(base.half(), stack.half(), name, scale=0.5, seed=1)
    ref = merge(base.half().float(), stack.half().float(), name, scale=0.5, seed=1)
    assert half.dtype == torch.float16
    torch.testing.assert_close(half.float(), ref, atol=2e-3, rtol=2e-3)


def test_per_block_weights_are_the_learned_core():
    g = torch.Generator().manual_seed(5)
    stack = torch.randn(2, sum(SIZES), generator=g)
    C = torch.randn(2, len(SIZES), generator=g)
    tau = merged_task_vector(stack, "task_arithmetic", weights=C, blocks=SIZES)
    ref = torch.zeros(sum(SIZES))
    off = 0
    for k, n in enumerate(SIZES):
        ref[off:off + n] = C[0, k] * stack[0, off:off + n] + C[1, k] * stack[1, off:off + n]
        off += n
    torch.testing.assert_close(tau, ref)
    with pytest.raises(SpecError, match="per-block weights"):
        merged_task_vector(stack, "ties", weights=C, blocks=SIZES)


def test_nan_in_a_task_vector_stays_at_its_position():
    stack = torch.randn(3, 40, generator=torch.Generator().manual_seed(6))
    stack[1, 7] = math.nan
    for name in method_names():
        out = merge(torch.zeros(40), stack, name, density=0.3, p=0.3)
        assert torch.isnan(out[7]) and torch.isfinite(out[torch.arange(40) != 7]).all(), name
