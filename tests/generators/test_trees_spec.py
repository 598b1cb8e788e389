import copy

import numpy as np
import pytest
import yaml

from generators.spec import load_spec
from generators.tree_plan import derivations, plan_tree
from generators.tree_spec import ModelTreeSpec
from zoo.errors import SpecError, UnknownNameError

TREE = {
    "name": "t",
    "kind": "model_tree",
    "task": {"source": "mnist1d", "train_fraction": 0.25},
    "optimizer": {"name": "sgd", "lr": 0.05, "momentum": 0.9, "batch_size": 64},
    "bases": {"architecture": {"name": "mlp", "width": 8, "depth": 1}, "seeds": 2, "epochs": 3},
    "children": {"seed": 0, "epochs": 2, "optimizer": {"lr": 0.02},
                 "families": {"class_subset": {"count": 3, "size": [2, 4]},
                              "label_permutation": {"count": 2, "moved": [2, 3]},
                              "corruption": {"count": 3, "kinds": {"noise": {"range": [0.1, 0.5]},
                                                                   "shift": {"levels": [1, -2]},
                                                                   "scale": {"range": [0.5, 2.0]}}}}},
}


def _tree(**changes):
    spec = copy.deepcopy(TREE)
    for path, value in changes.items():
        node = spec
        *parents, last = path.split("__")
        for p in parents:
            node = node.setdefault(p, {})
        if value is None:
            node.pop(last, None)
        else:
            node[last] = value
    return spec


def test_shipped_tree_specs_load_and_round_trip():
    for name in ("tree_demo", "tree_quick"):
        spec = load_spec(name)
        assert isinstance(spec, ModelTreeSpec) and spec.kind == "model_tree"
        assert len(spec.base_training.checkpoint_epochs) == len(spec.child_training.checkpoint_epochs)
        # the canonical spec stored in a zoo validates to the same spec
        assert load_spec(spec.raw).spec_hash == spec.spec_hash
        assert load_spec(spec.raw).raw == spec.raw
    demo = load_spec("tree_demo")
    assert len(demo.bases) == 6 and {b.architecture for b in demo.bases} == {"mlp", "cnn1d"}
    assert demo.n_children_per_base == 36


def test_defaults_shared_optimiser_and_checkpoint_counts():
    spec = load_spec(_tree())
    assert spec.base_training.optimizer["lr"] == 0.05 and spec.child_training.optimizer["lr"] == 0.02
    assert spec.child_training.optimizer["momentum"] == 0.9  # shared default kept
    assert spec.base_training.checkpoint_epochs == [0, 2, 3]  # default {count: 3}
    assert spec.child_training.checkpoint_epochs == [0, 1, 2]  # as many checkpoints as the bases
    fam = load_spec(_tree(children__families__corruption__optimizer={"name": "adam", "lr": 1e-3}))
    corr = [f for f in fam.families if f.name == "corruption"][0]
    assert corr.optimizer["name"] == "adam" and corr.optimizer["momentum"] == 0.0
    assert corr.optimizer["batch_size"] == 64
    two_archs = load_spec(_tree(bases__architecture=None,
                                bases__architectures=[{"name": "mlp", "width": 8}, {"name": "cnn1d", "width": 4}]))
    assert [(b.architecture, b.seed) for b in two_archs.bases] == [("mlp", 0), ("mlp", 1), ("cnn1d", 0), ("cnn1d", 1)]


def test_spec_from_yaml_file_names_the_zoo_after_the_file(tmp_path):
    spec = _tree(name=None)
    path = tmp_path / "my_tree.yaml"
    path.write_text(yaml.safe_dump(spec))
    assert load_spec(path).name == "my_tree"


