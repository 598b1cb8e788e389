"""NFN (the nfn package's NP and HNP layers): invariant to hidden-neuron permutations, MLPs and 2-D CNNs,
a clear error for 1-D CNNs."""

import pytest
import torch

import kernels
import zoo
from weightnets.probes import NFNEncoder, nfn_layers
from weightnets.probes.baselines import nfn_features, nfn_network_spec
from zoo.architectures import architecture_record


def _layout(name, shape, config):
    return zoo.ParamLayout.from_record(architecture_record(name, shape, 3, config)[1]["layout"])


@pytest.mark.parametrize("mode", ["np", "hnp"])
@pytest.mark.parametrize("name, shape, config", [
    ("mlp", (5,), {"width": 6, "depth": 2}),
    ("cnn2d", (1, 12, 12), {"channels": [3, 2], "kernels": [3, 3], "pools": [2, 1], "hidden": 5}),
])
def test_nfn_output_is_unchanged_by_a_hidden_neuron_permutation(mode, name, shape, config):
    layout = _layout(name, shape, config)
    layers = nfn_layers(layout)
    torch.manual_seed(0)
    net = NFNEncoder(nfn_network_spec(layers), n_outputs=3, mode=mode, channels=4, depth=2, head_hidden=8).eval()
    flat = torch.randn(4, layout.n_params)
    g = torch.Generator().manual_seed(1)
    perms = [torch.randperm(s, generator=g) for s in layout.group_sizes]
    assert any(not torch.equal(p, torch.arange(len(p))) for p in perms)
    permuted = kernels.permute(flat, layout, perms)
    assert not torch.equal(permuted, flat)
    out = net(nfn_features(layout.unflatten(flat), layers))
    out_p = net(nfn_features(layout.unflatten(permuted), layers))
    assert out.shape == (4, 3) and torch.allclose(out, out_p, atol=1e-5)


def test_nfn_refuses_1d_cnns_and_says_why():
    layout = _layout("cnn1d", (12,), {"width": 4, "depth": 2})
    with pytest.raises(zoo.ZooError, match="1-D convolution.*nfn's NP/HNP layers take dense"):
        nfn_layers(layout, "cnn1d-x")
