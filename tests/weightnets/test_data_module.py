"""ZooDataModule: views, targets, normalisation, augmentation, selection, and the clear errors of bad input."""

import numpy as np
import pytest
import torch
from helpers.planted import N_CLASSES

import kernels
import zoo
from weightnets import ZooDataModule
from weightnets.views import (
    hidden_layer_names,
    layer_matrix,
    layer_names,
    output_layer_name,
    resolve_layer,
)
from zoo.architectures import architecture_record


def _first(dm, split="train"):
    return next(iter(dm.loader(split)))


@pytest.mark.parametrize("view, shape", [("flat", None), ("stats", (6, 7)), ("layers.1", (6, 7)),
                                         ("layers.1.weight", (6, 6)), ("layers.2", (4, 7))])
def test_views_have_their_shapes_and_dtypes(planted_tree, view, shape):
    dm = ZooDataModule(planted_tree, target="classes", view=view, batch_size=8)
    batch = _first(dm)
    x, y = batch["x"], batch["y"]
    n_params = dm.spec.layout().n_params
    assert x.dtype == torch.float32 and tuple(x.shape[1:]) == (shape or (n_params,)) and x.shape[0] == 8
    assert y.dtype == torch.float32 and tuple(y.shape) == (8, N_CLASSES)
    assert batch["model_id"].dtype == torch.int64 and batch["group"].dtype == torch.int64
    assert set(batch["group"].tolist()) <= {0, 1} and batch["arch"] == dm.spec.arch_keys[0]
    assert dm.spec.target_kind == "multilabel" and dm.spec.groups == ["0", "120"]
    hot = zoo.class_multi_hot(zoo.open(planted_tree), batch["model_id"].numpy())
    assert torch.equal(y, torch.from_numpy(hot.astype(np.float32)))


def test_layers_view_is_a_dict_of_the_layout_tensors(planted_tree):
    dm = ZooDataModule(planted_tree, target="test_acc", view="layers", batch_size=4)
    x = _first(dm)["x"]
    layout = dm.spec.layout()
    assert list(x) == layout.names and all(tuple(x[e.name].shape) == (4, *e.shape) for e in layout)


def test_conv_layers_become_matrices_out_by_in_times_k_with_the_bias_last():
    _, rec = architecture_record("cnn1d", (12,), 3, {"width": 4, "depth": 2, "kernel_size": 3})
    layout = zoo.ParamLayout.from_record(rec["layout"])
    assert layer_names(layout) == ["convs.0", "convs.1", "head"]
    assert hidden_layer_names(layout) == ["convs.0", "convs.1"] and output_layer_name(layout) == "head"
    flat = torch.randn(2, layout.n_params)
    ref = resolve_layer(layout, "convs.1")
    mat = layer_matrix(flat, ref)
    w = layout.unflatten(flat)["convs.1.weight"]  # [2, out 4, in 4, k 3]
    b = layout.unflatten(flat)["convs.1.bias"]
    assert mat.shape == (2, 4, 4 * 3 + 1) and ref.shape == (4, 13)
    c, t = 2, 1
    assert torch.equal(mat[:, :, c * 3 + t], w[:, :, c, t]) and torch.equal(mat[:, :, -1], b)
    # permuting the input channels (the units of convs.0) moves whole blocks of k columns; rows stay put
    perm0 = torch.tensor([2, 0, 3, 1])
    perms = [perm0, torch.arange(4)]
    moved = layer_matrix(kernels.permute(flat, layout, perms), ref)
    cols = torch.cat([torch.arange(3) + 3 * int(p) for p in perm0] + [torch.tensor([12])])
    assert torch.equal(moved, mat[:, :, cols])
    # permuting its output channels permutes rows
    perm1 = torch.tensor([3, 1, 0, 2])
    moved = layer_matrix(kernels.permute(flat, layout, [torch.arange(4), perm1]), ref)
    assert torch.equal(moved, mat[:, perm1])


def test_normalisation_uses_the_train_models_only(planted_tree):
    dm = ZooDataModule(planted_tree, target="classes", view="flat", batch_size=256)
    train = torch.cat([b["x"] for b in dm.loader("train")])
    val = torch.cat([b["x"] for b in dm.loader("val")])
    layout = dm.spec.layout()
    for name, t in layout.unflatten(train).items():
        assert abs(float(t.mean())) < 1e-4 and abs(float(t.std(unbiased=False)) - 1) < 1e-3, name
    assert max(abs(float(t.mean())) for t in layout.unflatten(val).values()) > 1e-3
    assert len(train) == dm.spec.n_examples["train"] and len(val) == dm.spec.n_examples["val"]


