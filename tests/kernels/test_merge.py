"""TIES and DARE: Triton kernels (CPU interpreter) vs PyTorch reference vs independent dense formulas."""

from __future__ import annotations

import math
import os

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
@pytest.mark.parametrize("variant", [dict(), dict(sign="count"), dict(mean="weighted", scale=0.7, base=True)])
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
