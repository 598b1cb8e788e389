"""TIES and DARE: Triton kernels (CPU interpreter) vs PyTorch reference vs independent dense formulas."""

from __future__ import annotations

import math
import os
from pathlib import Path

os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

from kernels import BlockSpec, dare, dare_merge, ties_merge  # noqa: E402

SIZES = [1000, 7, 1, 1500, 493]


def dense_ties(stack, density, spec, weights, base, scale, sign, mean):
    """Independent dense formulation with explicit per-block top-k."""
    x = stack.double()
    keep = torch.zeros_like(x, dtype=torch.bool)
    for off, size in zip(spec.offsets, spec.sizes):
        m = min(size, math.ceil(round(density * size, 6)))
        if m:
            mag = x[:, off:off + size].abs()
            kth = mag.topk(m, dim=1).values[:, -1:]
            keep[:, off:off + size] = (mag >= kth) & (mag > 0)
    w = weights.double()[:, None]
    trimmed = torch.where(keep, x, 0.0)
    S = torch.sign(trimmed).sum(0) if sign == "count" else (w * trimmed).sum(0)
    agree = keep & (torch.sign(x) == torch.sign(S)) & (S != 0)
    num = torch.where(agree, w * x, 0.0).sum(0)
    if mean == "sum":
        return num * scale + (base.double() if base is not None else 0.0)
    den = torch.where(agree, w, 0.0).sum(0) if mean == "weighted" else agree.double().sum(0)
    merged = torch.where(den != 0, num / torch.where(den != 0, den, 1.0), 0.0) * scale
    return merged + (base.double() if base is not None else 0.0)


def test_ties_paper_example():
    # 3 tasks, density 1: entry 0 elects + (2 + 1 > -1), mean of {2, 1}; entry 1 elects -, only -3 agrees;
    # entry 2 sums to 0 -> no sign -> 0; entry 3 all zero -> 0
    stack = torch.tensor([[2.0, 1.0, 1.0, 0.0], [1.0, -3.0, -1.0, 0.0], [-1.0, 0.5, 0.0, 0.0]])
    for backend in ("torch", "triton"):
        out = ties_merge(stack, 1.0, backend=backend)
        assert torch.allclose(out, torch.tensor([1.5, -3.0, 0.0, 0.0])), backend


def test_ties_trims_to_top_k_per_block():
    stack = torch.tensor([[5.0, -1.0, 0.2, 3.0, -0.1, 0.3]])
    out = ties_merge(stack, 0.5, [3, 3], backend="triton")  # keep 2 of 3 per block
    assert torch.equal(out, torch.tensor([5.0, -1.0, 0.0, 3.0, 0.0, 0.3]))


@pytest.mark.parametrize("backend", ["torch", "triton"])
@pytest.mark.parametrize("variant", [dict(), dict(sign="count"), dict(mean="weighted", scale=0.7, base=True),
                                     dict(mean="sum", scale=0.3, base=True)])
def test_ties_matches_dense(backend, variant):
    g = torch.Generator().manual_seed(0)
    spec = BlockSpec.from_sizes(SIZES)
    T, N = 4, sum(SIZES)
    stack = torch.randn(T, N, generator=g)
    weights = torch.rand(T, generator=g) + 0.5
    base = torch.randn(N, generator=g) if variant.get("base") else None
    kw = {k: v for k, v in variant.items() if k != "base"}
    out = ties_merge(stack, 0.3, spec, weights=weights, base=base, backend=backend, **kw)
    ref = dense_ties(stack, 0.3, spec, weights, base, kw.get("scale", 1.0), kw.get("sign", "sum"),
                     kw.get("mean", "disjoint"))
    torch.testing.assert_close(out.double(), ref, atol=1e-5, rtol=1e-5)


