"""compose: Triton kernel (CPU interpreter) and PyTorch reference against a dense einsum."""

from __future__ import annotations

import os

os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

from kernels import BlockSpec, compose, resolve_backend  # noqa: E402
from kernels.blocks import as_block_spec  # noqa: E402

BACKENDS = ["torch", "triton"]
SIZES = [1000, 7, 1, 1500, 493]  # N = 3001, ragged and with a 1-element block


def dense(base, stack, coeffs3, spec):
    c = coeffs3.double()[:, :, spec.block_index()]
    return base.double() + torch.einsum("btn,tn->bn", c, stack.double())


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("cshape", ["T", "T,nb", "B,T,nb", "B,T,1"])
def test_compose_matches_dense(backend, dtype, cshape):
    g = torch.Generator().manual_seed(0)
    spec = BlockSpec.from_sizes(SIZES)
    T, B, nb, N = 3, 5, len(SIZES), sum(SIZES)
    base = torch.randn(N, generator=g).to(dtype)
    stack = torch.randn(T, N, generator=g).to(dtype)
    shape = {"T": (T,), "T,nb": (T, nb), "B,T,nb": (B, T, nb), "B,T,1": (B, T, 1)}[cshape]
    coeffs = torch.randn(*shape, generator=g)
    out = compose(base, stack, coeffs, spec, backend=backend)
    c3 = coeffs.reshape(1, T, 1) if coeffs.dim() == 1 else (coeffs[None] if coeffs.dim() == 2 else coeffs)
    ref = dense(base, stack, c3.expand(c3.shape[0], T, nb), spec)
    if coeffs.dim() < 3:
        assert out.shape == (N,)
        ref = ref[0]
    else:
        assert out.shape == (B, N)
    assert out.dtype == dtype
    tol = 1e-5 if dtype == torch.float32 else 4e-3
    torch.testing.assert_close(out.double(), ref, atol=tol * 4, rtol=tol)


