"""Landscape metrics run on the populations of the zoo's plan (widths padded together) and give every
model the values it gets in a population of its own width."""

import shutil

import numpy as np
from helpers.specs import TINY_SPEC

import zoo
from generators.driver import generate, pending_populations
from generators.landscape import compute_landscape
from generators.spec import load_spec

GRID = dict(TINY_SPEC, grid={"load": {"param": "width", "values": [4, 8, 12]},
                             "temperature": {"param": "batch_size", "values": [32, 64]}},
            architecture={"name": "mlp", "depth": 1, "activation": "sigmoid"})
SETTINGS = {"hessian": {"n_train": 64, "n_test": 64, "iters": 30, "trace_vectors": 20},
            "mc": {"epochs": 2, "n_points": 5}, "cka": {"n_samples": 64}, "metrics": ["hessian", "alpha", "cka", "mc",
                                                                                     "barrier"]}


def test_metrics_on_padded_plan_populations_equal_metrics_per_width(tmp_path):
    planned = generate(GRID, tmp_path / "planned.zarr", progress=False)
    assert len(planned.meta["plan"]["populations"]) == 1  # three widths in one population
    shutil.copytree(tmp_path / "planned.zarr", tmp_path / "cells.zarr")
    cells = zoo.open(tmp_path / "cells.zarr", mode="r+")
    pending_populations(cells, load_spec(dict(GRID, population={"grouping": "shape"})))  # stores the per-cell plan
    assert len(cells.meta["plan"]["populations"]) == 6
    a = compute_landscape(zoo.open(planned.path, mode="r+"), SETTINGS, progress=False)
    compute_landscape(cells, SETTINGS, progress=False)
    assert all(a["metrics"][f]["failed"] == 0 and a["metrics"][f]["computed"] > 0 for f in a["metrics"])
    za, zb = zoo.open(planned.path), zoo.open(cells.path)
    for name in ("hessian_top_eig_train", "hessian_trace_test", "alpha", "cka", "mc_loss", "mc_error",
                 "barrier_loss"):
        va, vb = za.landscape(name), zb.landscape(name)
        assert np.isfinite(va).sum() >= 6, name
        np.testing.assert_allclose(va, vb, rtol=2e-3, atol=1e-5, err_msg=name)
