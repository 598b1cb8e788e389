import pytest
import torch

from kernels.layout import ParamEntry, ParamLayout
from zoo.architectures import build_architecture, layout_of
from zoo.errors import ArchitectureMismatchError, ZooError
from zoo.tokens import detokenize, token_map, tokenize

ARCHS = [
    ("mlp", (40,), {"width": 16}),
    ("cnn1d", (40,), {"width": 8}),
    ("cnn2d", (1, 28, 28), {}),
]


def _layout(name, shape, cfg):
    return layout_of(build_architecture(name, shape, 10, cfg))


@pytest.mark.parametrize("name,shape,cfg", ARCHS)
@pytest.mark.parametrize("dim", [None, 7, 1])
def test_round_trip_and_every_parameter_once(name, shape, cfg, dim):
    layout = _layout(name, shape, cfg)
    t = token_map(layout, dim)
    assert t.index.shape == t.mask.shape == (t.n_tokens, t.token_dim)
    assert t.positions.shape == (t.n_tokens, 3)
    assert torch.equal(t.mask, t.index >= 0)
    used = t.index[t.mask]
    assert used.numel() == layout.n_params
    assert torch.equal(used.sort().values, torch.arange(layout.n_params))
    w = torch.randn(2, 3, layout.n_params)
    tokens = tokenize(w, t)
    assert tokens.shape == (2, 3, t.n_tokens, t.token_dim)
    assert (tokens[..., ~t.mask] == 0).all()
    assert torch.equal(detokenize(tokens, t), w)
    assert torch.equal(detokenize(tokenize(w[0, 0], t), t), w[0, 0])
    assert torch.equal(t.positions[:, 0], torch.arange(t.n_tokens))


@pytest.mark.parametrize("name,shape,cfg", ARCHS)
def test_default_token_count_is_the_number_of_units(name, shape, cfg):
    layout = _layout(name, shape, cfg)
    t = token_map(layout)
    weights = [e for e in layout if len(e.shape) >= 2]
    assert t.n_tokens == sum(e.shape[0] for e in weights) == sum(layout.group_sizes) + 10
    assert t.token_dim == max(e.numel // e.shape[0] + 1 for e in weights)  # every layer has a bias
    assert len({tuple(p) for p in t.positions[:, 1:].tolist()}) == t.n_tokens  # (layer, unit) unique


def test_conv_token_holds_the_kernel_then_the_bias():
    layout = _layout("cnn2d", (1, 28, 28), {})
    t = token_map(layout)
    w = torch.randn(layout.n_params)
    params = layout.unflatten(w)
    tokens = tokenize(w, t)
    # convs.1 is layer 1: token 8 + 2 is output channel 2 of that conv, kernel [8, 5, 5] then bias
    row = tokens[8 + 2]
    assert t.positions[10].tolist() == [10, 1, 2]
    assert torch.equal(row[:200], params["convs.1.weight"][2].reshape(-1))
    assert row[200] == params["convs.1.bias"][2]
    assert (row[201:] == 0).all() and t.mask[10].sum() == 201


def test_positions_on_a_tiny_mlp():
    layout = _layout("mlp", (3,), {"width": 2, "depth": 1})
    # layers.0.weight [2, 3] at 0..5, layers.0.bias [2] at 6..7, layers.1.weight [10, 2] at 8..27, bias 28..37
    t = token_map(layout)
    assert t.token_dim == 4 and t.n_tokens == 12
    assert t.positions[:4].tolist() == [[0, 0, 0], [1, 0, 1], [2, 1, 0], [3, 1, 1]]
    assert t.positions[-1].tolist() == [11, 1, 9]
    assert t.index[0].tolist() == [0, 1, 2, 6]
    assert t.index[1].tolist() == [3, 4, 5, 7]
    assert t.index[2].tolist() == [8, 9, 28, -1]
    assert t.mask[2].tolist() == [True, True, True, False]


def test_splitting_a_unit_over_several_tokens():
    layout = _layout("mlp", (3,), {"width": 2, "depth": 1})
    t = token_map(layout, token_dim=3)
    # layer-0 units have 4 values -> 2 tokens each; layer-1 units have 3 -> 1 token each
    assert t.n_tokens == 2 * 2 + 10
    assert t.positions[:5].tolist() == [[0, 0, 0], [1, 0, 0], [2, 0, 1], [3, 0, 1], [4, 1, 0]]
    assert t.index[0].tolist() == [0, 1, 2] and t.index[1].tolist() == [6, -1, -1]
    assert t.index[2].tolist() == [3, 4, 5] and t.index[3].tolist() == [7, -1, -1]
    w = torch.randn(5, layout.n_params)
    assert torch.equal(detokenize(tokenize(w, t), t), w)


def test_weight_without_bias_and_lone_vectors():
    entries = (
        ParamEntry("a.weight", 0, (3, 2), 0),      # no bias in layer 0
        ParamEntry("b.weight", 6, (2, 3), 1),
        ParamEntry("b.bias", 12, (2,), 1),
        ParamEntry("scale", 14, (4,), 2),           # a lone 1-D tensor: one token per element
    )
    layout = ParamLayout(entries)
    t = token_map(layout)
    assert t.n_tokens == 3 + 2 + 4 and t.token_dim == 4
    assert t.index[0].tolist() == [0, 1, -1, -1]
    assert t.index[3].tolist() == [6, 7, 8, 12]
    assert t.index[5].tolist() == [14, -1, -1, -1]
    assert t.positions[5:].tolist() == [[5, 2, 0], [6, 2, 1], [7, 2, 2], [8, 2, 3]]
    w = torch.arange(layout.n_params, dtype=torch.float32)
    assert torch.equal(detokenize(tokenize(w, t), t), w)


def test_padding_stays_zero_even_with_non_finite_weights():
    layout = _layout("mlp", (3,), {"width": 2, "depth": 1})
    t = token_map(layout)
    w = torch.randn(layout.n_params)
    w[0] = float("nan")  # the padding slots gather index 0 internally
    tokens = tokenize(w, t)
    assert (tokens[~t.mask] == 0).all()
    assert torch.isnan(tokens[0, 0])


def test_errors():
    layout = _layout("mlp", (3,), {"width": 2, "depth": 1})
    t = token_map(layout)
    with pytest.raises(ZooError, match="token_dim"):
        token_map(layout, 0)
    with pytest.raises(ArchitectureMismatchError):
        tokenize(torch.zeros(layout.n_params + 1), t)
    with pytest.raises(ArchitectureMismatchError):
        detokenize(torch.zeros(t.n_tokens + 1, t.token_dim), t)


def test_gradients_flow_through_tokens():
    layout = _layout("mlp", (3,), {"width": 2, "depth": 1})
    t = token_map(layout)
    w = torch.randn(layout.n_params, requires_grad=True)
    detokenize(tokenize(w, t) * 2.0, t).sum().backward()
    assert torch.equal(w.grad, torch.full_like(w, 2.0))
