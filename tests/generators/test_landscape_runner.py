"""compute_landscape on the tiny zoo: stored names and settings, resume, robustness, CLI."""

import shutil

import numpy as np
import pandas as pd
import pytest
from helpers.specs import TINY_SPEC

import zoo
from generators.driver import pending_populations
from generators.landscape import QUICK, compute_landscape
from generators.landscape import runner as runner_module
from generators.spec import load_spec
from weightzoo.cli import main
from zoo.store import create_zoo

ALL_NAMES = ["hessian_top_eig_train", "hessian_trace_train", "hessian_top_eig_test", "hessian_trace_test",
             "hessian_trace_train_se", "hessian_trace_test_se", "alpha", "alpha_layers", "alpha_reason", "cka",
             "mc_loss", "mc_error", "barrier_loss", "barrier_error"]


@pytest.fixture()
def store(tiny_zoo_path, tmp_path):
    path = tmp_path / "copy.zarr"
    shutil.copytree(tiny_zoo_path, path)
    return path


def _quick(**changes):
    settings = {k: (dict(v) if isinstance(v, dict) else v) for k, v in QUICK.items()}
    settings.update(changes)
    return settings


def test_every_metric_is_stored_with_its_settings(store):
    z = zoo.open(store, mode="r+")
    summary = compute_landscape(z, _quick(mc={**QUICK["mc"], "eval_samples": 0}), progress=False)
    assert summary["n_ok"] == 8 and summary["checkpoint_epoch"] == 2
    assert {f: m["computed"] for f, m in summary["metrics"].items()} == {
        "hessian": 8, "alpha": 8, "cka": 4, "mc": 4, "barrier": 4}
    z = zoo.open(store)
    assert sorted(z.landscape_names) == sorted(ALL_NAMES)
    models = z.models
    for name in ("hessian_top_eig_train", "hessian_trace_train", "hessian_top_eig_test", "hessian_trace_test"):
        assert np.isfinite(models[name]).all() and (models[name] > 0).all()
    # width-4 layers have 4 non-zero eigenvalues (< min_eigs 5): alpha NaN; width 8 gets a fit per layer
    assert z.landscape("alpha_layers").shape == (8, 2)
    assert models.loc[models["width"] == 4, "alpha"].isna().all()
    assert np.isfinite(models.loc[models["width"] == 8, "alpha"]).all()
    info = z.landscape_settings("hessian_trace_train")
    assert info["checkpoint_epoch"] == 2 and info["settings"]["iters"] == 20 and info["settings"]["sample_seed"] == 0
    assert z.meta["pairs"]["mc_loss"]["settings"]["epochs"] == 1
    pairs = z.pairs("cka")
    cells = models.set_index("model_id")["grid_cell"]
    assert len(pairs) == 4 and (cells[pairs["model_a"]].to_numpy() == cells[pairs["model_b"]].to_numpy()).all()
    np.testing.assert_allclose(models.loc[pairs["model_a"], "cka"], pairs["value"], rtol=1e-6)
    assert ((pairs["value"] > 0) & (pairs["value"] <= 1)).all()
    curve = np.stack(z.pairs("mc_loss_curve")["value"])
    assert curve.shape == (4, QUICK["mc"]["n_points"])
    # the curve's ends are the two models themselves: their stored final training loss
    train_loss = models.set_index("model_id")["train_loss"]
    np.testing.assert_allclose(curve[:, 0], train_loss[z.pairs("mc_loss")["model_a"]], rtol=1e-4)
    np.testing.assert_allclose(curve[:, -1], train_loss[z.pairs("mc_loss")["model_b"]], rtol=1e-4)
    assert (models["barrier_loss"] >= 0).all()


@pytest.mark.slow
def test_an_interrupted_run_resumes_to_the_same_values(tiny_zoo_path, tmp_path, monkeypatch):
    settings = _quick(metrics=["hessian", "alpha", "cka", "mc"])
    full, cut = tmp_path / "full.zarr", tmp_path / "cut.zarr"
    shutil.copytree(tiny_zoo_path, full)
    shutil.copytree(tiny_zoo_path, cut)
    two = load_spec(dict(TINY_SPEC, population={"max_size": 4}))  # metrics follow the plan: two populations
    for path in (full, cut):
        pending_populations(zoo.open(path, mode="r+"), two)
    compute_landscape(zoo.open(full, mode="r+"), settings, progress=False)

    real, calls = runner_module.hessian_metrics, []

    def interrupt_in_second_group(*args, **kwargs):  # called for train and test samples of each group
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(runner_module, "hessian_metrics", interrupt_in_second_group)
    with pytest.raises(KeyboardInterrupt):
        compute_landscape(zoo.open(cut, mode="r+"), settings, progress=False)
    monkeypatch.setattr(runner_module, "hessian_metrics", real)
    partial = zoo.open(cut)
    assert np.isnan(partial.landscape("hessian_trace_train")).sum() == 4 and len(partial.pairs("mc_loss")) == 2
    summary = compute_landscape(zoo.open(cut, mode="r+"), settings, progress=False)
    assert summary["metrics"]["hessian"]["skipped"] == 4 and summary["metrics"]["hessian"]["computed"] == 4
    assert summary["metrics"]["mc"]["skipped"] == 2 and summary["metrics"]["mc"]["computed"] == 2
    assert summary["metrics"]["cka"]["skipped"] == 2 and summary["metrics"]["cka"]["computed"] == 2
    a, b = zoo.open(full), zoo.open(cut)
    for name in ("hessian_top_eig_train", "hessian_trace_test", "alpha", "cka", "mc_loss", "mc_error"):
        np.testing.assert_allclose(b.landscape(name), a.landscape(name), rtol=1e-5, equal_nan=True)
    pd.testing.assert_frame_equal(b.pairs("mc_loss"), a.pairs("mc_loss"))
    again = compute_landscape(zoo.open(cut, mode="r+"), settings, progress=False)
    assert all(m["computed"] == 0 or f == "alpha" for f, m in again["metrics"].items())