@pytest.mark.parametrize("backend", BACKENDS)
def test_compose_backends_agree_on_layout_blocks(backend):
    from zoo.architectures import build_architecture, layout_of

    layout = layout_of(build_architecture("mlp", (37,), 7, {"width": 19, "depth": 2}))
    g = torch.Generator().manual_seed(1)
    T, B = 4, 3
    stack = torch.randn(T, layout.n_params, generator=g)
    base = torch.randn(layout.n_params, generator=g)
    coeffs = torch.randn(B, T, len(layout), generator=g)
    out = compose(base, stack, coeffs, layout, backend=backend)
    ref = dense(base, stack, coeffs, BlockSpec.from_layout(layout))
    torch.testing.assert_close(out.double(), ref, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("backend", BACKENDS)
def test_compose_gradcheck(backend):
    g = torch.Generator().manual_seed(2)
    spec = BlockSpec.from_sizes([5, 1, 7])
    T, B, N = 2, 2, 13
    base = torch.randn(N, generator=g, dtype=torch.float64, requires_grad=True)
    stack = torch.randn(T, N, generator=g, dtype=torch.float64, requires_grad=True)
    coeffs = torch.randn(B, T, 3, generator=g, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda b, s, c: compose(b, s, c, spec, backend=backend), (base, stack, coeffs))
    # the fast (random projection) mode on a ragged vector larger than one Triton tile
    spec = BlockSpec.from_sizes([700, 1, 400])
    base = torch.randn(1101, generator=g, dtype=torch.float64, requires_grad=True)
    stack = torch.randn(T, 1101, generator=g, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda b, s, c: compose(b, s, c, spec, backend=backend), (base, stack, coeffs),
                                    fast_mode=True)


@pytest.mark.parametrize("backend", BACKENDS)
def test_compose_gradients_match_dense_autograd(backend):
    g = torch.Generator().manual_seed(3)
    spec = BlockSpec.from_sizes(SIZES)
    T, N = 3, sum(SIZES)
    base = torch.randn(N, generator=g)
    stack = torch.randn(T, N, generator=g)
    coeffs = torch.randn(T, len(SIZES), generator=g)  # broadcast to one composition: grads sum correctly
    upstream = torch.randn(N, generator=g)
    leaves = [t.clone().requires_grad_() for t in (base, stack, coeffs)]
    got = torch.autograd.grad(compose(*leaves, spec, backend=backend), leaves, upstream)
    ref_leaves = [t.clone().double().requires_grad_() for t in (base, stack, coeffs)]
    ref = dense(ref_leaves[0], ref_leaves[1], ref_leaves[2][None], spec)[0]
    want = torch.autograd.grad(ref, ref_leaves, upstream.double())
    for a, b in zip(got, want):
        torch.testing.assert_close(a.double(), b, atol=1e-4, rtol=1e-4)


def test_compose_without_base_and_single_block():
    stack = torch.arange(6.0).reshape(2, 3)
    out = compose(None, stack, torch.tensor([2.0, -1.0]), backend="torch")
    assert torch.equal(out, torch.tensor([-3.0, -2.0, -1.0]))


def test_compose_torch_compile_fullgraph():
    spec = BlockSpec.from_sizes([5, 11])
    base, stack = torch.randn(16), torch.randn(3, 16)
    coeffs = torch.randn(2, 3, 2, requires_grad=True)

    def f(c):
        return compose(base, stack, c, spec, backend="torch").square().sum()

    compiled = torch.compile(f, fullgraph=True, backend="aot_eager")
    got = compiled(coeffs)
    torch.testing.assert_close(got, f(coeffs))
    (g1,) = torch.autograd.grad(got, coeffs)
    (g2,) = torch.autograd.grad(f(coeffs), coeffs)
    torch.testing.assert_close(g1, g2)


def test_compose_is_a_registered_library_op():
    assert hasattr(torch.ops.weightzoo_kernels, "compose")
    out = torch.ops.weightzoo_kernels.compose(torch.zeros(4), torch.ones(1, 4), torch.full((1, 1, 1), 3.0), [4], "torch")
    assert torch.equal(out, torch.full((1, 4), 3.0))


def test_compose_bad_inputs_fail_before_launch():
    base, stack = torch.randn(10), torch.randn(2, 10)
    with pytest.raises(ValueError, match="base has 9"):
        compose(torch.randn(9), stack, torch.ones(2), backend="triton")
    with pytest.raises(TypeError, match="dtype mismatch"):
        compose(base.double(), stack, torch.ones(2), backend="triton")
    with pytest.raises(ValueError, match="must tile the whole vector"):
        compose(base, stack, torch.ones(2, 2), [4, 5], backend="triton")
    with pytest.raises(ValueError, match="do not fit"):
        compose(base, stack, torch.ones(3, 2), [4, 6], backend="triton")
    with pytest.raises(ValueError, match="device mismatch"):
        compose(base, stack, torch.ones(2, device="meta"), backend="torch")
    with pytest.raises(ValueError, match="unknown backend .*choose from"):
        compose(base, stack, torch.ones(2), backend="cuda")
    with pytest.raises(TypeError, match="floating"):
        compose(base, stack.int(), torch.ones(2))
    with pytest.raises(ValueError, match="contiguous"):
        BlockSpec(("a", "b"), (0, 5), (4, 6))


def test_auto_backend_on_cpu_is_torch_and_triton_needs_interpreter(monkeypatch):
    x = torch.zeros(3)
    assert resolve_backend("auto", x) == "torch"
    assert resolve_backend("triton", x) == "triton"  # interpreter is on in this test module
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    with pytest.raises(RuntimeError, match="TRITON_INTERPRET"):
        resolve_backend("triton", x)


def test_block_spec_helpers():
    spec = BlockSpec.uniform(10, 4)
    assert spec.sizes == (4, 4, 2)
    assert spec.split(3).sizes == (3, 1, 3, 1, 2)
    block, start, end = spec.chunk_table(3, torch.device("cpu"))
    assert block.tolist() == [0, 0, 1, 1, 2] and start.tolist() == [0, 3, 4, 7, 8] and end.tolist() == [3, 4, 7, 8, 10]
    assert sum(sum(s[4]) for s in spec.segments(3)) == 10
    assert as_block_spec(None, 7).sizes == (7,)
