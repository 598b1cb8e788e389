import json

import pytest
import torch

from zoo.architectures import build_architecture, layout_of
from zoo.errors import ArchitectureMismatchError, ZooError
from zoo.normalization import NormStats, compute_norm_stats, denormalize, normalize


@pytest.fixture(scope="module")
def layout():
    return layout_of(build_architecture("cnn1d", (40,), 10, {"width": 8}))


def _weights(layout, n=40, seed=0):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(n, layout.n_params, generator=g)
    for k, e in enumerate(layout.entries):  # give every tensor its own location and scale
        w[:, e.offset:e.offset + e.numel] = w[:, e.offset:e.offset + e.numel] * (0.1 + k) + 5.0 * (k - 2)
    return w


def _dense(w, layout):
    mean = torch.stack([w[:, e.offset:e.offset + e.numel].double().mean() for e in layout])
    std = torch.stack([w[:, e.offset:e.offset + e.numel].double().std(unbiased=False) for e in layout])
    return mean, std


def test_stats_equal_the_dense_computation(layout):
    w = _weights(layout)
    stats = compute_norm_stats([w], layout)
    mean, std = _dense(w, layout)
    assert stats.mean.shape == (len(layout),) and stats.std.shape == (len(layout),)
    torch.testing.assert_close(stats.mean, mean, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(stats.std, std, rtol=1e-10, atol=1e-10)


def test_streaming_over_many_batches_equals_one_batch(layout):
    w = _weights(layout, n=37)
    one = compute_norm_stats([w], layout)
    many = compute_norm_stats((w[i:i + 3] for i in range(0, 37, 3)), layout)  # a generator, 13 batches
    uneven = compute_norm_stats([w[:1], w[1:30], w[30:]], layout)
    for s in (many, uneven):
        torch.testing.assert_close(s.mean, one.mean, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(s.std, one.std, rtol=1e-10, atol=1e-12)


def test_non_finite_rows_are_skipped(layout):
    w = _weights(layout, n=20)
    bad = w.clone()
    bad[3, 7] = float("nan")
    bad[11, 0] = float("inf")
    bad[15, -1] = -float("inf")
    stats = compute_norm_stats([bad[:10], bad[10:]], layout)
    keep = [i for i in range(20) if i not in (3, 11, 15)]
    mean, std = _dense(w[keep], layout)
    torch.testing.assert_close(stats.mean, mean)
    torch.testing.assert_close(stats.std, std)
    assert torch.isfinite(stats.mean).all()
    with pytest.raises(ZooError, match="no finite"):
        compute_norm_stats([torch.full((2, layout.n_params), float("nan"))], layout)


def test_normalize_then_denormalize_round_trips(layout):
    w = _weights(layout, n=12)
    stats = compute_norm_stats([w], layout)
    z = normalize(w, stats, layout)
    assert z.shape == w.shape and z.dtype == w.dtype
    for e in layout:
        block = z[:, e.offset:e.offset + e.numel].double()
        assert abs(block.mean().item()) < 1e-4
        assert block.std(unbiased=False).item() == pytest.approx(1.0, rel=1e-4)
    torch.testing.assert_close(denormalize(z, stats, layout), w, rtol=1e-5, atol=1e-5)
    single = normalize(w[0], stats, layout)  # [n_params] works too
    torch.testing.assert_close(single, z[0])
    w3 = w.reshape(3, 4, -1)
    torch.testing.assert_close(normalize(w3, stats, layout), z.reshape(3, 4, -1))


def test_constant_tensor_is_centred_not_scaled_and_record_round_trip(layout):
    w = _weights(layout, n=5)
    bias = layout.entries[1]
    w[:, bias.offset:bias.offset + bias.numel] = 0.5
    stats = compute_norm_stats([w], layout, eps=1e-6)
    assert torch.isnan(stats.std[1]) and stats.constant.tolist() == [i == 1 for i in range(len(layout))]
    z = normalize(w, stats, layout)
    assert torch.isfinite(z).all() and (z[:, bias.offset:bias.offset + bias.numel] == 0).all()
    rec = json.loads(json.dumps(stats.to_record()))
    assert rec["std"][1] is None and rec["constant"]["entries"] == [1]
    back = NormStats.from_record({**rec, "n_models": 5})
    torch.testing.assert_close(back.mean, stats.mean, rtol=0, atol=0)
    torch.testing.assert_close(back.std, stats.std, rtol=0, atol=0, equal_nan=True)


def test_mismatched_shapes_raise(layout):
    stats = compute_norm_stats([_weights(layout, n=4)], layout)
    with pytest.raises(ArchitectureMismatchError):
        normalize(torch.zeros(3, layout.n_params + 1), stats, layout)
    other = layout_of(build_architecture("mlp", (40,), 10, {"width": 4, "depth": 0}))
    with pytest.raises(ArchitectureMismatchError, match="entries"):
        normalize(torch.zeros(other.n_params), stats, other)
    with pytest.raises(ArchitectureMismatchError):
        compute_norm_stats([torch.zeros(2, 5)], layout)
