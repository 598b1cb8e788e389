"""StatNN: the statistics view into an MLP head and into gradient-boosted trees, on the same data module."""

import pytest
from helpers.planted import fit_quietly

from weightnets import StatNN, StatNNBoosting, ZooDataModule


def test_statnn_boosting_predicts_the_number_of_classes_from_statistics(planted_tree):
    # the planted patterns add to layers.1 once per class: its statistics carry the class count
    dm = ZooDataModule(planted_tree, target="n_classes_trained", view="stats", batch_size=64, cache=True)
    module = StatNNBoosting(tensors="hidden", max_iter=50)
    metrics = fit_quietly(module, dm, max_epochs=1)
    assert metrics["test/kendall_tau"] > 0.5 and set(metrics) >= {"test/r2", "test/mae"}
    assert module.trained_params > 0 and len(module.entries[dm.spec.arch_keys[0]]) == 4  # 2 hidden layers


@pytest.mark.parametrize("learner", [StatNN, StatNNBoosting])
def test_statnn_takes_several_architectures_for_phases(mixed_grid, learner):
    dm = ZooDataModule(mixed_grid, target="phase", view="stats", batch_size=8, cache=True)
    module = learner(tensors="all") if learner is StatNN else learner(tensors="all", max_iter=5, min_samples_leaf=2)
    metrics = fit_quietly(module, dm, max_epochs=2 if learner is StatNN else 1)
    assert 0.0 <= metrics["test/acc"] <= 1.0 and "test/balanced_acc" in metrics


def test_statnn_needs_the_stats_view(planted_tree):
    import zoo

    dm = ZooDataModule(planted_tree, target="classes", view="flat")
    with pytest.raises(zoo.ZooError, match="reads data.view 'stats'"):
        fit_quietly(StatNN(), dm, max_epochs=1)
