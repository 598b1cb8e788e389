import shutil
import tracemalloc

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

import zoo
from zoo.augment import PermutationAugment
from zoo.dataset import ZooDataset, norm_stats
from zoo.errors import ZooError


def test_flat_view_and_targets(tiny_zoo):
    arch = sorted(tiny_zoo.architectures)[0]
    ds = ZooDataset(tiny_zoo, split="all", target="test_acc", arch=arch)
    assert len(ds) == 4
    x, y = ds[0]
    mid = int(ds.model_ids[0])
    assert torch.equal(x, tiny_zoo.weights([mid])[0])
    assert y.item() == pytest.approx(tiny_zoo.models.loc[mid, "test_acc"])
    xs, ys = next(iter(DataLoader(ds, batch_size=4)))
    assert xs.shape == (4, tiny_zoo.layout(arch).n_params) and ys.shape == (4,)


def test_several_architectures_need_arch(tiny_zoo):
    with pytest.raises(ZooError, match="several architectures"):
        ZooDataset(tiny_zoo, split="all")


def test_splits_are_disjoint_and_by_model(tiny_zoo):
    arch = sorted(tiny_zoo.architectures)[0]
    parts = {s: set(ZooDataset(tiny_zoo, split=s, arch=arch, target=None).model_ids) for s in ("train", "val", "test")}
    assert not (parts["train"] & parts["val"]) and not (parts["train"] & parts["test"])
    cell = tiny_zoo.models.set_index("model_id")["grid_cell"]
    by_cell = {s: ZooDataset(tiny_zoo, split=s, arch=arch, split_name="by_cell", target=None).model_ids
               for s in ("train", "val", "test")}
    cells = [set(cell[list(ids)]) for ids in by_cell.values()]
    assert all(not (a & b) for i, a in enumerate(cells) for b in cells[i + 1:])


def test_layers_and_tokens_views(tiny_zoo):
    arch = sorted(tiny_zoo.architectures)[0]
    layers, _ = ZooDataset(tiny_zoo, split="all", arch=arch, view="layers")[0]
    lay = tiny_zoo.layout(arch)
    assert list(layers) == lay.names and layers["layers.0.weight"].shape == lay["layers.0.weight"].shape
    tok, _ = ZooDataset(tiny_zoo, split="all", arch=arch, view="tokens")[0]
    width = lay["layers.0.weight"].shape[0]
    assert tok["tokens"].shape[0] == width + 10  # one token per neuron: hidden units and outputs
    assert tok["mask"].shape == tok["tokens"].shape and tok["positions"].shape == (width + 10, 3)


def test_normalisation_uses_train_split_only_and_is_stored(tiny_zoo_path, tmp_path):
    path = tmp_path / "z.zarr"
    shutil.copytree(tiny_zoo_path, path)
    z = zoo.open(path, mode="r+")
    arch = sorted(z.architectures)[0]
    train = ZooDataset(z, split="train", arch=arch, target=None)
    w = torch.stack([train[i][0] for i in range(len(train))])
    stats = norm_stats(z, arch)
    lay = z.layout(arch)
    for k, e in enumerate(lay.entries):
        block = w[:, e.offset:e.offset + e.numel]
        assert stats.mean[k].item() == pytest.approx(block.mean().item(), abs=1e-5)
    assert any(k.startswith("default/") for k in zoo.open(path).meta["normalization"])
    ds = ZooDataset(zoo.open(path), split="train", arch=arch, normalize=True, target=None)
    xn = torch.stack([ds[i][0] for i in range(len(ds))])
    first = lay.entries[0]
    assert xn[:, first.offset:first.offset + first.numel].mean().abs().item() < 1e-4


def test_permutation_augmentation_keeps_the_function(tiny_zoo):
    arch = sorted(tiny_zoo.architectures)[0]
    plain = ZooDataset(tiny_zoo, split="all", arch=arch, target=None)
    aug = ZooDataset(tiny_zoo, split="all", arch=arch, target=None,
                     transform=PermutationAugment(tiny_zoo.layout(arch), seed=0))
    w, mid = plain[0]
    wp, _ = aug[0]
    assert not torch.equal(w, wp)
    net = tiny_zoo.empty_model(mid)
    from zoo.architectures import load_flat_weights

    x, _ = tiny_zoo.task_data(mid, "test")
    ref = load_flat_weights(net, w)(x[:64])
    assert torch.allclose(load_flat_weights(net, wp)(x[:64]), ref, atol=1e-5)


def test_streaming_memory_does_not_grow_with_the_zoo(tmp_path):
    """Iterating a zoo holds one chunk at a time: peak traced memory stays far below the zoo's size."""
    import pandas as pd

    from zoo.architectures import build_architecture, layout_of
    from zoo.format import architecture_key

    m = build_architecture("mlp", (40,), 10, {"width": 64, "depth": 2})
    lay = layout_of(m)
    key = architecture_key("mlp", {"width": 64}, (40,), 10)
    peaks = {}
    for n in (50, 200):
        models = pd.DataFrame({"model_id": np.arange(n), "arch_key": key, "task": "t"})
        z = zoo.create_zoo(tmp_path / f"z{n}.zarr", models=models,
                           architectures={key: {"name": "mlp", "config": {"width": 64}, "input_shape": [40],
                                                "n_classes": 10, "layout": lay.to_record()}},
                           tasks={"t": {"source": "mnist1d"}}, checkpoint_epochs=[0], metric_names=["test_acc"],
                           n_epochs=1)
        for i in range(n):
            z.write_model(i, weights=torch.randn(1, lay.n_params), metrics={}, status="ok", record={})
        ds = ZooDataset(zoo.open(tmp_path / f"z{n}.zarr"), split="all", target=None)
        tracemalloc.start()
        total = 0.0
        for x, _ in DataLoader(ds, batch_size=8):
            total += float(x.sum())
        peaks[n] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    zoo_bytes = 200 * lay.n_params * 4
    assert peaks[200] < zoo_bytes / 4
    assert peaks[200] < 2 * peaks[50] + 1_000_000