def test_ties_fp16_triton_matches_torch():
    g = torch.Generator().manual_seed(1)
    stack = torch.randn(3, 2049, generator=g).half()
    spec = BlockSpec.uniform(2049, 700)
    a = ties_merge(stack, 0.2, spec, backend="torch")
    b = ties_merge(stack, 0.2, spec, backend="triton")
    assert a.dtype == b.dtype == torch.float16
    torch.testing.assert_close(a.float(), b.float(), atol=1e-3, rtol=1e-3)
    assert 0 < (b != 0).float().mean() < 0.6


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_dare_triton_equals_torch_and_is_deterministic(dtype):
    g = torch.Generator().manual_seed(2)
    stack = torch.randn(3, 4099, generator=g).to(dtype)
    a = dare(stack, 0.3, seed=11, backend="torch")
    b = dare(stack, 0.3, seed=11, backend="triton")
    assert torch.equal(a, b)
    assert torch.equal(a, dare(stack, 0.3, seed=11, backend="torch"))
    assert not torch.equal(a, dare(stack, 0.3, seed=12, backend="torch"))
    kept = a != 0
    assert abs(kept.float().mean().item() - 0.7) < 0.03
    assert not torch.equal(kept[0], kept[1])  # tasks get different masks
    torch.testing.assert_close(a[kept].float(), (stack[kept].float() / 0.7).to(dtype).float(), atol=2e-3, rtol=2e-3)
    plain = dare(stack, 0.3, seed=11, rescale=False, backend="triton")
    assert torch.equal(plain[kept], stack[kept])


def test_dare_merge_equals_base_plus_weighted_dare():
    g = torch.Generator().manual_seed(3)
    stack, base, w = torch.randn(4, 3001, generator=g), torch.randn(3001, generator=g), torch.rand(4, generator=g)
    ref = base + (w[:, None] * dare(stack, 0.5, seed=5, backend="torch")).sum(0)
    for backend in ("torch", "triton"):
        torch.testing.assert_close(dare_merge(stack, 0.5, 5, weights=w, base=base, backend=backend), ref)


def test_dare_gradient_uses_same_mask():
    stack = torch.randn(2, 1500, requires_grad=True)
    out = dare(stack, 0.25, seed=3, backend="triton")
    (grad,) = torch.autograd.grad(out.sum(), stack)
    assert torch.equal(grad != 0, out != 0)
    torch.testing.assert_close(grad[grad != 0], torch.full_like(grad[grad != 0], 1 / 0.75))


def test_merge_bad_inputs():
    stack = torch.randn(2, 10)
    with pytest.raises(ValueError, match="density"):
        ties_merge(stack, 1.5)
    with pytest.raises(ValueError, match="one per task"):
        ties_merge(stack, 0.5, weights=torch.ones(3))
    with pytest.raises(ValueError, match="must tile"):
        ties_merge(stack, 0.5, [3, 3], backend="triton")
    with pytest.raises(ValueError, match=r"p must be in \[0, 1\)"):
        dare(stack, 1.0, seed=0)
    with pytest.raises(TypeError, match="dtype mismatch"):
        dare_merge(stack, 0.1, 0, base=torch.zeros(10, dtype=torch.float64))


# ------------------------------------------------------------------------------ non-finite entries (issue 13, item 4)
def zeroed(stack):
    return torch.where(torch.isfinite(stack), stack, torch.zeros((), dtype=stack.dtype))


def test_ties_nan_is_confined_to_its_position_issue_case():
    # the issue's case: three 10-entry task vectors at density 0.2, one NaN in task 0. Before the rule the
    # NaN took a keep slot (198 of 200 stacks changed which finite entries were kept) and the backends
    # disagreed at the NaN's position.
    g = torch.Generator().manual_seed(0)
    for _ in range(200):
        stack = torch.randn(3, 10, generator=g)
        j = int(torch.randint(10, (1,), generator=g))
        stack[0, j] = math.nan
        clean = ties_merge(zeroed(stack), 0.2, backend="torch")
        outs = [ties_merge(stack, 0.2, backend=b) for b in ("torch", "triton")]
        for out in outs:
            assert torch.isnan(out[j])
            rest = torch.arange(10) != j
            assert torch.equal(out[rest], clean[rest])
        assert torch.equal(outs[0].nan_to_num(), outs[1].nan_to_num())


