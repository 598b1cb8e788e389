"""Robust weight signatures: extraction of the shallowest layers, int8 quantisation, patching, transfer
to another base through weight matching, storage ratio."""

from __future__ import annotations

import pytest
import torch
from helpers.compose_fixtures import quick_problem

import kernels
import zoo
from weightnets.compose.signatures import (
    extract_signature,
    patch,
    signature_report,
    transfer,
)


def test_signature_keeps_the_shallowest_layers_and_quantises():
    problem = quick_problem()
    layout, tau = problem.vectors.layout, problem.vectors.stack[0]
    sig = extract_signature(tau, layout, layers=1)
    first = [e for e in layout if e.layer == 0]
    assert sig.names == [e.name for e in first]
    dense = sig.dense()
    n0 = sum(e.numel for e in first)
    assert torch.equal(dense[:n0], tau[:n0]) and not dense[n0:].any()
    assert sig.storage_ratio == pytest.approx((4 * n0 + 8 * len(first)) / (4 * layout.n_params))
    q = extract_signature(tau, layout, layers=1, quantize="int8")
    assert q.values.dtype == torch.int8 and q.nbytes < sig.nbytes / 3
    err = (q.dense() - dense)[:n0].abs()
    for k, e in enumerate(first):  # rounding error at most half a step of each tensor's scale
        assert float(err[e.offset:e.offset + e.numel].max()) <= float(q.scales[k]) / 2 + 1e-7
    with pytest.raises(zoo.SpecError, match="not among the architecture's layers"):
        extract_signature(tau, layout, layers=[7])


def test_patch_with_the_whole_vector_is_the_child():
    problem = quick_problem()
    layout = problem.vectors.layout
    sig = extract_signature(problem.vectors.stack[1], layout, layers=layout.n_layers)
    torch.testing.assert_close(patch(problem.vectors.base, sig), problem.vectors.children()[1])
    report = signature_report(problem.vectors.base, sig, problem.arch, problem.tasks[1], problem.base_task,
                              child=problem.vectors.children()[1])
    assert report.corrupted_after == pytest.approx(report.child_corrupted)
    assert report.storage_ratio > 1.0  # the full vector plus its bookkeeping


def test_transfer_through_matching_follows_a_planted_permutation():
    problem = quick_problem()
    layout = problem.vectors.layout
    source = problem.vectors.base
    planted = layout.random_permutations(torch.Generator().manual_seed(0))
    target = kernels.permute(source[None], layout, planted)[0]  # "another base": a permuted copy
    sig = extract_signature(problem.vectors.stack[0], layout, layers=1)
    moved = transfer(sig, source, target)
    torch.testing.assert_close(moved.dense(), kernels.permute(sig.dense()[None], layout, planted)[0])
    x = problem.tasks[0].x_test[:64]
    patched_source = patch(source, sig)
    patched_target = patch(target, moved)
    with torch.no_grad():
        torch.testing.assert_close(kernels.population_forward(patched_target[None], problem.arch, x),
                                   kernels.population_forward(patched_source[None], problem.arch, x),
                                   atol=1e-5, rtol=1e-5)