def test_permutation_augmentation_changes_only_training_batches(planted_tree):
    dm = ZooDataModule(planted_tree, target="classes", view="flat", normalize=False, augment=1.0, batch_size=16)
    z = zoo.open(planted_tree)
    batch = _first(dm)
    stored = z.weights(batch["model_id"].tolist())
    assert not torch.equal(batch["x"], stored)
    assert torch.equal(batch["x"].sort(dim=1).values, stored.sort(dim=1).values)
    val = _first(dm, "val")
    assert torch.equal(val["x"], z.weights(val["model_id"].tolist()))


def test_per_checkpoint_metric_targets_and_selection(planted_tree):
    dm = ZooDataModule(planted_tree, select="n_classes_trained >= 2", checkpoint="all", target="test_acc",
                       view="layers.1", batch_size=512)
    z = zoo.open(planted_tree)
    rows = [b for b in dm.loader("train")]
    ids = torch.cat([b["model_id"] for b in rows])
    ckpt = torch.cat([b["checkpoint"] for b in rows])
    y = torch.cat([b["y"] for b in rows])
    assert dm.spec.target_kind == "regression" and y.dtype == torch.float32 and y.dim() == 1
    assert set(ckpt.tolist()) == {0, 1}
    acc = z.metric("test_acc")
    assert np.allclose(y.numpy(), acc[ids.numpy(), ckpt.numpy()])
    assert (z.models.loc[ids.numpy(), "n_classes_trained"] >= 2).all()
    train_ids = set(dm.split_models("train")["model_id"])
    assert set(ids.tolist()) <= train_ids and not train_ids & set(dm.split_models("test")["model_id"])
    vals = acc[sorted(train_ids)][:, [0, 1]].ravel()
    assert dm.spec.target_mean == pytest.approx([vals.mean()], rel=1e-5)


def test_mixed_widths_phases_and_landscape_targets(mixed_grid):
    dm = ZooDataModule(mixed_grid, target="phase", view="stats", batch_size=64)
    assert dm.spec.target_kind == "multiclass" and dm.spec.target_names == ["I", "II"]
    assert len(dm.spec.arch_keys) == 3  # two MLP widths and a 1-D CNN, each 6 tensors
    seen = []
    for split in ("train", "val", "test"):
        for b in dm.loader(split):
            assert b["y"].dtype == torch.int64 and b["x"].shape[1:] == (6, 7)
            assert len(set(zoo.open(mixed_grid).models.loc[b["model_id"].numpy(), "arch_key"])) == 1
            seen += b["model_id"].tolist()
    assert 5 not in seen and 3 not in seen  # the failed model and the unlabelled one
    assert dm.n_missing_target == 1
    land = ZooDataModule(mixed_grid, target="sharpness", view="layers", batch_size=64)
    assert land.spec.target_kind == "regression" and len(land.spec.arch_keys) == 3
    assert {b["arch"] for b in land.loader("train")} == set(land.spec.arch_keys)


@pytest.mark.parametrize("kwargs, needles", [
    (dict(view="layers.7"), ["no layer 'layers.7'", "['layers.0', 'layers.1', 'layers.2']"]),
    (dict(target="accuracy_at_the_end"), ["'accuracy_at_the_end'", "columns:", "'tree_role'"]),
    (dict(select="n_classes_trained > 99"), ["leaves no models"]),
    (dict(select="no_such_column > 1"), ["cannot be evaluated", "no_such_column"]),
    (dict(split="by_nothing"), ["no split 'by_nothing'", "default"]),
])
def test_bad_input_on_a_tree_raises_clear_errors(planted_tree, kwargs, needles):
    args = dict(target="classes", view="flat") | kwargs
    with pytest.raises(zoo.ZooError) as info:
        ZooDataModule(planted_tree, **args).setup()
    for needle in needles:
        assert needle in str(info.value)


def test_mixed_architectures_under_a_single_layer_view_name_them(mixed_grid):
    with pytest.raises(zoo.ZooError) as info:
        ZooDataModule(mixed_grid, target="test_acc", view="layers.1").setup()
    msg = str(info.value)
    assert "needs one architecture" in msg and "select" in msg and "arch_key ==" in msg
    assert all(k in msg for k in zoo.open(mixed_grid).architectures)


def test_classes_on_a_zoo_that_is_not_a_tree(mixed_grid):
    with pytest.raises(zoo.ZooError, match="needs a model-tree zoo.*'phase_grid'"):
        ZooDataModule(mixed_grid, target="classes", view="stats").setup()


@pytest.mark.parametrize("view", ["layers.1", "stats"])
def test_cached_batches_equal_streamed_batches(planted_tree, view):
    def epoch(cache):
        dm = ZooDataModule(planted_tree, target="classes", view=view, batch_size=16, cache=cache)
        batches = list(dm.loader("val"))
        order = torch.cat([b["model_id"] for b in batches]).argsort()
        return [torch.cat([b[k] for b in batches])[order] for k in ("x", "y", "model_id")]

    for a, b in zip(epoch(False), epoch(True)):
        assert torch.allclose(a, b, atol=1e-6)
