"""Item 10: diverged models get NaN metrics from the checkpoint they diverged at (diverged_epoch kept);
cell means and tables count only ok models and say how many diverged; heatmaps hatch such cells."""

import shutil

import numpy as np
from rich.console import Console

import zoo
from generators.driver import generate
from generators.grid_table import cell_table, status_counts_table
from generators.plots import heatmap_figure
from generators.report import print_summary


def test_generation_stores_nan_metrics_for_a_diverged_model(tmp_path, tiny_spec):
    spec = dict(tiny_spec, grid={"load": {"param": "width", "values": [8]},
                                 "temperature": {"param": "lr", "values": [0.05, 1e6]}}, seeds=1)
    spec["optimizer"] = {"name": "sgd", "lr": 0.05, "momentum": 0.99}
    spec["architecture"] = {"name": "mlp", "depth": 2, "activation": "relu"}
    z = generate(spec, tmp_path / "d.zarr", progress=False)
    models = z.models
    assert list(models["status"]) == ["ok", "diverged"]
    diverged_epoch = int(models.loc[1, "diverged_epoch"])
    epochs = np.asarray(z.checkpoint_epochs)
    for name in z.metric_names:
        values = z.metric(name)
        assert np.isfinite(values[0]).all()  # the ok model is measured at every checkpoint
        assert np.isnan(values[1, epochs >= diverged_epoch]).all()  # not a score of NaN weights (was 0.1)
        assert np.isfinite(values[1, epochs < diverged_epoch]).all()  # before diverging it was measured
    assert np.isnan(models.loc[1, "test_acc"])


def test_summaries_and_heatmaps_average_only_ok_models(tiny_zoo_path, tmp_path):
    """A store written before this rule (a diverged model with a plausible test_acc of 0.102)."""
    path = tmp_path / "old.zarr"
    shutil.copytree(tiny_zoo_path, path)
    z = zoo.open(path, mode="r+")
    models = z.models
    cell = models[models["grid_cell"] == models.loc[0, "grid_cell"]]
    victim, other = (int(i) for i in cell["model_id"][:2])
    n_params = z.layout(str(models.loc[victim, "arch_key"])).n_params
    z.write_model(victim, weights=np.full((3, n_params), np.nan), status="diverged", record={"diverged_epoch": 1},
                  metrics={"test_acc": np.array([0.1, 0.102, 0.102])})
    z = zoo.open(path)
    li, ti = int(cell["grid_load_index"].iloc[0]), int(cell["grid_temperature_index"].iloc[0])
    assert cell_table(z, "test_acc")[li, ti] == np.float32(models.loc[other, "test_acc"])  # the ok seed alone
    assert status_counts_table(z, "diverged")[li, ti] == 1 and status_counts_table(z, "ok")[li, ti] == 1
    console = Console(record=True, width=300)
    print_summary(z, console)
    text = console.export_text()
    assert f"{models.loc[other, 'test_acc']:.3f} (n=1, 1 diverged)" in text
    fig = heatmap_figure(z, "test_acc")
    hatched = [p for p in fig.axes[0].patches if p.get_hatch()]
    assert len(hatched) == 1 and hatched[0].get_xy() == (ti - 0.5, li - 0.5)
    assert "1 diverged" in fig.axes[0].get_title()
