"""population_forward, permute and layer_stats against the zoo's modules (Triton in the interpreter)."""

from __future__ import annotations

import os

os.environ.setdefault("TRITON_INTERPRET", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from kernels import STAT_NAMES, layer_stats, permute, population_forward  # noqa: E402
from kernels.errors import LayoutMismatchError  # noqa: E402
from zoo.architectures import build_architecture, layout_of, load_flat_weights  # noqa: E402

ARCHS = [
    ("mlp", (37,), {"width": 19, "depth": 2, "activation": "tanh"}),
    ("cnn1d", (40,), {"width": 5, "depth": 2}),
    ("cnn2d", (1, 12, 12), {"channels": (4, 3), "kernels": (3, 3), "pools": (2, 1), "hidden": 8}),
]


def _population(name, shape, cfg, P=3, seed=0):
    torch.manual_seed(seed)
    module = build_architecture(name, shape, 7, cfg)
    layout = layout_of(module)
    flat = torch.randn(P, layout.n_params) * 0.3
    x = torch.randn(5, *shape)
    return module, layout, flat, x


def _loop(module, flat, x):
    with torch.no_grad():
        return torch.stack([load_flat_weights(module, f)(x) for f in flat])


@pytest.mark.parametrize("backend", ["torch", "triton"])
@pytest.mark.parametrize("arch", ARCHS, ids=[a[0] for a in ARCHS])
def test_population_forward_matches_module_loop(backend, arch):
    module, _, flat, x = _population(*arch)
    out = population_forward(flat, module, x, backend=backend)
    assert out.shape == (3, 5, 7)
    torch.testing.assert_close(out, _loop(module, flat, x), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("activation", ["relu", "sigmoid", "gelu", "leaky_relu", "silu"])
def test_population_forward_triton_activations_from_layout(activation):
    module, layout, flat, x = _population("mlp", (21,), {"width": 33, "depth": 3, "activation": activation}, P=2)
    out = population_forward(flat, layout, x, activation=activation, backend="triton")
    torch.testing.assert_close(out, _loop(module, flat, x), atol=1e-5, rtol=1e-5)


def test_population_forward_fp16():
    module, layout, flat, x = _population("mlp", (37,), {"width": 19, "depth": 2})
    half = flat.half()
    a = population_forward(half, module, x, backend="triton")
    b = population_forward(half, module, x, backend="torch")
    assert a.dtype == torch.float16
    torch.testing.assert_close(a.float(), b.float(), atol=2e-3, rtol=2e-3)
    torch.testing.assert_close(a.float(), _loop(module, half.float(), x), atol=1e-2, rtol=1e-2)


def test_population_forward_gradient_matches_torch():
    module, _, flat, x = _population("mlp", (37,), {"width": 19, "depth": 2})
    grads = []
    for backend in ("torch", "triton"):
        f = flat.clone().requires_grad_()
        population_forward(f, module, x, backend=backend).square().sum().backward()
        grads.append(f.grad)
    torch.testing.assert_close(grads[0], grads[1], atol=1e-5, rtol=1e-5)
    assert grads[0].abs().sum() > 0


def test_population_forward_bad_inputs():
    module, layout, flat, x = _population("mlp", (37,), {"width": 19, "depth": 2})
    with pytest.raises(LayoutMismatchError, match="parameters per model"):
        population_forward(flat[:, :-1], module, x, backend="triton")
    with pytest.raises(ValueError, match="features per example"):
        population_forward(flat, module, torch.randn(5, 36), backend="triton")
    cnn_layout = layout_of(build_architecture("cnn1d", (40,), 7, {"width": 5}))
    with pytest.raises(ValueError, match="only MLPs"):
        population_forward(torch.randn(1, cnn_layout.n_params), cnn_layout, torch.randn(2, 40))


@pytest.mark.parametrize("backend", ["torch", "triton"])
@pytest.mark.parametrize("arch", ARCHS, ids=[a[0] for a in ARCHS])
def test_permute_equals_layout_index_and_preserves_function(backend, arch):
    module, layout, flat, x = _population(*arch)
    g = torch.Generator().manual_seed(4)
    perms = [torch.stack([torch.randperm(s, generator=g) for _ in range(3)]) for s in layout.group_sizes]
    out = permute(flat, layout, perms, backend=backend)
    gathered = torch.stack([flat[p][layout.permutation_index([q[p] for q in perms])] for p in range(3)])
    assert torch.equal(out, gathered)
    assert not torch.equal(out, flat)
    torch.testing.assert_close(_loop(module, out, x), _loop(module, flat, x), atol=1e-5, rtol=1e-5)


def test_permute_shared_perm_fp16_and_gradient():
    module, layout, flat, _ = _population(*ARCHS[1])
    perms = [torch.randperm(s) for s in layout.group_sizes]  # one perm shared by all models
    half = flat.half()
    out = permute(half, layout, perms, backend="triton")
    assert torch.equal(out, half[:, layout.permutation_index(perms)])
    f = flat.clone().requires_grad_()
    upstream = torch.randn_like(flat)
    (grad,) = torch.autograd.grad(permute(f, layout, perms, backend="triton"), f, upstream)
    # the gradient of a gather is the scatter of the upstream gradient back through the same index
    expect = torch.zeros_like(flat).index_copy_(1, layout.permutation_index(perms), upstream)
    assert torch.equal(grad, expect)


def test_permute_bad_inputs():
    _, layout, flat, _ = _population(*ARCHS[0])
    sizes = layout.group_sizes
    with pytest.raises(ValueError, match="permutation of range"):
        permute(flat, layout, [torch.zeros(s, dtype=torch.long) for s in sizes], backend="triton")
    with pytest.raises(ValueError, match="expected"):
        permute(flat, layout, [torch.randperm(s + 1) for s in sizes], backend="triton")
    with pytest.raises(TypeError, match="integer"):
        permute(flat, layout, [torch.randperm(s).float() for s in sizes], backend="triton")
    with pytest.raises(ValueError, match="one per group"):
        permute(flat, layout, [], backend="triton")


@pytest.mark.parametrize("backend", ["torch", "triton"])
def test_layer_stats_matches_numpy(backend):
    _, layout, flat, _ = _population("mlp", (300,), {"width": 19, "depth": 2}, P=4)  # 5700-element first weight
    stats = layout_stats = layer_stats(flat, layout, backend=backend)
    assert stats.shape == (4, len(layout), len(STAT_NAMES)) and STAT_NAMES[0] == "mean"
    for p in range(4):
        for e, entry in enumerate(layout):
            v = flat[p, entry.offset:entry.offset + entry.numel].double().numpy()
            want = [v.mean(), v.var(), *np.quantile(v, [0, 0.25, 0.5, 0.75, 1.0])]
            np.testing.assert_allclose(layout_stats[p, e].double().numpy(), want, rtol=1e-5, atol=1e-6)


def test_layer_stats_fp16_and_errors():
    _, layout, flat, _ = _population(*ARCHS[2])
    half = flat.half()
    a = layer_stats(half, layout, backend="triton")
    b = layer_stats(half, layout, backend="torch")
    assert a.dtype == torch.float32
    torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)
    assert layer_stats(half[0], layout, backend="triton").shape == (len(layout), 7)
    with pytest.raises(LayoutMismatchError):
        layer_stats(flat[:, 1:], layout, backend="triton")