@pytest.mark.parametrize("variant", [dict(), dict(sign="count"), dict(mean="weighted"), dict(mean="sum")])
def test_ties_nonfinite_rule_same_on_both_backends(variant):
    g = torch.Generator().manual_seed(4)
    spec = BlockSpec.from_sizes(SIZES)
    T, N = 3, sum(SIZES)
    stack = torch.randn(T, N, generator=g)
    base = torch.randn(N, generator=g)
    bad = torch.randint(N, (12,), generator=g)
    stack[0, bad[:4]] = math.nan
    stack[1, bad[4:8]] = math.inf
    stack[2, bad[8:]] = -math.inf
    base[5] = math.nan
    w = torch.rand(T, generator=g) + 0.5
    clean = ties_merge(zeroed(stack), 0.3, spec, weights=w, base=base, backend="torch", **variant)
    damaged = torch.zeros(N, dtype=torch.bool)
    damaged[bad] = True
    damaged[5] = True
    for backend in ("torch", "triton"):
        out = ties_merge(stack, 0.3, spec, weights=w, base=base, backend=backend, **variant)
        assert not torch.isfinite(out[damaged]).any(), backend
        assert torch.isnan(out[bad]).all(), backend
        assert torch.equal(out[~damaged], clean[~damaged]), backend


def test_ties_fp16_nonfinite():
    stack = torch.randn(3, 700, generator=torch.Generator().manual_seed(5)).half()
    stack[1, 10] = math.inf
    ref = ties_merge(zeroed(stack), 0.2, backend="torch")
    for backend in ("torch", "triton"):
        out = ties_merge(stack, 0.2, backend=backend)
        assert torch.isnan(out[10]) and torch.equal(out[torch.arange(700) != 10], ref[torch.arange(700) != 10])


@pytest.mark.parametrize("backend", ["torch", "triton"])
def test_dare_never_drops_nonfinite_entries(backend):
    g = torch.Generator().manual_seed(6)
    stack = torch.randn(3, 3001, generator=g)
    stack[0, :50] = math.nan
    stack[1, 50:100] = math.inf
    base = torch.randn(3001, generator=g)
    out = dare(stack, 0.9, seed=2, backend=backend)
    clean = dare(zeroed(stack), 0.9, seed=2, backend=backend)
    assert torch.isnan(out[0, :50]).all() and torch.isposinf(out[1, 50:100]).all()  # never dropped
    ok = torch.isfinite(stack)
    assert torch.equal(out[ok], clean[ok])
    merged = dare_merge(stack, 0.9, 2, base=base, backend=backend)
    assert not torch.isfinite(merged[:100]).any()
    assert torch.equal(merged[100:], dare_merge(zeroed(stack), 0.9, 2, base=base, backend=backend)[100:])
    assert torch.equal(out.nan_to_num(), dare(stack, 0.9, seed=2, backend="torch").nan_to_num())


def test_nonfinite_weights_are_refused():
    stack = torch.randn(3, 10)
    for fn in (lambda w: ties_merge(stack, 0.5, weights=w), lambda w: dare_merge(stack, 0.5, 0, weights=w)):
        with pytest.raises(ValueError, match=r"weights of tasks \[1\] are not finite"):
            fn(torch.tensor([1.0, math.nan, 1.0]))


# ------------------------------------------------------------------------------ mergekit / PEFT differences (issue 13, item 16)
# Independent formulations of their rules (from peft/utils/merge_utils.py and mergekit's
# generalized_task_arithmetic.py + sparsify.py), written here to pin each documented difference.
def floor_topk(x, density):
    """mergekit `magnitude` / PEFT `magnitude_based_pruning`: keep exactly int(density * n) entries."""
    if density >= 1:
        return x.clone()
    k = int(density * x.numel())
    out = torch.zeros_like(x)
    idx = torch.argsort(x.abs(), descending=True)[:k]
    out[idx] = x[idx]
    return out


def mergekit_ties(stack, weights, density=1.0, consensus="sum", normalize=True, sparsify=True):
    deltas = torch.stack([floor_topk(t, density) for t in stack]) if sparsify else stack.clone()
    w = torch.as_tensor(weights, dtype=stack.dtype)[:, None]
    weighted = deltas * w
    sign = weighted.sign()
    vote = weighted.sum(0) if consensus == "sum" else sign.sum(0)
    majority = (vote >= 0).to(stack.dtype) * 2 - 1
    mask = sign == majority
    mixed = (weighted * mask).sum(0)
    if normalize:
        div = (w * mask).sum(0)
        div[div == 0] = 1
        mixed = mixed / div
    return mixed


