import pytest
import torch

from kernels.errors import LayoutMismatchError
from kernels.layout import ParamLayout
from zoo.architectures import build_architecture, layout_of, load_flat_weights
from zoo.errors import ArchitectureMismatchError, UnknownNameError

ARCHS = [("mlp", (40,), {"width": 16, "depth": 2}), ("cnn1d", (40,), {"width": 8}),
         ("cnn2d", (1, 28, 28), {"activation": "relu"})]


def test_model_zoos_cnn_has_2464_parameters():
    m = build_architecture("cnn2d", (1, 28, 28), 10)
    assert layout_of(m).n_params == 2464
    assert m(torch.randn(3, 1, 28, 28)).shape == (3, 10)


@pytest.mark.parametrize("name,shape,cfg", ARCHS)
def test_flatten_unflatten_and_record_round_trip(name, shape, cfg):
    m = build_architecture(name, shape, 10, cfg)
    lay = layout_of(m)
    flat = torch.cat([p.detach().reshape(-1) for p in m.parameters()])
    parts = lay.unflatten(flat)
    for n, p in m.named_parameters():
        assert torch.equal(parts[n], p.detach())
    assert torch.equal(lay.flatten(parts), flat)
    again = ParamLayout.from_record(lay.to_record())
    assert again.to_record() == lay.to_record()
    assert again.n_params == flat.numel()
    starts = [a for a, _ in lay.layer_slices()]
    assert starts == sorted(starts) and starts[0] == 0


@pytest.mark.parametrize("name,shape,cfg", ARCHS)
def test_permutation_index_keeps_the_function(name, shape, cfg):
    torch.manual_seed(0)
    m = build_architecture(name, shape, 10, cfg)
    lay = layout_of(m)
    flat = torch.cat([p.detach().reshape(-1) for p in m.parameters()])
    x = torch.randn(7, *shape)
    ref = m(x)
    idx = lay.permutation_index(lay.random_permutations(torch.Generator().manual_seed(1)))
    assert not torch.equal(flat[idx], flat)
    assert torch.equal(torch.sort(idx).values, torch.arange(lay.n_params))
    load_flat_weights(m, flat[idx])
    assert torch.allclose(m(x), ref, atol=1e-5)


def test_from_shapes_is_from_module_without_a_module():
    module = build_architecture("cnn2d", (1, 28, 28), 10, {})
    perm, groups = module.permutation_spec()
    shapes = [(n, tuple(p.shape)) for n, p in module.named_parameters()]
    assert ParamLayout.from_shapes(shapes, perm, groups) == layout_of(module)
    plain = ParamLayout.from_shapes([("a.w", (2, 3)), ("a.b", [2]), ("head", (4,)), ("c.d.w", (1,))])
    assert [(e.offset, e.shape, e.layer) for e in plain] == [(0, (2, 3), 0), (6, (2,), 0), (8, (4,), 1), (12, (1,), 2)]
    assert plain.n_params == 13 and not plain.permutable
    moved = ParamLayout.from_shapes([("a.w", (2,)), ("a.b", (2,))], layer_of={"a.b": 5})
    assert [e.layer for e in moved] == [0, 5]


def test_mismatched_weights_name_the_shape():
    m = build_architecture("mlp", (40,), 10, {"width": 8})
    with pytest.raises(ArchitectureMismatchError, match="parameters"):
        load_flat_weights(m, torch.zeros(5))
    lay = layout_of(m)
    bad = {n: torch.zeros(3) for n in lay.names}
    with pytest.raises(LayoutMismatchError, match="layers.0.weight"):  # the layout's own error
        lay.flatten(bad)
    assert issubclass(ArchitectureMismatchError, LayoutMismatchError)


def test_unknown_architecture_lists_registered():
    with pytest.raises(UnknownNameError, match="choose from"):
        build_architecture("resnet9000", (40,), 10)
