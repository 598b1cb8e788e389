"""``weightzoo fit`` end to end on the shipped ``tree_quick`` spec with the shipped configs, and the clear
one-line errors (exit 2, no traceback) of bad data arguments."""

import json
from pathlib import Path

import pytest
from helpers.planted import one_thread

from weightzoo.cli import main

CONFIGS = Path(__file__).resolve().parents[2] / "weightnets" / "configs"
QUIET = ["--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]


def _fit(config, store, run, *extra):
    with one_thread():
        return main(["fit", "--config", str(CONFIGS / config), "--data.store", str(store),
                     "--trainer.default_root_dir", str(run), *QUIET, *extra])


@pytest.mark.slow
@pytest.mark.parametrize("config, extra, expect", [
    ("probex_classes.yaml", ["--trainer.max_epochs", "3"], ["test/label_acc", "test/subset_acc", "test/map",
                                                            "test/route_acc"]),
    ("statnn_classes.yaml", [], ["test/label_acc", "test/subset_acc", "test/map"]),
])
def test_weightzoo_fit_end_to_end_on_tree_quick(tree_quick, tmp_path, config, extra, expect):
    run = tmp_path / "run"
    # tree_quick is tiny (2 class-subset children per tree): learn on all its models
    assert _fit(config, tree_quick, run, "--data.select", "null", *extra) == 0
    metrics = json.loads((run / "test_metrics.json").read_text())
    for name in expect:
        assert 0.0 <= metrics[name] <= 1.0, name
    assert metrics["monitor"] == "val/selection" and metrics["best_checkpoint"].startswith(str(run / "checkpoints"))
    assert metrics["trained_params"] > 0 and metrics["fit_time_s"] > 0
    assert (run / "metrics.csv").exists() and (run / "config.yaml").exists()


@pytest.mark.parametrize("store, extra, needle", [
    ("planted", ["--data.view", "layers.9"], "no layer 'layers.9'; the layers are ['layers.0', 'layers.1', 'layers.2']"),
    ("planted", ["--model.layer", "layers.9"], "no layer 'layers.9'; the layers are"),
    ("planted", ["--data.target", "nope"], "target 'nope' is not a column"),
    ("planted", ["--data.select", "n_classes_trained > 99"], "leaves no models"),
    ("mixed", ["--data.target", "test_acc", "--data.view", "layers.1"], "needs one architecture"),
    ("mixed", ["--data.view", "stats"], "needs a model-tree zoo"),
])
def test_bad_data_arguments_fail_with_one_line(planted_tree, mixed_grid, tmp_path, capsys, store, extra, needle):
    path = planted_tree if store == "planted" else mixed_grid
    code = _fit("probex_classes.yaml", path, tmp_path / "run", "--data.select", "null", *extra)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("weightzoo fit: error:")]
    assert code == 2 and len(lines) == 1 and needle in lines[0], err
    assert "Traceback" not in err


def test_fit_refuses_settings_that_cannot_select_a_checkpoint(planted_tree, tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "test_metrics.json").write_text("{}")  # an earlier run's: must not survive a new run
    code = _fit("probex_classes.yaml", planted_tree, run, "--data.select", "null", "--trainer.max_epochs", "2",
                "--trainer.check_val_every_n_epoch", "5")
    err = capsys.readouterr().err
    assert code == 2 and "max_epochs 2 < check_val_every_n_epoch 5" in err and len(err.strip().splitlines()) == 1
    assert not (run / "test_metrics.json").exists()
    code = _fit("probex_classes.yaml", planted_tree, run, "--trainer.max_epochs", "-5")
    err = capsys.readouterr().err
    assert code == 2 and "trainer:" in err and "max_epochs" in err and "Traceback" not in err


def test_ctrl_c_during_fit_exits_130_without_test_metrics(planted_tree, tmp_path, capsys, monkeypatch):
    from weightnets import LayerProbe

    def ctrl_c(self, *args, **kwargs):  # Lightning's own handling runs: it catches it and exits with 1
        raise KeyboardInterrupt

    monkeypatch.setattr(LayerProbe, "training_step", ctrl_c)
    run = tmp_path / "run"
    assert _fit("probex_classes.yaml", planted_tree, run, "--data.select", "null") == 130
    assert "the run folder has no test_metrics.json" in capsys.readouterr().err
    assert not (run / "test_metrics.json").exists()


def test_fit_refuses_a_file_as_run_folder_before_training(planted_tree, tmp_path, capsys):
    afile = tmp_path / "afile"
    afile.write_text("not a folder")
    code = _fit("probex_classes.yaml", planted_tree, afile, "--data.select", "null")
    err = capsys.readouterr().err
    assert code == 2 and "a file, not a run folder" in err and "Traceback" not in err
    assert afile.read_text() == "not a folder"
