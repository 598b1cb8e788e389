"""A small store with every part a store can hold, built without training (fast)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

import zoo
from zoo.architectures import architecture_record
from zoo.dataset import norm_stats
from zoo.splits import assign_split


def make_rich_store(path, n: int = 10, seed: int = 0) -> zoo.Zoo:
    """``n`` models of two architectures, 3 checkpoints; model 2 diverged (NaN/inf weights), model 5
    failed (no weights), model 7 pending; splits, normalisation statistics, landscape metrics (scalar
    and vector), a pair metric and phase labels; a planned column ``phase`` that ``Zoo.models`` hides
    behind the phase labels."""
    rng = np.random.default_rng(seed)
    k_mlp, a_mlp = architecture_record("mlp", (40,), 10, {"width": 8, "depth": 2, "activation": "tanh"})
    k_cnn, a_cnn = architecture_record("cnn1d", (40,), 10, {"width": 4, "depth": 1})
    keys = [k_mlp if i % 3 else k_cnn for i in range(n)]
    models = pd.DataFrame({
        "model_id": np.arange(n), "arch_key": keys, "task": "t0",
        "architecture": ["mlp" if k == k_mlp else "cnn1d" for k in keys],
        "lr": rng.uniform(0.001, 0.1, n), "batch_size": rng.choice([16, 32], n).astype(np.int64),
        "optimizer": rng.choice(["sgd", "adam"], n), "nesterov": rng.random(n) > 0.5,
        "init_seed": np.arange(n, dtype=np.int64) * 7, "grid_temperature": rng.random(n).astype(np.float32),
        "parent_id": np.full(n, -1, dtype=np.int64),
        "phase": rng.choice(["planned-a", "planned-b"], n),  # a planned column Zoo.models overwrites
    })
    z = zoo.create_zoo(path, models=models, architectures={k_mlp: a_mlp, k_cnn: a_cnn},
                       tasks={"t0": {"source": "mnist1d", "train_fraction": 0.1}}, checkpoint_epochs=[0, 1, 3],
                       metric_names=["train_loss", "test_acc"], n_epochs=3,
                       attrs={"kind": "phase_grid", "name": "rich", "spec": {"seeds": 2, "nested": {"a": [1, 2]}},
                              "grid": {"load": {"param": "width", "values": [4, 8]}}})
    for i in range(n):
        if i == 7:
            continue  # stays pending
        n_params = z.layout(keys[i]).n_params
        w = torch.from_numpy(rng.standard_normal((3, n_params)).astype(np.float32))
        metrics = {"train_loss": rng.random(3), "test_acc": rng.random(3)}
        record = {"wall_time_s": float(rng.random()), "versions": {"torch": torch.__version__}}
        if i == 2:
            w[2, :5] = float("nan")
            w[2, 5] = float("inf")
            z.write_model(i, weights=w, metrics=metrics, status="diverged",
                          record={**record, "diverged_epoch": 3}, curve=np.array([0.5, np.nan, np.inf]))
        elif i == 5:
            z.write_model(i, weights=None, metrics={}, status="failed", record={"error": "RuntimeError: boom ✗"})
        else:
            z.write_model(i, weights=w, metrics=metrics, status="ok", record=record, curve=rng.random(3))
    z.write_split("default", assign_split(z.models, seed=0, fractions=(0.6, 0.2, 0.2)), {"rule": "hash", "seed": 0})
    norm_stats(z, k_mlp, -1, "default")
    z.declare_landscape("sharpness", {"radius": 0.1}, description="scalar")
    z.write_landscape("sharpness", [0, 1, 3], np.array([1.5, -2.0, 0.25]))
    z.declare_landscape("alpha_layers", {"fit": "mle"}, shape=(2,))
    z.write_landscape("alpha_layers", [4], np.array([[2.0, 3.5]]))
    z.write_pairs("mc_loss", [0, 1], [3, 4], np.array([0.1, -0.2]), {"curve": "bezier"})
    labels = [None if i in (5, 7) else ("I" if i % 2 else "II") for i in range(n)]
    z.write_phases(labels, {"name": "test_rule", "version": 1, "labels": ["I", "II", "III"]})
    return zoo.open(path)
