"""Phase grids generated with the planner: plans do not change the models, the plan is stored and resumed
from, ``weightzoo generate --plan`` trains nothing, and the training-threads setting is honoured."""

import dataclasses

import numpy as np
import pytest
import torch
import yaml
from helpers.same_zoo import assert_same_models
from helpers.specs import TINY_SPEC

import zoo
from generators import driver
from generators.driver import create_or_resume, generate, pending_populations
from generators.kinds import get_zoo_kind
from generators.phase_grid import population_config
from generators.population import Member, train_single
from generators.spec import load_spec
from weightzoo.cli import main
from zoo.tasks import build_task

WIDTHS = dict(TINY_SPEC, grid={"load": {"param": "width", "values": [4, 8, 12]},
                               "temperature": {"param": "batch_size", "values": [16, 32, 64]}}, seeds=1)
FRACTIONS = dict(TINY_SPEC, task={"source": "mnist1d"}, architecture={"name": "mlp", "width": 6, "depth": 1},
                 grid={"load": {"param": "train_fraction", "values": [0.05, 0.08]},
                       "temperature": {"param": "batch_size", "values": [16, 40]}})


@pytest.mark.parametrize("grid", [WIDTHS, FRACTIONS], ids=["widths", "train_fractions"])
def test_one_grid_under_two_plans_gives_the_same_models(tmp_path, grid):
    planned = generate(grid, tmp_path / "planned.zarr", progress=False)
    cells = generate(dict(grid, population={"grouping": "shape"}), tmp_path / "cells.zarr", progress=False)
    n_planned, n_cells = len(planned.meta["plan"]["populations"]), len(cells.meta["plan"]["populations"])
    assert n_planned == 1 and n_cells == planned.models["grid_cell"].nunique()
    for key in planned.architectures:
        ids = planned.models.query("arch_key == @key")["model_id"].tolist()
        for c in range(len(planned.checkpoint_epochs)):
            torch.testing.assert_close(planned.weights(ids, c), cells.weights(ids, c), atol=1e-5, rtol=0)
    for name in planned.metric_names:
        np.testing.assert_allclose(planned.metric(name), cells.metric(name), atol=1e-4)
    # and a model equals the same model trained alone on its own task with its own batch size
    spec, row = load_spec(grid), planned.models.iloc[-1]
    alone = train_single(population_config(spec, row, planned.architectures[row["arch_key"]]),
                         Member(int(row["init_seed"]), int(row["data_seed"]), float(row["lr"]),
                                float(row["weight_decay"]), float(row["momentum"])),
                         build_task(planned.task_spec(int(row["model_id"]))))
    torch.testing.assert_close(planned.weights([int(row["model_id"])])[0], alone.weights[0, -1], atol=1e-5, rtol=0)


def test_the_plan_is_stored_and_resumed_from(tmp_path, monkeypatch):
    spec = load_spec(WIDTHS)
    z = create_or_resume(spec, tmp_path / "z.zarr")
    stored = z.meta["plan"]
    assert stored["settings"]["max_padding"] == 2.0 and len(stored["populations"]) == 1
    kind = get_zoo_kind(spec.kind)

    def no_planning(*_args):
        raise AssertionError("planned again although the stored plan fits the settings")

    monkeypatch.setattr(driver, "get_zoo_kind", lambda _name: dataclasses.replace(kind, populations=no_planning))
    assert [p.model_ids for p in pending_populations(z, spec)] == [list(range(9))]
    monkeypatch.undo()
    # other population settings: planned again (results do not depend on it) and stored
    strict = load_spec(dict(WIDTHS, population={"max_padding": 1}))
    assert strict.spec_hash == spec.spec_hash
    assert len(pending_populations(z, strict)) == 3 and len(zoo.open(z.path).meta["plan"]["populations"]) == 3


def test_an_interrupted_population_resumes_whole_to_the_same_bits(tmp_path, monkeypatch):
    """A run killed while writing a padded population: rerunning trains the population as planned (its
    written models too) and writes the rest, so the zoo equals an uninterrupted run bit for bit."""
    reference = generate(WIDTHS, tmp_path / "ref.zarr", progress=False)
    real = driver.write_results

    def killed_after_four(z, job, result, only=None):
        real(z, job, result, only={i for i in job.model_ids[:4] if only is None or i in only})
        raise KeyboardInterrupt("killed while writing")

    monkeypatch.setattr(driver, "write_results", killed_after_four)
    with pytest.raises(KeyboardInterrupt):
        generate(WIDTHS, tmp_path / "resumed.zarr", progress=False)
    monkeypatch.undo()
    partial = zoo.open(tmp_path / "resumed.zarr")
    assert partial.status_counts()["ok"] == 4 and partial.status_counts()["pending"] == 5
    assert [len(p.model_ids) for p in pending_populations(partial, load_spec(WIDTHS))] == [9]  # whole
    resumed = generate(WIDTHS, tmp_path / "resumed.zarr", progress=False)
    assert_same_models(resumed, reference)


def test_generate_plan_prints_the_populations_without_training(tmp_path, capsys):
    out = tmp_path / "z.zarr"
    assert main(["generate", "demo", "--out", str(out), "--plan"]) == 0
    text = capsys.readouterr().out
    assert not out.exists()
    assert "training plan: 3 populations" in text and "width 4,16" in text and "16 populations" in text
    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text(yaml.safe_dump(WIDTHS))
    create_or_resume(load_spec(WIDTHS), out)  # a store with every model pending: its stored plan is shown
    assert main(["generate", str(spec_file), "--out", str(out), "--plan"]) == 0
    assert "1 populations with pending models (9 of 9 models pending" in " ".join(capsys.readouterr().out.split())
    assert zoo.open(out).status_counts()["pending"] == 9


@pytest.mark.parametrize("threads", [None, 3])
def test_the_training_threads_setting_is_honoured(tmp_path, monkeypatch, threads):
    seen = []
    real = driver.train_population

    def recording(*args, **kwargs):
        seen.append(torch.get_num_threads())
        return real(*args, **kwargs)

    monkeypatch.setattr(driver, "train_population", recording)
    before = torch.get_num_threads()
    spec = dict(TINY_SPEC, seeds=1) if threads is None else dict(TINY_SPEC, seeds=1,
                                                                            population={"threads": threads})
    generate(spec, tmp_path / "z.zarr", progress=False)
    assert seen and set(seen) == {1 if threads is None else threads}  # the measured default is 1
    assert torch.get_num_threads() == before
