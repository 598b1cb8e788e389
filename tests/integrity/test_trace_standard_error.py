"""Item 16 (Hessian trace): Hutchinson's trace is stored with its standard error, and trace_tol bounds
the relative standard error (not the running mean's change, which stopped with errors of 2-11 %)."""

import shutil

import numpy as np
import torch

import zoo
from generators.landscape import compute_landscape
from generators.landscape.hessian import PopulationHVP, hutchinson_trace
from generators.landscape.population_data import (
    STREAM_TRACE,
    fixed_batch,
    member_generator,
    population_of,
)
from zoo.tasks import build_task


def test_the_standard_error_is_the_spread_of_the_members_own_vectors_and_bounds_the_stop(tiny_zoo):
    ids = [int(i) for i in tiny_zoo.models.query("width == 8")["model_id"]][:2]
    model, layout, flat = population_of(tiny_zoo, ids, -1)
    x, y = fixed_batch(build_task(tiny_zoo.task_spec(ids[0])), "train", 64, "random", 0)
    hvp = PopulationHVP(model, layout, flat, x, y)
    trace, se, used = hutchinson_trace(hvp, ids, max_vectors=400, tol=0.1, seed=3, min_vectors=10)
    assert (used >= 10).all() and (used < 400).all()
    assert (se <= 0.1 * np.abs(trace)).all()  # the tolerance bounds the relative standard error
    for p, mid in enumerate(ids):  # recompute from the member's own Rademacher vectors
        gen, alone = member_generator(3, mid, STREAM_TRACE), hvp.subset([p])
        vs = torch.stack([(torch.randint(0, 2, (flat.shape[1],), generator=gen) * 2 - 1).to(flat.dtype)
                          for _ in range(used[p])])
        values = [float(v.double() @ alone(v[None])[0].double()) for v in vs]
        np.testing.assert_allclose(trace[p], np.mean(values), rtol=1e-6)  # float32 products, alone vs together
        np.testing.assert_allclose(se[p], np.std(values, ddof=1) / np.sqrt(used[p]), rtol=1e-6)
        if used[p] > 10:  # it stopped at the first vector that met the bound, not earlier
            assert np.std(values[:-1], ddof=1) / np.sqrt(used[p] - 1) > 0.1 * abs(np.mean(values[:-1]))
    one, one_se, _ = hutchinson_trace(hvp, ids, max_vectors=1, tol=0.1, seed=3)
    assert np.isfinite(one).all() and np.isnan(one_se).all()  # one vector has no standard error


def test_the_landscape_stores_the_trace_with_its_standard_error(tiny_zoo_path, tmp_path):
    path = tmp_path / "z.zarr"
    shutil.copytree(tiny_zoo_path, path)
    settings = {"metrics": ["hessian"], "hessian": {"n_train": 64, "n_test": 64, "iters": 10, "tol": 1e-2,
                                                    "trace_vectors": 300, "trace_tol": 0.05}}
    compute_landscape(zoo.open(path, mode="r+"), settings, progress=False)
    z = zoo.open(path)
    for split in ("train", "test"):
        trace, se = z.landscape(f"hessian_trace_{split}"), z.landscape(f"hessian_trace_{split}_se")
        assert np.isfinite(trace).all() and np.isfinite(se).all() and (se > 0).all()
        assert (se <= 0.05 * np.abs(trace)).all()
    assert z.landscape_settings("hessian_trace_train")["settings"]["trace_min_vectors"] == 10
