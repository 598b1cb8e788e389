import pytest
import torch

from zoo.architectures import build_architecture, layout_of, load_flat_weights
from zoo.augment import Compose, NoiseAugment, PermutationAugment
from zoo.errors import ZooError
from zoo.normalization import compute_norm_stats, denormalize, normalize
from zoo.tokens import detokenize, token_map, tokenize

ARCHS = [("mlp", (40,), {"width": 16}), ("cnn1d", (40,), {"width": 8}), ("cnn2d", (1, 28, 28), {})]


def _flat(module):
    return torch.cat([p.detach().reshape(-1) for p in module.parameters()])


@pytest.mark.parametrize("name,shape,cfg", ARCHS)
def test_permutation_augment_keeps_function_per_row(name, shape, cfg):
    torch.manual_seed(0)
    m = build_architecture(name, shape, 10, cfg)
    lay = layout_of(m)
    flat = torch.stack([_flat(m), _flat(build_architecture(name, shape, 10, cfg))])
    out = PermutationAugment(lay, seed=3)(flat)
    x = torch.randn(5, *shape)
    for i in range(2):
        assert not torch.equal(out[i], flat[i])
        assert torch.equal(out[i].sort().values, flat[i].sort().values)
        ref = load_flat_weights(m, flat[i])(x)
        assert torch.allclose(load_flat_weights(m, out[i])(x), ref, atol=1e-5)


def test_permutation_augment_needs_groups_and_is_seeded():
    lay = layout_of(build_architecture("mlp", (40,), 10, {"width": 4, "depth": 0}))
    with pytest.raises(ZooError, match="no permutation groups"):
        PermutationAugment(lay)
    lay = layout_of(build_architecture("mlp", (40,), 10, {"width": 8}))
    w = torch.randn(lay.n_params)
    assert torch.equal(PermutationAugment(lay, seed=1)(w), PermutationAugment(lay, seed=1)(w))
    assert torch.equal(PermutationAugment(lay, p=0.0, seed=1)(w), w)


def test_noise_statistics_and_compose():
    w = torch.zeros(200_000)
    n = NoiseAugment(0.1, seed=0)(w)
    assert abs(n.mean().item()) < 2e-3 and n.std().item() == pytest.approx(0.1, rel=0.02)
    assert torch.equal(NoiseAugment(0.1, mode="multiplicative", seed=0)(w), w)
    lay = layout_of(build_architecture("mlp", (40,), 10, {"width": 8}))
    x = torch.randn(lay.n_params)
    c = Compose([PermutationAugment(lay, seed=0), NoiseAugment(0.0)])
    assert torch.equal(c(x), PermutationAugment(lay, seed=0)(x))


def test_norm_stats_streaming_equals_dense_and_round_trips():
    lay = layout_of(build_architecture("mlp", (40,), 10, {"width": 8}))
    w = torch.randn(30, lay.n_params) * 3 + 1
    w[5] = float("nan")
    stats = compute_norm_stats([w[:7], w[7:20], w[20:]], lay)
    good = torch.cat([w[:5], w[6:]])
    for k, e in enumerate(lay.entries):
        block = good[:, e.offset:e.offset + e.numel].double()
        assert stats.mean[k].item() == pytest.approx(block.mean().item(), rel=1e-9)
        assert stats.std[k].item() == pytest.approx(block.std(unbiased=False).item(), rel=1e-6)
    z = normalize(good, stats, lay)
    assert torch.allclose(denormalize(z, stats, lay), good, atol=1e-5)


@pytest.mark.parametrize("name,shape,cfg", ARCHS)
@pytest.mark.parametrize("dim", [None, 5])
def test_tokens_round_trip_and_cover_every_parameter(name, shape, cfg, dim):
    lay = layout_of(build_architecture(name, shape, 10, cfg))
    t = token_map(lay, dim)
    used = t.index[t.mask]
    assert torch.equal(used.sort().values, torch.arange(lay.n_params))
    w = torch.randn(2, lay.n_params)
    assert torch.equal(detokenize(tokenize(w, t), t), w)
    if dim is None:
        n_units = sum(lay.group_sizes) + 10  # hidden units/channels plus the output neurons
        assert t.n_tokens == n_units


def test_token_positions_on_a_tiny_mlp():
    lay = layout_of(build_architecture("mlp", (3,), 2, {"width": 2, "depth": 1}))
    t = token_map(lay)
    assert t.token_dim == 4  # 3 inputs + bias
    assert t.positions.tolist() == [[0, 0, 0], [1, 0, 1], [2, 1, 0], [3, 1, 1]]
    # unit 1 of layer 0: weights 3..5 then its bias at offset 6 + 1
    assert t.index[1].tolist() == [3, 4, 5, 7]
    assert t.mask[2].tolist() == [True, True, True, False]
