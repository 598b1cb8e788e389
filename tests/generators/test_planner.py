"""The population planner: bounds, coverage, the shape grouping, settings and their validation."""

import pytest

from generators.phase_grid import plan_models
from generators.planner import plan_populations
from generators.spec import load_spec
from generators.spec_fields import PopulationSettings
from zoo.errors import SpecError

GRID = {
    "name": "plan", "task": {"source": "mnist1d", "train_fraction": 0.25},
    "architecture": {"name": "mlp", "depth": 2, "activation": "relu"},
    "grid": {"load": {"param": "width", "values": [2, 4, 8, 16, 32, 64, 128]},
             "temperature": {"param": "batch_size", "values": [8, 32, 128, 512]}},
    "seeds": 2, "epochs": 3, "optimizer": {"name": "sgd", "lr": 0.01}, "landscape": False,
}


def _plan(spec_dict, **settings):
    spec = load_spec(spec_dict)
    models, archs, tasks = plan_models(spec)
    plan = plan_populations(models, archs, tasks, spec.population.model_copy(update=settings),
                            epochs=spec.epochs, n_checkpoints=len(spec.checkpoint_epochs))
    return plan, models, archs


def test_the_planner_pools_widths_within_the_padding_bound_and_covers_every_model_once():
    shape, models, _ = _plan(GRID, grouping="shape")
    assert len(shape.populations) == 28  # one per cell
    plan, _, archs = _plan(GRID)
    ids = sorted(i for p in plan.populations for i in p.model_ids)
    assert ids == sorted(models["model_id"])
    assert len(plan.populations) < 10 and plan.seconds < shape.seconds
    pooled = [p for p in plan.populations if len(p.arch_keys) > 1]
    assert pooled, "no widths were padded together"
    for p in plan.populations:
        assert p.padding <= 2.0 + 1e-9 and len(p.model_ids) <= 64
        assert len(p.batch_sizes) > 1 or len(p.model_ids) <= 8  # batch sizes mix
        widths = [archs[k]["config"]["width"] for k in p.arch_keys]
        assert archs[p.envelope]["config"]["width"] == max(widths)
    # no padding allowed: one width per population, batch sizes still mixed
    strict, _, _ = _plan(GRID, max_padding=1.0)
    assert all(len(p.arch_keys) == 1 for p in strict.populations) and len(strict.populations) == 7
    # size and memory bounds cut populations
    small, _, _ = _plan(GRID, max_size=5)
    assert all(len(p.model_ids) <= 5 for p in small.populations)
    tight, _, _ = _plan(GRID, max_memory_mb=0.5)
    assert all(p.memory_bytes <= 0.5 * 2 ** 20 or len(p.model_ids) == 1 for p in tight.populations)
    assert _plan(GRID)[0].record() == plan.record()  # deterministic


def test_a_train_fraction_axis_mixes_tasks_in_one_population():
    spec = dict(GRID, grid={"load": {"param": "train_fraction", "values": [0.1, 0.2, 0.4]},
                            "temperature": {"param": "batch_size", "values": [16, 64]}},
                architecture={"name": "mlp", "width": 8, "depth": 1})
    plan, _, _ = _plan(spec)
    assert len(plan.populations) == 1 and plan.populations[0].n_tasks == 3
    assert len(_plan(spec, grouping="shape")[0].populations) == 6


def test_an_architecture_that_cannot_be_padded_is_grouped_by_shape_and_the_plan_says_so():
    import torch.nn as nn

    from zoo.architectures import register_architecture

    def plain(input_shape, n_classes, hidden=6):  # no permutation_spec, no unit_masks
        return nn.Sequential(nn.Flatten(), nn.Linear(input_shape[0], hidden), nn.Tanh(), nn.Linear(hidden, n_classes))

    register_architecture("test_plain_net")(plain)
    spec = dict(GRID, task={"source": "mnist1d", "train_fraction": 0.1},
                architecture={"name": "test_plain_net"},
                grid={"load": {"param": "hidden", "values": [4, 6, 8]},
                      "temperature": {"param": "batch_size", "values": [16, 64]}})
    plan, _, _ = _plan(spec)
    assert len(plan.populations) == 3 and all(len(p.arch_keys) == 1 for p in plan.populations)
    assert any("cannot be zero-padded" in n and "grouped by shape" in n for n in plan.notes)


def test_population_settings_are_validated_and_stay_out_of_the_spec_hash():
    base = load_spec(GRID)
    spec = load_spec(dict(GRID, population={"max_size": 8, "max_padding": 3, "max_memory_mb": 100,
                                            "grouping": "shape", "threads": 2}))
    assert spec.population == PopulationSettings(max_size=8, max_padding=3.0, max_memory_mb=100.0, grouping="shape", threads=2) and spec.max_population == 8
    assert spec.spec_hash == base.spec_hash
    for bad, field in (({"max_padding": 0.5}, "population.max_padding"), ({"threads": -1}, "population.threads"),
                       ({"grouping": "cells"}, "population.grouping"), ({"max_size": 1.5}, "population.max_size"),
                       ({"typo": 1}, "population.typo")):
        with pytest.raises(SpecError, match=field.replace(".", r"\.")):
            load_spec(dict(GRID, population=bad))
    with pytest.raises(SpecError, match="population.max_padding"):  # trees take max_size and threads only
        load_spec(dict(load_spec("tree_quick").raw, population={"max_padding": 2}))
    assert load_spec(dict(GRID, population=None)).population == PopulationSettings()
