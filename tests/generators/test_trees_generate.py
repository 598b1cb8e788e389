"""Generating model-tree zoos: table, parents and task vectors, rebuilt tasks, splits, summaries, resume."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
import yaml
from helpers.killing import generate_and_kill
from helpers.same_zoo import assert_same_zoo

import zoo
from generators.driver import generate
from generators.report import print_summary
from generators.spec import load_spec
from zoo.errors import ZooError
from zoo.format import STATUS_CODES
from zoo.tasks import build_task
from zoo.trees import checkpoint_epochs_of, children_of, class_ids, class_multi_hot


@pytest.fixture(scope="module")
def tree_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("tree") / "tree.zarr"
    generate("tree_quick", path, progress=False)
    return path


@pytest.fixture()
def tree(tree_path):
    return zoo.open(tree_path)


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "weightzoo.cli", *args], capture_output=True, text=True)


def test_tree_zoo_is_complete_with_tree_columns(tree):
    df = tree.models
    assert tree.meta["kind"] == "model_tree" and len(df) == 14 and set(df["status"]) == {"ok"}
    bases, children = df[df["tree_role"] == "base"], df[df["tree_role"] == "child"]
    assert list(bases["model_id"]) == [0, 1] and (bases["parent_id"] == -1).all()
    assert (children.groupby("parent_id").size() == 6).all()
    assert children.groupby(["parent_id", "derivation"]).size().unstack().to_dict("records") == [
        {"class_subset": 2, "corruption": 3, "label_permutation": 1}] * 2
    assert set(children["corruption"]) == {"none", "noise", "shift", "scale"}
    assert (children["init_seed"] == -1).all() and (children["epochs"] == 2).all() and (bases["epochs"] == 3).all()
    assert list(children_of(tree, 1)) == list(range(8, 14)) and len(children_of(tree, 5)) == 0
    assert checkpoint_epochs_of(tree, 0) == [0, 2, 3] and checkpoint_epochs_of(tree, 5) == [0, 1, 2]
    curves = tree.curve()
    assert np.isfinite(curves[:2]).all() and np.isnan(curves[2:, 2]).all()  # children trained 2 of 3 epochs


def test_parent_and_task_vector_are_exact(tree):
    assert tree.parent(0) is None
    for child in (2, 7, 13):
        parent = tree.parent(child)
        assert parent == int(tree.models.loc[child, "parent_id"])
        tv = tree.task_vector(child)
        assert torch.equal(tv, tree.weights([child])[0] - tree.weights([parent], -1)[0])
        assert tv.abs().max() > 0
        assert torch.equal(tree.task_vector(child, 0), torch.zeros_like(tv))  # children start at the parent
        assert torch.equal(tree.weights([child], 0)[0], tree.weights([parent], -1)[0])
    with pytest.raises(ZooError, match="no parent"):
        tree.task_vector(1)


def test_epochs_resolve_per_role(tree):
    # bases stored epochs [0, 2, 3], children [0, 1, 2]
    assert torch.equal(tree.weights([0], epoch=3), tree.weights([0], -1))
    assert torch.equal(tree.weights([0], epoch=2), tree.weights([0], 1))
    assert torch.equal(tree.weights([2], epoch=2), tree.weights([2], -1))
    with pytest.raises(ZooError, match="mix bases and children"):
        tree.weights([0, 2], epoch=2)
    with pytest.raises(ZooError, match="no checkpoint at epoch 1 for models \\[0\\]"):
        tree.weights([0], epoch=1)


def test_multi_hot_labels_match_the_rebuilt_child_data(tree):
    labels = class_multi_hot(tree)
    assert labels.shape == (14, 10) and labels.dtype == bool and class_ids(tree) == list(range(10))
    assert np.array_equal(class_multi_hot(tree, [3, 0]), labels[[3, 0]])
    df = tree.models
    for mid in range(14):
        x, y = tree.task_data(mid, "train")
        trained_on = np.zeros(10, dtype=bool)
        trained_on[np.unique(y.numpy())] = True
        if df.loc[mid, "derivation"] == "label_permutation":
            assert labels[mid].all() and trained_on.all()
        else:
            assert np.array_equal(labels[mid], trained_on), mid


def test_derived_tasks_rebuild_exactly_and_reproduce_the_stored_accuracy(tree):
    df = tree.models
    source = build_task(load_spec("tree_quick").task)
    for mid in (2, 4, 5, 6, 7):
        spec = tree.task_spec(mid)
        assert spec[df.loc[mid, "derivation"]] is not None
        rebuilt = build_task(spec)
        x, y = tree.task_data(mid, "test")
        assert torch.equal(x, rebuilt.x_test) and torch.equal(y, rebuilt.y_test)
        net = tree.build_model(mid)
        acc = (net(x).argmax(-1) == y).double().mean().item()
        assert acc == pytest.approx(df.loc[mid, "test_acc"], abs=1e-6)
        if df.loc[mid, "derivation"] == "corruption":
            assert not torch.equal(x, source.x_test) and torch.equal(y, source.y_test)


def test_tree_splits(tree):
    df = tree.models
    assert set(tree.split_names) == {"default", "by_tree", "ood_family", "ood_tasks"}
    by_tree = tree.split("by_tree")
    for tid, group in df.groupby("tree_id"):
        assert len(set(by_tree[group.index])) == 1  # each base with its whole family
    ood_family = tree.split("ood_family")
    corruption = (df["derivation"] == "corruption").to_numpy()
    assert (ood_family[corruption] == 2).all() and (ood_family[~corruption] != 2).all()
    settings = tree.meta["splits"]["ood_tasks"]
    held = {c["task"] for c in settings["holdout"]}
    assert held and tree.meta["tree"]["source_task"] not in held
    in_held = df["task"].isin(held).to_numpy()
    ood_tasks = tree.split("ood_tasks")
    assert (ood_tasks[in_held] == 2).all() and (ood_tasks[~in_held] != 2).all()
    assert in_held.sum() == 2 * len(held)  # the same derived tasks in both trees (tasks: shared)
    # deterministic: the same as planned again from the same table
    from generators.model_tree import tree_splits

    for name, codes, _ in tree_splits(tree.planned, load_spec("tree_quick").splits):
        assert np.array_equal(codes, tree.split(name)), name
    assert tree.meta["normalization"]  # default-split statistics once complete


def test_info_and_summary_show_the_tree(tree_path, tree):
    r = _cli("info", str(tree_path), "--json")
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    assert info["kind"] == "model_tree" and info["n_models"] == 14
    assert info["tree"]["n_bases"] == 2 and info["tree"]["n_children"] == 12
    assert info["tree"]["children_per_base"] == {"class_subset": 2, "label_permutation": 1, "corruption": 3}
    r = _cli("info", str(tree_path))
    assert r.returncode == 0 and "model tree: 2 bases, 12 children" in r.stdout
    from rich.console import Console

    console = Console(record=True, width=200)
    print_summary(tree, console)
    text = console.export_text()
    assert "model tree" in text and "label_permutation" in text and "6/6" in text


def test_children_of_a_diverged_base_are_failed_with_the_reason(tmp_path):
    spec = load_spec("tree_quick").raw
    spec["bases"]["optimizer"] = dict(spec["bases"]["optimizer"], lr=1e6, momentum=0.99)
    z = generate(spec, tmp_path / "bad.zarr", progress=False)
    df = z.models
    assert set(df.loc[:1, "status"]) == {"diverged"}
    children = df[df["tree_role"] == "child"]
    assert set(children["status"]) == {"failed"}
    assert children["error"].str.contains("parent model [01] is diverged", regex=True).all()


def test_a_child_whose_task_cannot_be_built_is_blocked_alone(tmp_path):
    from generators.driver import pending_populations
    from generators.kinds import TaskCache
    from generators.model_tree import tree_job

    spec = load_spec("tree_quick")
    z = generate(spec, tmp_path / "t.zarr", progress=False, stages=[0])
    population = next(p for p in pending_populations(z, spec) if p.stage == 1)
    cache = TaskCache(z)
    broken = str(z.models.loc[population.model_ids[0], "task"])

    def tasks(key):
        if key == broken:
            raise ValueError("corrupted source")
        return cache(key)

    job = tree_job(z, spec, population.model_ids, tasks)
    victims = [i for i in population.model_ids if str(z.models.loc[i, "task"]) == broken]
    assert sorted(job.blocked) == victims and "derived task cannot be built" in job.blocked[victims[0]]
    assert job.model_ids == [i for i in population.model_ids if i not in victims] and job.model_ids


def test_bases_then_children_resume_to_the_same_zoo(tmp_path, tree_path):
    ref = zoo.open(tree_path)
    target = tmp_path / "staged.zarr"
    z = generate("tree_quick", target, progress=False, stages=[1])  # children before their parents: stay pending
    assert (z.status_codes() == STATUS_CODES["pending"]).all()
    z = generate("tree_quick", target, progress=False, stages=[0])
    status = z.status_codes()
    assert (status[:2] == STATUS_CODES["ok"]).all() and (status[2:] == STATUS_CODES["pending"]).all()
    assert not z.meta["normalization"]  # not complete yet
    r = _cli("generate", "tree_quick", "--out", str(target), "--quiet")
    assert r.returncode == 0, r.stderr
    assert_same_zoo(zoo.open(target), ref)


@pytest.fixture(scope="module")
def one_by_one(tmp_path_factory):
    """A tree spec whose models are written one by one (populations of one), and its complete zoo."""
    spec = load_spec("tree_quick").raw
    spec["population"] = {"max_size": 1}
    spec["task"] = dict(spec["task"], train_fraction=0.5)
    root = tmp_path_factory.mktemp("one_by_one")
    spec_file = root / "spec.yaml"
    spec_file.write_text(yaml.safe_dump(spec))
    return spec_file, generate(spec, root / "ref.zarr", progress=False).path


@pytest.mark.slow
@pytest.mark.parametrize("kill_after", ["a base", "some children"])
def test_killed_tree_generation_resumes_to_the_same_zoo(tmp_path, kill_after, one_by_one):
    spec_file, ref_path = one_by_one
    ref = zoo.open(ref_path)
    n, n_bases = ref.n_models, 2
    kill_at = 1 if kill_after == "a base" else n_bases + 2

    target = tmp_path / "killed.zarr"
    done_at_kill = generate_and_kill(spec_file, target, at_least=kill_at)
    assert done_at_kill is not None and done_at_kill < n, "generation finished before it could be killed"
    partial = zoo.open(target).status_codes()
    assert 0 < (partial != STATUS_CODES["pending"]).sum() < n
    if kill_after == "a base":
        assert (partial[n_bases:] == STATUS_CODES["pending"]).all()

    r = _cli("generate", str(spec_file), "--out", str(target), "--quiet")
    assert r.returncode == 0, r.stderr
    assert "model tree" in r.stdout
    assert_same_zoo(zoo.open(target), ref)
