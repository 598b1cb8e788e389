"""``weightzoo compose`` end to end on tree_quick, its output store, and its bad-input errors (one line on
stderr, exit code 2); ``weightzoo fit`` runs the shipped composition configs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers.compose_fixtures import quick_tree, quick_tree_path, tiny_problem

import zoo
from weightnets.compose import CompositionError, TaskVectors, check_same_base
from weightzoo.cli import main

CONFIGS = Path(__file__).resolve().parents[2] / "weightnets" / "configs"


def children(z, base, family=None):
    m = z.models
    sel = (m["parent_id"] == base) & ((m["derivation"] == family) if family else True)
    return m.loc[sel, "model_id"].tolist()


def test_compose_writes_a_store_and_prints_normalised_accuracy(tmp_path, capsys):
    z = quick_tree()
    out = tmp_path / "ties.zarr"
    kids = children(z, 0, "corruption")
    assert main(["compose", str(quick_tree_path()), "--base", "0", "--family", "corruption", "--method", "ties",
                 "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "normalised" in printed and "ties" in printed and "selected: {'scale'" in printed
    assert "the base's own task" in printed and "kept)" in printed
    c = zoo.open(out)
    assert c.meta["kind"] == "composition" and c.n_models == 2
    m = c.models
    assert m["parent_id"].tolist() == [-1, 0] and m["role"].tolist() == ["base", "composed"]
    assert m.loc[1, "method"] == "ties" and m.loc[1, "task_ids"] == ",".join(map(str, kids))
    coeffs = json.loads(m.loc[1, "coefficients"])
    assert coeffs["options"]["sparsify"] == "magnitude" and coeffs["scale"] > 0
    assert torch.equal(c.weights([0])[0], z.weights([0])[0])  # the base, copied
    comp = c.meta["composition"]["tasks"]
    assert [t["child_id"] for t in comp] == kids
    for t in comp:  # what was printed and stored is what the stored weights give
        assert t["normalized_acc"] == pytest.approx(t["acc"] / t["child_acc"])
        assert m.loc[1, f"acc_{t['task_key']}"] == pytest.approx(t["acc"], abs=1e-6)
        assert f"{t['acc']:.3f}" in printed
    tv = c.task_vector(1)
    assert tv.shape == (z.layout(z.arch_of([0])).n_params,) and tv.abs().sum() > 0
    assert np.isclose(m.loc[1, "test_acc"], np.mean([t["acc"] for t in comp]), atol=1e-6)


def test_compose_learned_method_with_shots(tmp_path, capsys):
    z = quick_tree()
    kids = children(z, 1)[:3]
    out = tmp_path / "atlas.zarr"
    code = main(["compose", str(quick_tree_path()), "--base", "1", "--tasks", ",".join(map(str, kids)), "--method",
                 "atlas", "--shots", "2", "--steps", "10", "--out", str(out)])
    assert code == 0
    c = zoo.open(out)
    coeffs = json.loads(c.models.loc[1, "coefficients"])
    assert coeffs["granularity"] == "tensor" and len(coeffs["values"]) == 3
    assert c.models.loc[1, "shots"] == 2 and c.meta["composition"]["source_store"] == str(quick_tree_path())
    assert "2 labelled examples per class" in capsys.readouterr().out


def one_line_error(capsys, argv, *fragments):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    for f in fragments:
        assert f in err, err
    return err


def test_compose_bad_input(tmp_path, capsys):
    z = quick_tree()
    store = str(quick_tree_path())
    other = children(z, 1)[0]
    out = str(tmp_path / "x.zarr")
    one_line_error(capsys, ["compose", store, "--base", "0", "--tasks", f"{children(z, 0)[0]},{other}", "--method",
                            "ties", "--out", out], f"model {other} was fine-tuned from base 1, not from base 0")
    child = children(z, 0)[0]
    one_line_error(capsys, ["compose", store, "--base", str(child), "--family", "corruption", "--method", "ties",
                            "--out", out], f"model {child} is not a base: it is a child of model 0")
    one_line_error(capsys, ["compose", store, "--base", "0", "--family", "corruption", "--method", "tiez", "--out",
                            out], "unknown composition method 'tiez'", "'task_arithmetic'", "'atlas'",
                   "'adamerging_layer'")
    one_line_error(capsys, ["compose", store, "--base", "0", "--family", "corruption", "--method", "atlas",
                            "--shots", "100000", "--out", out], "--shots 100000", "training examples of class")
    one_line_error(capsys, ["compose", store, "--base", "0", "--family", "colour", "--method", "ties", "--out", out],
                   "no children of family 'colour'", "corruption")
    one_line_error(capsys, ["compose", store, "--base", "0", "--family", "corruption", "--method", "adamerging_task",
                            "--shots", "2", "--out", out], "--shots does not apply")
    one_line_error(capsys, ["compose", store, "--base", "0", "--family", "corruption", "--method", "atlas",
                            "--steps", "-5", "--out", out], "--steps must be an integer >= 1, got -5")
    one_line_error(capsys, ["compose", store, "--base", "0", "--family", "corruption", "--method", "atlas",
                            "--lr", "-1", "--out", out], "--lr must be a finite number > 0, got -1.0")
    one_line_error(capsys, ["compose", store, "--base", "0", "--family", "corruption", "--method", "atlas",
                            "--option", "density=0.2", "--out", out], "options apply to the merge methods")
    one_line_error(capsys, ["compose", store, "--base", "0", "--family", "corruption", "--method", "ties",
                            "--threads", "0", "--out", out], "--threads must be >= 1, got 0")
    assert not Path(out).exists()
    (tmp_path / "taken.zarr").mkdir()
    one_line_error(capsys, ["compose", store, "--base", "0", "--family", "corruption", "--method", "average", "--out",
                            str(tmp_path / "taken.zarr")], "already exists")


def test_task_vectors_of_another_architecture_or_base_name_both():
    a = tiny_problem(T=2, seed=0).vectors
    b = tiny_problem(T=2, seed=1).vectors  # same architecture, other base weights
    with pytest.raises(CompositionError, match="task vectors a and b were taken against different bases"):
        check_same_base(a, b)
    wide = zoo.build_architecture("mlp", (6,), 3, {"width": 7, "depth": 1})
    layout = zoo.layout_of(wide)
    c = TaskVectors(torch.zeros(layout.n_params), torch.zeros(1, layout.n_params), layout)
    with pytest.raises(zoo.ArchitectureMismatchError, match=r"task vectors a \(53 parameters.*and b \(73 parameters"):
        check_same_base(a, c)
    with pytest.raises(zoo.ArchitectureMismatchError, match="the base has 53 parameters, the task vectors 80"):
        TaskVectors(a.base, torch.zeros(1, 80), a.layout)


@pytest.mark.parametrize("config", ["atlas_fewshot", "atlas_tta", "atlas_negation", "adamerging_task",
                                    "adamerging_layer"])
def test_fit_runs_the_shipped_configs(tmp_path, config):
    run = tmp_path / config
    argv = ["fit", "--config", str(CONFIGS / f"{config}.yaml"), "--data.store", str(quick_tree_path()),
            "--trainer.max_steps", "4", "--trainer.val_check_interval", "2", "--trainer.default_root_dir", str(run)]
    if config == "atlas_negation":
        argv += ["--data.tasks", f"[{children(quick_tree(), 0, 'class_subset')[0]}]", "--data.shots", "4"]
    assert main(argv) == 0
    metrics = json.loads((run / "test_metrics.json").read_text())
    assert metrics["monitor"] == "val/score" and metrics["best_checkpoint"]
    key = "test/control_retained" if config == "atlas_negation" else "test/normalized_acc"
    assert np.isfinite(metrics[key]) and 0 <= metrics["test/acc"] <= 1
