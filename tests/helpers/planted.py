"""Tiny zoos with planted signals for the weightnets tests, written without any training (fast).

``make_planted_tree``: a model-tree zoo of ``n_trees`` random MLP bases (input 5, hidden 6 and 6, 4
classes); each child is its base plus, for every class it "was trained on", a fixed rank-one pattern
``s · a_k b_kᵀ`` in the hidden layer ``layers.1``, plus noise. The multi-hot class set is therefore
readable from ``layers.1`` (linearly, after removing the tree's mean), and ``test_acc`` is a planted
linear function of ``layers.1``. A bool column ``class_<k>`` per class, ``tree_id``, ``derivation`` and a
``default`` split make it look like a generated tree zoo to ``zoo.class_multi_hot`` and the data module.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

import zoo
from helpers.trees import one_thread
from zoo.architectures import architecture_record
from zoo.splits import assign_split

N_CLASSES = 4


def make_planted_tree(path, n_per_tree: int = 120, n_trees: int = 2, seed: int = 0, noise: float = 0.05,
                      strength: float = 0.6) -> zoo.Zoo:
    rng = np.random.default_rng(seed)
    key, arch = architecture_record("mlp", (5,), N_CLASSES, {"width": 6, "depth": 2, "activation": "relu"})
    layout = zoo.ParamLayout.from_record(arch["layout"])
    w1 = layout["layers.1.weight"]
    a = rng.standard_normal((N_CLASSES, 6))
    b = rng.standard_normal((N_CLASSES, 6))
    probe = rng.standard_normal(w1.numel)
    n = n_per_tree * n_trees
    tree = np.repeat(np.arange(n_trees), n_per_tree)
    hot = rng.random((n, N_CLASSES)) < 0.5
    hot[np.arange(n), rng.integers(0, N_CLASSES, n)] = True  # at least one class
    bases = rng.standard_normal((n_trees, layout.n_params)) * 0.8
    weights = bases[tree] + noise * rng.standard_normal((n, layout.n_params))
    for k in range(N_CLASSES):
        pattern = strength * np.outer(a[k], b[k]).ravel()
        weights[:, w1.offset:w1.offset + w1.numel] += hot[:, k:k + 1] * pattern
    delta = weights[:, w1.offset:w1.offset + w1.numel] - bases[tree][:, w1.offset:w1.offset + w1.numel]
    acc = 0.5 + 0.1 * np.tanh(delta @ probe / np.sqrt(w1.numel))
    models = pd.DataFrame({
        "model_id": np.arange(n), "arch_key": key, "task": "t0", "architecture": "mlp",
        "tree_id": tree * n_per_tree, "tree_role": "child", "derivation": "class_subset",
        "n_classes_trained": hot.sum(1).astype(np.int64),
        "family": np.where(hot[:, 0], "with0", "without0"),
        **{f"class_{k}": hot[:, k] for k in range(N_CLASSES)},
    })
    z = zoo.create_zoo(path, models=models, architectures={key: arch},
                       tasks={"t0": {"source": "mnist1d", "train_fraction": 0.1}}, checkpoint_epochs=[0, 5],
                       metric_names=["test_acc"], n_epochs=5,
                       attrs={"kind": "model_tree", "name": "planted",
                              "tree": {"class_ids": list(range(N_CLASSES)),
                                       "class_columns": [f"class_{k}" for k in range(N_CLASSES)],
                                       "n_bases": n_trees, "n_children": n}})
    for i in range(n):
        w = np.stack([bases[tree[i]], weights[i]]).astype(np.float32)
        z.write_model(i, weights=w, metrics={"test_acc": np.array([0.1, acc[i]])}, status="ok", record={})
    z.write_split("default", assign_split(z.models, seed=0, fractions=(0.6, 0.2, 0.2)), {"rule": "hash", "seed": 0})
    return zoo.open(path)


def planted_store(tmp_path_factory) -> str:
    """A :func:`make_planted_tree` store in a fresh temporary folder (for module-scoped fixtures)."""
    path = tmp_path_factory.mktemp("planted") / "planted.zarr"
    make_planted_tree(path)
    return str(path)


def fit_quietly(module, dm, max_epochs: int = 30):
    """Fit ``module`` on ``dm`` with a silent CPU trainer and test the last epoch; returns the test metrics."""
    import lightning.pytorch as pl

    torch.manual_seed(0)
    with one_thread():
        trainer = pl.Trainer(max_epochs=max_epochs, accelerator="cpu", logger=False, enable_checkpointing=False,
                             enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0)
        trainer.fit(module, datamodule=dm)
        return {k: float(v) for k, v in trainer.test(module, datamodule=dm, verbose=False)[0].items()}


def make_mixed_grid(path, n: int = 24, seed: int = 1) -> zoo.Zoo:
    """A phase-grid-like zoo (not a tree) of two architectures: MLPs of widths 4 and 8 (same depth) and a
    1-D CNN; random weights; phase labels (one model unlabelled), a scalar landscape metric, a failed
    model, and a ``default`` split."""
    rng = np.random.default_rng(seed)
    recs = [architecture_record("mlp", (12,), 3, {"width": w, "depth": 2, "activation": "relu"}) for w in (4, 8)]
    recs.append(architecture_record("cnn1d", (12,), 3, {"width": 4, "depth": 2}))
    names = ["mlp", "mlp", "cnn1d"]
    which = np.arange(n) % 3
    models = pd.DataFrame({
        "model_id": np.arange(n), "arch_key": [recs[i][0] for i in which], "task": "t0",
        "architecture": [names[i] for i in which], "width": np.where(which == 1, 8, 4).astype(np.int64),
        "lr": rng.uniform(0.01, 0.1, n), "grid_load": rng.random(n),
    })
    z = zoo.create_zoo(path, models=models, architectures=dict(recs),
                       tasks={"t0": {"source": "mnist1d", "train_fraction": 0.1}}, checkpoint_epochs=[0, 2, 4],
                       metric_names=["test_acc", "train_loss"], n_epochs=4, attrs={"kind": "phase_grid", "name": "mixed"})
    for i in range(n):
        if i == 5:
            z.write_model(i, weights=None, metrics={}, status="failed", record={"error": "boom"})
            continue
        n_params = z.layout(models["arch_key"][i]).n_params
        w = rng.standard_normal((3, n_params)).astype(np.float32)
        z.write_model(i, weights=w, metrics={"test_acc": rng.random(3), "train_loss": rng.random(3)}, status="ok",
                      record={})
    z.write_split("default", assign_split(z.models, seed=0, fractions=(0.5, 0.25, 0.25)), {"rule": "hash", "seed": 0})
    z.declare_landscape("sharpness", {"radius": 0.1}, description="scalar")
    z.write_landscape("sharpness", list(range(n)), rng.random(n))
    labels = [None if i == 3 else ("I" if i % 2 else "II") for i in range(n)]
    z.write_phases(labels, {"name": "test_rule", "version": 1, "labels": ["I", "II"]})
    return zoo.open(path)


def mixed_store(tmp_path_factory) -> str:
    """A :func:`make_mixed_grid` store in a fresh temporary folder."""
    path = tmp_path_factory.mktemp("mixed") / "mixed.zarr"
    make_mixed_grid(path)
    return str(path)