def test_diverged_and_failing_models_stay_nan(store, monkeypatch):
    z = zoo.open(store, mode="r+")
    z.write_model(1, weights=None, metrics={}, status="diverged", record={"diverged_epoch": 2})
    real = runner_module.hessian_metrics

    def fail_for_model_6(model, layout, flat, x, y, ids, **kwargs):
        if 6 in ids:
            raise RuntimeError("boom")
        return real(model, layout, flat, x, y, ids, **kwargs)

    monkeypatch.setattr(runner_module, "hessian_metrics", fail_for_model_6)
    summary = compute_landscape(z, _quick(metrics=["hessian", "cka"]), progress=False)
    assert summary["not_computed"] == {"diverged": 1}
    h = summary["metrics"]["hessian"]
    assert (h["computed"], h["failed"]) == (6, 1) and "RuntimeError: boom" in h["errors"][0]
    trace = zoo.open(store).landscape("hessian_trace_train")
    assert np.isnan(trace[[1, 6]]).all() and np.isfinite(np.delete(trace, [1, 6])).all()
    pairs = zoo.open(store).pairs("cka")
    assert (0, 1) not in set(zip(pairs["model_a"], pairs["model_b"])) and len(pairs) == 3
    assert np.isnan(zoo.open(store).landscape("cka")[[0, 1]]).all()


def test_checkpoint_and_model_selection(store):
    z = zoo.open(store, mode="r+")
    compute_landscape(z, _quick(metrics=["hessian"], checkpoint=0), model_ids=[0, 1, 2, 3], progress=False)
    assert z.landscape_settings("hessian_top_eig_train")["checkpoint_epoch"] == 0
    values = z.landscape("hessian_top_eig_train")
    assert np.isfinite(values[:4]).all() and np.isnan(values[4:]).all()
    # other settings (here: the checkpoint) start the array over, never mixing values
    compute_landscape(z, _quick(metrics=["hessian"]), model_ids=[4, 5], progress=False)
    values = z.landscape("hessian_top_eig_train")
    assert np.isfinite(values[4:6]).all() and np.isnan(np.delete(values, [4, 5])).all()
    assert compute_landscape(z, {"enabled": False})["enabled"] is False


def test_zoo_without_grid_cells_gets_no_pair_metrics(tiny_zoo_path, tmp_path):
    src = zoo.open(tiny_zoo_path)
    models = src.planned.drop(columns=["grid_cell", "arch_row"])
    z = create_zoo(tmp_path / "tree.zarr", models=models, architectures=src.architectures, tasks=src.tasks,
                   checkpoint_epochs=src.checkpoint_epochs, metric_names=src.metric_names, n_epochs=2)
    for i in range(4):
        weights = np.stack([src.weights([i], c)[0].numpy() for c in range(len(src.checkpoint_epochs))])
        z.write_model(i, weights=weights, metrics={}, status="ok", record={})
    summary = compute_landscape(z, _quick(metrics=["alpha", "cka", "mc"]), progress=False)
    assert "no 'grid_cell' column" in summary["notes"][0]
    assert summary["metrics"]["alpha"]["computed"] == 4 and summary["metrics"]["cka"]["computed"] == 0
    assert z.pair_names == [] and "cka" not in z.landscape_names  # nothing declared that cannot be filled
    assert summary["not_computed"] == {"pending": 4}


def test_cli_metrics(store, tmp_path, capsys):
    settings = tmp_path / "settings.yaml"
    settings.write_text("landscape:\n  hessian: {n_train: 32, n_test: 32, iters: 10, trace_vectors: 4}\n")
    assert main(["metrics", str(store), "--settings", str(settings), "--only", "hessian,alpha", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "hessian_trace_train" in out and "work done" in out
    assert zoo.open(store).landscape_settings("hessian_trace_train")["settings"]["n_train"] == 32
    assert main(["metrics", str(store), "--only", "curvature", "--quiet"]) == 2
    assert "weightzoo metrics: error: field '--only[0]': unknown metric 'curvature'" in capsys.readouterr().err
    assert main(["metrics", str(store), "--only", "alpha", "--checkpoint", "9", "--quiet"]) == 2
    assert "checkpoint 9 out of range" in capsys.readouterr().err