@pytest.mark.parametrize("changes,field", [
    ({"kind": "forest"}, "kind"),
    ({"colour": "green"}, "colour"),
    ({"bases": None}, "bases"),
    ({"bases__architectures": [{"name": "mlp"}]}, "bases.architectures"),  # both architecture and architectures
    ({"bases__architecture": {"name": "resnet"}}, "bases.architecture.name"),
    ({"bases__seeds": [1, 1]}, "bases.seeds"),
    ({"bases__epochs": 0}, "bases.epochs"),
    ({"bases__optimizer": {"name": "lion"}}, "bases.optimizer.name"),
    ({"children": None}, "children"),
    ({"children__families": {}}, "children.families"),
    ({"children__families": {"rotation": {"count": 2}}}, "children.families.rotation"),
    ({"children__families__class_subset__size": [1, 3]}, r"children.families.class_subset.size\[0\]"),
    ({"children__families__class_subset__size": [4, 2]}, "children.families.class_subset.size"),
    ({"children__families__label_permutation__count": -1}, "children.families.label_permutation.count"),
    ({"children__families__corruption__kinds": {"blur": {"levels": [1]}}}, "children.families.corruption.kinds.blur"),
    ({"children__families__corruption__kinds": {"noise": {"range": [0.5, -1]}}},
     r"children.families.corruption.kinds.noise.range\[1\]"),
    ({"children__families__corruption__kinds": {"shift": {"levels": [0]}}},
     r"children.families.corruption.kinds.shift.levels\[0\]"),
    ({"children__families__corruption__kinds": {"shift": {"range": [-2, 2]}}},
     "children.families.corruption.kinds.shift.range"),
    ({"children__families__corruption__kinds": {"noise": {"range": [0.1, 0.2], "levels": [0.1]}}},
     "children.families.corruption.kinds.noise"),
    ({"children__tasks": "sometimes"}, "children.tasks"),
    ({"children__epochs": 4, "children__checkpoints": [1, 2]}, "children.checkpoints"),  # 3 base, 4 child ckpts
    ({"children__lr_range": [0.1, 0.01]}, "children.lr_range"),
    ({"children__families": {"class_subset": {"count": 0}}}, "children.families"),
    ({"task": {"source": "mnist1d", "class_subset": [1, 2]}}, "task.class_subset"),
    ({"splits": {"ood_family": "label_permutation"}, "children__families__label_permutation": {"count": 0}},
     "splits.ood_family"),
])
def test_bad_tree_spec_names_the_field(changes, field):
    with pytest.raises(SpecError, match=field):
        load_spec(_tree(**changes))


def test_unknown_architecture_is_an_unknown_name_error():
    with pytest.raises(UnknownNameError, match="choose from"):
        load_spec(_tree(bases__architecture={"name": "resnet"}))


def test_derived_tasks_are_deterministic_distinct_and_within_ranges():
    spec = load_spec(_tree())
    classes = list(range(10))
    first = derivations(spec, classes, 0)
    assert [d.family for d in first] == ["class_subset"] * 3 + ["label_permutation"] * 2 + ["corruption"] * 3
    assert [(d.options, d.columns) for d in first] == [(d.options, d.columns) for d in derivations(spec, classes, 0)]
    subsets = [d.options["class_subset"] for d in first[:3]]
    assert len({tuple(s) for s in subsets}) == 3 and all(2 <= len(s) <= 4 for s in subsets)
    for d in first[3:5]:
        perm = d.options["label_permutation"]
        moved = sum(p != i for i, p in enumerate(perm))
        assert sorted(perm) == classes and 2 <= moved <= 3 and d.columns["n_moved_classes"] == moved
    kinds = [d.options["corruption"]["kind"] for d in first[5:]]
    assert kinds == ["noise", "scale", "shift"]  # kinds take turns, in sorted order
    noise, scale, shift = (d.options["corruption"] for d in first[5:])
    assert 0.1 <= noise["level"] <= 0.5 and noise["seed"] >= 0
    assert 0.5 <= scale["level"] <= 2.0 and shift["level"] in (1, -2)
    # shared tasks: every base gets the same; per_base: they differ; another seed: they differ
    assert [d.options for d in derivations(spec, classes, 1)] == [d.options for d in first]
    per_base = load_spec(_tree(children__tasks="per_base"))
    assert [d.options for d in derivations(per_base, classes, 0)] != [d.options for d in derivations(per_base,
                                                                                                    classes, 1)]
    other = load_spec(_tree(children__seed=7))
    assert [d.options for d in derivations(other, classes, 0)] != [d.options for d in first]


