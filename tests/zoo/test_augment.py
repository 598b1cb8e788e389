import pytest
import torch

from zoo.architectures import build_architecture, layout_of, load_flat_weights
from zoo.augment import Compose, NoiseAugment, PermutationAugment, batched_permutation_index
from zoo.errors import ZooError

ARCHS = [
    ("mlp", (40,), {"width": 16}),
    ("cnn1d", (40,), {"width": 8}),
    ("cnn2d", (1, 28, 28), {}),
]


def _flat(module: torch.nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1) for p in module.parameters()])


def test_cnn2d_has_the_paper_parameter_count():
    assert layout_of(build_architecture("cnn2d", (1, 28, 28), 10)).n_params == 2464


@pytest.mark.parametrize("name,shape,cfg", ARCHS)
def test_permuted_weights_compute_the_same_function(name, shape, cfg):
    torch.manual_seed(0)
    source = build_architecture(name, shape, 10, cfg)
    layout = layout_of(source)
    flat = torch.stack([_flat(source), _flat(build_architecture(name, shape, 10, cfg))])
    out = PermutationAugment(layout, seed=3)(flat)
    assert out.shape == flat.shape
    assert not torch.equal(out[0], out[1])
    x = torch.randn(6, *shape)
    with torch.no_grad():
        for i in range(2):
            assert not torch.equal(out[i], flat[i])
            assert torch.equal(out[i].sort().values, flat[i].sort().values)  # a bijection on the entries
            ref = load_flat_weights(build_architecture(name, shape, 10, cfg), flat[i])(x)
            got = load_flat_weights(build_architecture(name, shape, 10, cfg), out[i])(x)
            torch.testing.assert_close(got, ref, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name,shape,cfg", ARCHS)
def test_batched_index_matches_the_layout_index(name, shape, cfg):
    layout = layout_of(build_architecture(name, shape, 10, cfg))
    g = torch.Generator().manual_seed(1)
    per_row = [layout.random_permutations(g) for _ in range(3)]
    batched = [torch.stack([row[k] for row in per_row]) for k in range(len(layout.group_sizes))]
    index = batched_permutation_index(layout, batched)
    assert index.shape == (3, layout.n_params)
    for i, perms in enumerate(per_row):
        assert torch.equal(index[i], layout.permutation_index(perms))
        assert torch.equal(index[i].sort().values, torch.arange(layout.n_params))


def test_single_vector_and_seeded_determinism():
    layout = layout_of(build_architecture("mlp", (40,), 10, {"width": 8}))
    w = torch.randn(layout.n_params)
    a = PermutationAugment(layout, seed=1)
    b = PermutationAugment(layout, seed=1)
    first = a(w)
    assert first.shape == w.shape
    assert torch.equal(first, b(w))
    assert not torch.equal(a(w), first)  # the internal generator advances
    assert not torch.equal(PermutationAugment(layout, seed=2)(w), first)
    g1, g2 = torch.Generator().manual_seed(9), torch.Generator().manual_seed(9)
    assert torch.equal(a(w, g1), b(w, g2))


def test_probability_p():
    layout = layout_of(build_architecture("mlp", (40,), 10, {"width": 8}))
    w = torch.randn(200, layout.n_params)
    assert torch.equal(PermutationAugment(layout, p=0.0, seed=1)(w), w)
    out = PermutationAugment(layout, p=0.5, seed=1)(w)
    changed = (out != w).any(dim=1).float().mean().item()
    assert 0.3 < changed < 0.7
    with pytest.raises(ZooError, match="p must be"):
        PermutationAugment(layout, p=1.5)


def test_layout_without_groups_raises():
    layout = layout_of(build_architecture("mlp", (40,), 10, {"width": 4, "depth": 0}))
    with pytest.raises(ZooError, match="no permutation groups"):
        PermutationAugment(layout)


def test_wrong_shape_raises():
    layout = layout_of(build_architecture("mlp", (40,), 10, {"width": 8}))
    with pytest.raises(ZooError, match="n_params"):
        PermutationAugment(layout, seed=0)(torch.zeros(layout.n_params + 1))


def test_additive_noise_statistics_and_seed():
    w = torch.full((400_000,), 2.0)
    out = NoiseAugment(0.1, seed=0)(w)
    noise = out - w
    assert abs(noise.mean().item()) < 1e-3
    assert noise.std().item() == pytest.approx(0.1, rel=0.01)
    assert torch.equal(out, NoiseAugment(0.1, seed=0)(w))
    assert not torch.equal(out, NoiseAugment(0.1, seed=1)(w))
    assert torch.equal(NoiseAugment(0.0, seed=0)(w), w)


def test_multiplicative_noise():
    w = torch.full((400_000,), 3.0)
    out = NoiseAugment(0.2, mode="multiplicative", seed=0)(w)
    ratio = out / w - 1
    assert abs(ratio.mean().item()) < 2e-3
    assert ratio.std().item() == pytest.approx(0.2, rel=0.01)
    assert torch.equal(NoiseAugment(0.2, mode="multiplicative", seed=0)(torch.zeros(10)), torch.zeros(10))


def test_relative_noise_scales_with_each_tensor():
    layout = layout_of(build_architecture("mlp", (40,), 10, {"width": 16, "depth": 1}))
    w = torch.randn(64, layout.n_params)
    scales = [0.01, 1.0, 100.0, 0.5]
    for e, s in zip(layout.entries, scales):
        w[:, e.offset:e.offset + e.numel] *= s
    out = NoiseAugment(0.1, relative=True, layout=layout, seed=0)(w)
    for e, s in zip(layout.entries, scales):
        noise = (out - w)[:, e.offset:e.offset + e.numel]
        assert noise.std().item() == pytest.approx(0.1 * s, rel=0.1)
    with pytest.raises(ZooError, match="layout"):
        NoiseAugment(0.1, relative=True)
    with pytest.raises(ZooError, match="additive"):
        NoiseAugment(0.1, mode="multiplicative", relative=True, layout=layout)
    with pytest.raises(ZooError, match="mode"):
        NoiseAugment(0.1, mode="salt")
    with pytest.raises(ZooError, match="sigma"):
        NoiseAugment(-1.0)


def test_compose_applies_in_order_and_passes_the_generator():
    layout = layout_of(build_architecture("mlp", (40,), 10, {"width": 8}))
    x = torch.randn(4, layout.n_params)
    composed = Compose([PermutationAugment(layout, seed=0), NoiseAugment(0.0)])
    assert torch.equal(composed(x), PermutationAugment(layout, seed=0)(x))
    pipeline = Compose([PermutationAugment(layout), NoiseAugment(0.05)])
    a = pipeline(x, torch.Generator().manual_seed(5))
    b = pipeline(x, torch.Generator().manual_seed(5))
    assert torch.equal(a, b) and not torch.equal(a, x)
    g = torch.Generator().manual_seed(5)
    manual = NoiseAugment(0.05)(PermutationAugment(layout)(x, g), g)
    assert torch.equal(a, manual)
    with pytest.raises(ZooError, match="not callable"):
        Compose([1])