def peft_ties(stack, weights, density=1.0, method="total"):
    pruned = torch.stack([floor_topk(t, density) for t in stack])
    sign = pruned.sign()
    vote = pruned.sum(0) if method == "total" else sign.sum(0)
    mask = sign == torch.where(vote >= 0, 1.0, -1.0)
    weighted = pruned * torch.as_tensor(weights, dtype=stack.dtype)[:, None]
    return (weighted * mask).sum(0) / mask.sum(0).clamp(min=1)


KERNELS_MD = Path(__file__).resolve().parents[2] / "docs" / "KERNELS.md"


def doc_text():
    return " ".join(KERNELS_MD.read_text().split())


def test_difference_exact_sign_ties():
    stack = torch.tensor([[1.0, 2.0, 3.0], [-1.0, -2.0, 1.0]])
    theirs = torch.tensor([1.0, 2.0, 2.0])
    assert torch.equal(mergekit_ties(stack, [1, 1]), theirs) and torch.equal(peft_ties(stack, [1, 1]), theirs)
    for backend in ("torch", "triton"):
        assert torch.equal(ties_merge(stack, 1.0, backend=backend), torch.tensor([0.0, 0.0, 2.0]))
    assert "`[[1, 2, 3], [-1, -2, 1]]` at density 1, weights 1: ours `[0, 0, 2]`, theirs `[1, 2, 2]`" in doc_text()


def test_difference_count_ties():
    stack = torch.tensor([[1.0], [-2.0]])
    assert mergekit_ties(stack, [1, 1], consensus="count").item() == 1.0
    assert peft_ties(stack, [1, 1], method="frequency").item() == 1.0
    assert ties_merge(stack, 1.0, sign="count", backend="triton").item() == 0.0
    assert '`[[1], [-2]]`, `sign="count"`, density 1: ours `[0]`, theirs `[1]`' in doc_text()


def test_difference_where_peft_applies_weights():
    stack, w = torch.tensor([[1.0], [-2.0]]), torch.tensor([3.0, 1.0])
    assert peft_ties(stack, w).item() == -2.0
    assert ties_merge(stack, 1.0, weights=w).item() == 3.0
    assert mergekit_ties(stack, w).item() == 1.0 == ties_merge(stack, 1.0, weights=w, mean="weighted").item()
    neg = torch.tensor([[1.0], [1.0]]), torch.tensor([1.0, -2.0])
    assert mergekit_ties(*neg, normalize=False).item() == -2.0
    assert ties_merge(neg[0], 1.0, weights=neg[1], mean="sum").item() == 0.0
    text = doc_text()
    assert "PEFT elects the sign from the *unweighted* trimmed tensors" in text
    assert "PEFT `[-2]`" in text and "ours `mean=\"disjoint\"` `[3]`" in text


@pytest.mark.parametrize("backend", ["torch", "triton"])
def test_difference_dare_ties_without_normalisation(backend):
    g = torch.Generator().manual_seed(7)
    stack, w = torch.randn(4, 2000, generator=g), torch.rand(4, generator=g) + 0.2
    dropped = dare(stack, 0.6, seed=3, backend=backend)
    ours = ties_merge(dropped, 1.0, weights=w, mean="sum", backend=backend)
    theirs = mergekit_ties(dropped, w, normalize=False, sparsify=False)
    torch.testing.assert_close(ours, theirs)
    assert not torch.allclose(ours, ties_merge(dropped, 1.0, weights=w, backend=backend))  # the mean differs
    assert 'density=1.0, weights=w, mean="sum")`' in doc_text()


def test_difference_how_many_entries_a_density_keeps():
    def kept(x, density):
        return int((ties_merge(x[None], density) != 0).sum())

    seven = torch.arange(1.0, 8.0)
    assert kept(seven, 0.5) == 4 and int((floor_topk(seven, 0.5) != 0).sum()) == 3
    hundred = torch.arange(1.0, 101.0)
    assert kept(hundred, 0.29) == 29 and int((floor_topk(hundred, 0.29) != 0).sum()) == 28
    ten = torch.arange(1.0, 11.0)
    assert kept(ten, 0.05) == 1 and int((floor_topk(ten, 0.05) != 0).sum()) == 0
    tied = torch.tensor([3.0, 1.0, 1.0, 1.0])
    assert kept(tied, 0.5) == 4  # every entry tied with the 2nd magnitude is kept
    text = doc_text()
    assert "A block of 7 at density 0.5: ours 4, theirs 3" in text and "ours 29, theirs 28" in text