def test_adding_a_learning_rate_range_keeps_the_tasks():
    spec = load_spec(_tree())
    ranged = load_spec(_tree(children__lr_range=[0.001, 0.1]))
    a, b = derivations(spec, list(range(10)), 0), derivations(ranged, list(range(10)), 0)
    assert [d.options for d in a] == [d.options for d in b]
    lrs = [d.lr for d in b]
    assert all(0.001 <= lr <= 0.1 for lr in lrs) and len(set(lrs)) == len(lrs)
    assert all(d.lr is None for d in a)


def test_too_many_children_for_the_possible_subsets_is_an_error():
    spec = load_spec(_tree(children__families__class_subset={"count": 11, "size": [9, 9]}))
    with pytest.raises(SpecError, match=r"children.families.class_subset.size.*only 10 exist"):
        derivations(spec, list(range(10)), 0)
    spec = load_spec(_tree(children__families__class_subset={"count": 1, "size": [2, 10]}))
    with pytest.raises(SpecError, match="children.families.class_subset.size"):
        derivations(spec, list(range(10)), 0)


def test_a_shift_longer_than_the_inputs_is_refused_before_anything_trains():
    spec = load_spec(_tree(children__families__corruption={"count": 1, "kinds": {"shift": {"levels": [45]}}}))
    with pytest.raises(SpecError, match=r"children.families.corruption.kinds.shift': a shift of 45 .*length 40"):
        plan_tree(spec)


def test_plan_has_tree_columns_and_multi_hot_labels():
    spec = load_spec(_tree(bases__architecture=None,
                           bases__architectures=[{"name": "mlp", "width": 8}, {"name": "cnn1d", "width": 4,
                                                                             "kernel_size": 3}]))
    models, archs, tasks, tree = plan_tree(spec)
    n_bases, per_base = 4, 8
    assert len(models) == n_bases * (1 + per_base) and len(archs) == 2
    assert list(models["model_id"]) == list(range(len(models)))
    bases, children = models[models["tree_role"] == "base"], models[models["tree_role"] == "child"]
    assert (bases["parent_id"] == -1).all() and (bases["tree_depth"] == 0).all()
    assert (children["tree_depth"] == 1).all()
    assert (children["arch_key"].to_numpy() == models.loc[children["parent_id"], "arch_key"].to_numpy()).all()
    assert (children["tree_id"] == children["parent_id"]).all() and (bases["tree_id"] == bases["model_id"]).all()
    multi_hot = models[tree["class_columns"]].to_numpy()
    assert multi_hot.dtype == bool and multi_hot.shape == (len(models), 10)
    subset_rows = models["derivation"] == "class_subset"
    assert (multi_hot[~subset_rows.to_numpy()]).all()
    for row, hot in zip(models[subset_rows].itertuples(), multi_hot[subset_rows.to_numpy()]):
        assert row.class_subset == ",".join(str(c) for c in np.flatnonzero(hot))
        assert row.n_classes_trained == hot.sum()
    # an option of only one architecture: NaN for the others
    assert models.loc[models["architecture"] == "mlp", "kernel_size"].isna().all()
    assert (models.loc[models["architecture"] == "cnn1d", "kernel_size"] == 3).all()
    # every child's task is its source task plus exactly its derivation
    source = tasks[tree["source_task"]]
    for row in children.itertuples():
        derived = tasks[row.task]
        extra = {k: v for k, v in derived.items() if k not in source}
        assert {k: v for k, v in derived.items() if k in source} == source
        assert list(extra) == [row.derivation]
    assert tree["checkpoint_epochs"] == {"base": [0, 2, 3], "child": [0, 1, 2]}


def test_an_impossible_subset_count_names_the_spec_file(tmp_path):
    spec = _tree(children__families={"class_subset": {"count": 600, "size": [3, 5]}})
    path = tmp_path / "big.yaml"
    path.write_text(yaml.safe_dump(spec))
    with pytest.raises(SpecError, match=rf"^{path}: field 'children.families.class_subset.size': 600 children need "):
        plan_tree(load_spec(path))
