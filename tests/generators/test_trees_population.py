"""Fine-tuning in the population trainer: start weights and one task per member (ragged sizes)."""

import numpy as np
import pytest
import torch

from generators.member_data import MemberData
from generators.population import Member, PopulationConfig, train_population, train_single
from zoo.errors import ArchitectureMismatchError, ZooError
from zoo.tasks import TaskData


def _task(n, c=6, shape=(12,), seed=0, classes=None) -> TaskData:
    """A random task of ``n`` training examples whose labels are drawn from ``classes`` (default all)."""
    g = torch.Generator().manual_seed(seed)
    pool = torch.tensor(classes if classes is not None else range(c))
    return TaskData(x_train=torch.randn(n, *shape, generator=g), y_train=pool[torch.randint(0, len(pool), (n,), generator=g)],
                    x_test=torch.randn(40, *shape, generator=g), y_test=pool[torch.randint(0, len(pool), (40,), generator=g)],
                    n_classes=c, input_shape=tuple(shape), classes=tuple(range(c)))


def test_member_data_gives_every_member_its_own_epoch():
    tasks = [_task(70, seed=1), _task(45, seed=2), _task(70, seed=1)]
    tasks[2] = tasks[0]  # members 0 and 2 share one task object
    data = MemberData(tasks)
    assert len(data.groups) == 2 and data.x.shape[0] == 115 and data.sizes.tolist() == [70, 45, 70]
    gens = [torch.Generator().manual_seed(s) for s in (5, 6, 7)]
    orders = data.epoch_orders(gens)
    seen = [[] for _ in range(3)]
    for sel, idx in data.batches(orders, 16):
        members = range(3) if sel is None else sel.tolist()
        for row, j in zip(idx, members):
            seen[j].append(row)
    for j in range(3):
        batches = seen[j]
        # the batches a member trained alone would see: its own permutation in slices of 16
        alone = torch.randperm(data.sizes[j].item(), generator=torch.Generator().manual_seed(5 + j))
        assert [len(b) for b in batches] == [len(alone[i:i + 16]) for i in range(0, len(alone), 16)]
        assert torch.equal(torch.cat(batches), alone + data.offsets[j])
    assert torch.equal(data.y[torch.cat(seen[1])], tasks[1].y_train[orders[1] - data.offsets[1]])


CASES = [
    ("mlp", {"width": 10, "depth": 2}, "sgd", 1e-5),
    ("mlp", {"width": 10, "depth": 1, "activation": "gelu"}, "adam", 1e-4),  # autograd path
    ("cnn1d", {"width": 3}, "adamw", 1e-4),  # vmap path
]


@pytest.mark.parametrize("arch,cfg,opt,tol", CASES)
def test_children_fine_tuned_in_a_population_equal_children_fine_tuned_alone(arch, cfg, opt, tol):
    parent_task = _task(100, seed=0)
    config = PopulationConfig(arch, cfg, optimizer=opt, batch_size=16, epochs=2, checkpoint_epochs=(0, 1, 2),
                              schedule="cosine")
    parents = train_population(config, [Member(0, 1, 0.05), Member(1, 2, 0.05)], parent_task).weights[:, -1]
    # class-subset children have fewer examples (ragged batches), the others as many as their parent
    tasks = [_task(70, seed=3, classes=[0, 2, 5]), _task(100, seed=4), _task(33, seed=5, classes=[1, 4]), parent_task]
    members = [Member(0, 100 + i, lr=0.01 * (i + 1), weight_decay=1e-3 * i, momentum=0.8) for i in range(4)]
    start = parents[[0, 0, 1, 1]]
    pop = train_population(config, members, tasks, start_weights=start)
    for i, member in enumerate(members):
        alone = train_single(config, member, tasks[i], start_weights=start[i])
        assert torch.equal(pop.weights[i, 0], start[i])  # epoch 0 is exactly the parent's final weights
        assert torch.allclose(pop.weights[i], alone.weights[0], atol=tol, rtol=0), i
        for name, values in alone.metrics.items():  # evaluated on the member's own task
            np.testing.assert_allclose(pop.metrics[name][i], values[0], atol=1e-4)
        np.testing.assert_allclose(pop.curve[i], alone.curve[0], rtol=1e-4)
    assert not torch.allclose(pop.weights[0, -1], pop.weights[1, -1])


def test_start_weights_and_tasks_are_checked():
    task = _task(40)
    config = PopulationConfig("mlp", {"width": 4, "depth": 1}, epochs=1, checkpoint_epochs=(0, 1))
    with pytest.raises(ArchitectureMismatchError, match=r"start_weights of shape \[2, 7\]"):
        train_population(config, [Member(0, 0, 0.1)] * 2, task, start_weights=torch.zeros(2, 7))
    with pytest.raises(ValueError, match="start_weights for 1 models, 2 members"):
        train_population(config, [Member(0, 0, 0.1)] * 2, task, start_weights=torch.zeros(1, 7))
    with pytest.raises(ZooError, match="members must share input shape and label space"):
        train_population(config, [Member(0, 0, 0.1)] * 2, [task, _task(40, c=5)])
    with pytest.raises(ValueError, match="3 tasks for 2 members"):
        train_population(config, [Member(0, 0, 0.1)] * 2, [task] * 3)
