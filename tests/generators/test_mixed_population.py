"""Mixed widths, batch sizes and training sets in one population: every member trains as it would alone."""

import pytest
import torch
import torch.nn as nn

from generators.cost import CostModel
from generators.member_data import MemberData, Schedule
from generators.population import (
    Member,
    PopulationConfig,
    PopulationModel,
    init_model,
    train_population,
    train_single,
)
from zoo.architectures import chain_permutation_spec, register_architecture
from zoo.errors import ArchitectureMismatchError
from zoo.tasks import TaskData

#: never pads a batch, and updates tensor by tensor: the other code paths of the trainer
NO_PADDING_PER_TENSOR = CostModel(call_overhead_s=0.0, per_row_overhead_s=0.0, op_overhead_s=0.0)


def _task(shape=(20,), n=150, n_test=60, c=5, seed=0) -> TaskData:
    g = torch.Generator().manual_seed(seed)
    return TaskData(x_train=torch.randn(n, *shape, generator=g), y_train=torch.randint(0, c, (n,), generator=g),
                    x_test=torch.randn(n_test, *shape, generator=g), y_test=torch.randint(0, c, (n_test,), generator=g),
                    n_classes=c, input_shape=tuple(shape), classes=tuple(range(c)))


def _subset(task: TaskData, n: int) -> TaskData:
    """The first ``n`` training examples (a nested subset of one source, as ``train_fraction`` builds)."""
    return TaskData(task.x_train[:n], task.y_train[:n], task.x_test, task.y_test, task.n_classes, task.input_shape,
                    task.classes)


class MaskedNet(nn.Module):
    """A user architecture that can be zero-padded: it declares its units and takes ``unit_masks``."""

    def __init__(self, input_shape, n_classes, hidden=6):
        super().__init__()
        self.fc = nn.Linear(input_shape[0], hidden)
        self.out = nn.Linear(hidden, n_classes)

    def forward(self, x, unit_masks=None):
        h = torch.sigmoid(self.fc(x))
        if unit_masks is not None:
            h = h * unit_masks[0]
        return self.out(h)

    def permutation_spec(self):
        return chain_permutation_spec(["fc", "out"], [self.fc.out_features, self.out.out_features])


class NormNet(nn.Module):
    """A user architecture that cannot be padded: LayerNorm mixes its units and it takes no unit masks."""

    def __init__(self, input_shape, n_classes, hidden=6):
        super().__init__()
        self.fc = nn.Linear(input_shape[0], hidden)
        self.norm = nn.LayerNorm(hidden)
        self.out = nn.Linear(hidden, n_classes)

    def forward(self, x):
        return self.out(torch.tanh(self.norm(self.fc(x))))


register_architecture("test_masked_net")(lambda input_shape, n_classes, hidden=6: MaskedNet(input_shape, n_classes,
                                                                                          hidden))
register_architecture("test_norm_net")(lambda input_shape, n_classes, hidden=6: NormNet(input_shape, n_classes, hidden))

# (architecture, input shape, the members' options: widths differ, optimiser, tolerance)
CASES = [
    ("mlp", (20,), [{"width": w, "depth": 2, "activation": "relu"} for w in (3, 9, 5)], "sgd", 1e-5),
    ("mlp", (20,), [{"width": w, "depth": 2, "activation": "tanh"} for w in (3, 9, 5)], "adam", 1e-4),
    ("mlp", (20,), [{"width": w, "depth": 2, "activation": "sigmoid"} for w in (3, 9, 5)], "adamw", 1e-4),
    ("mlp", (20,), [{"width": w, "depth": 1, "activation": "gelu"} for w in (3, 9, 5)], "sgd", 1e-5),  # autograd
    ("cnn1d", (20,), [{"width": w, "activation": "sigmoid"} for w in (2, 5, 3)], "adam", 1e-4),
    ("cnn2d", (1, 10, 10), [{"channels": c, "kernels": (3, 3), "pools": (2, 1), "hidden": h, "activation": "tanh"}
                            for c, h in (((4, 3), 7), ((2, 2), 5), ((4, 1), 6))], "sgd", 1e-5),
    ("test_masked_net", (20,), [{"hidden": h} for h in (3, 8, 5)], "adamw", 1e-4),
]


@pytest.mark.parametrize("arch,shape,cfgs,opt,tol", CASES, ids=[f"{c[0]}-{c[3]}-{i}" for i, c in enumerate(CASES)])
@pytest.mark.parametrize("cost", [None, NO_PADDING_PER_TENSOR], ids=["padded-batches", "no-padding"])
def test_mixed_widths_batches_and_subsets_equal_training_alone(arch, shape, cfgs, opt, tol, cost):
    task = _task(shape)
    tasks = [task, _subset(task, 90), task]  # two training sets: ragged epochs
    config = PopulationConfig(arch, cfgs[0], optimizer=opt, batch_size=32, epochs=3, checkpoint_epochs=(0, 1, 3),
                              schedule="cosine")
    members = [Member(i, 40 + i, lr=0.02 * (i + 1), weight_decay=1e-3 * (i + 1), momentum=0.5 + 0.2 * i,
                      batch_size=(16, 32, 50)[i], arch_config=cfgs[i]) for i in range(3)]
    pop = train_population(config, members, tasks, cost_model=cost)
    assert isinstance(pop.weights, list)  # one tensor per member: the stored weights are unpadded
    for i, m in enumerate(members):
        alone = train_single(config, m, tasks[i])
        assert pop.weights[i].shape == alone.weights[0].shape, i
        assert torch.allclose(pop.weights[i], alone.weights[0], atol=tol, rtol=0), (i, (pop.weights[i] -
                                                                                        alone.weights[0]).abs().max())
        for name, values in alone.metrics.items():
            assert abs(pop.metrics[name][i] - values[0]).max() < 1e-4, name
        assert abs(pop.curve[i] - alone.curve[0]).max() < 1e-4


@pytest.mark.parametrize("activation", ["relu", "tanh", "sigmoid"])
def test_padded_units_get_exactly_zero_gradients_and_do_not_influence_real_units(activation):
    task = _task()
    config = PopulationConfig("mlp", {"width": 9, "depth": 2, "activation": activation})
    modules = [init_model(config, task, s, {"width": w, "depth": 2, "activation": activation})
               for s, w in ((0, 3), (1, 9), (2, 5))]
    model = PopulationModel(modules)
    assert model.padded and model.member_sizes[1] == model.layout.n_params > model.member_sizes[0]
    idx = torch.randint(0, 150, (3, 11), generator=torch.Generator().manual_seed(0))
    x, y = task.x_train[idx], task.y_train[idx]
    for manual in (True, False):  # the hand-written backward and autograd
        model.manual = manual
        loss, grads = model.loss_and_grads(x, y)
        flat = model.layout.flatten(dict(zip(model.layout.names, grads)), batch_dims=1)
        for j, m in enumerate(modules):
            padding = torch.ones(model.layout.n_params, dtype=torch.bool)
            padding[model.member_index[j]] = False
            assert (flat[j, padding] == 0).all(), "a padded parameter got a gradient"
            ref = nn.functional.cross_entropy(m(x[j]), y[j])
            assert torch.allclose(loss[j], ref, atol=1e-6)
    # garbage in every padded parameter changes nothing: padded units output exactly zero
    logits = model.logits(model.params, task.x_test, shared=True)
    noisy = model.flat_params.clone()
    for j in range(3):
        padding = torch.ones(model.layout.n_params, dtype=torch.bool)
        padding[model.member_index[j]] = False
        noisy[j, padding] = torch.randn(int(padding.sum()))
    assert torch.equal(model.logits(model.layout.unflatten(noisy), task.x_test, shared=True), logits)
    for j, m in enumerate(modules):
        assert torch.allclose(logits[j], m(task.x_test), atol=1e-5)


def test_an_architecture_that_cannot_be_padded_is_refused_in_one_population():
    task = _task()
    config = PopulationConfig("test_norm_net", {"hidden": 4})
    members = [Member(0, 1, 0.05, arch_config={"hidden": 4}), Member(1, 2, 0.05, arch_config={"hidden": 6})]
    with pytest.raises(ArchitectureMismatchError, match="takes no unit_masks"):
        train_population(config, members, task)
    # one width is fine (vmap, no padding)
    same = [Member(0, 1, 0.05), Member(1, 2, 0.05, batch_size=16)]
    pop = train_population(PopulationConfig("test_norm_net", {"hidden": 4}, epochs=2, checkpoint_epochs=(0, 2)),
                           same, task)
    for i, m in enumerate(same):
        alone = train_single(PopulationConfig("test_norm_net", {"hidden": 4}, epochs=2, checkpoint_epochs=(0, 2)),
                             m, task)
        assert torch.allclose(pop.weights[i], alone.weights[0], atol=1e-5)


def test_schedule_gives_each_member_its_own_batches_and_steps():
    sizes, batches = [100, 100, 60, 100], [16, 16, 16, 40]
    for overhead in (0.0, 1e9):  # never / always share a padded call
        schedule = Schedule(sizes, batches, overhead)
        seen: list[list[tuple[int, int]]] = [[] for _ in sizes]
        for t, calls in enumerate(schedule.ticks):
            rows = [r for call in calls for r in range(call.start, call.stop)]
            assert len(rows) == len(set(rows))  # a member steps at most once per tick
            for call in calls:
                for lane, lo, hi, c0, c1 in call.pieces:
                    for r in range(schedule.lanes[lane][0] + lo, schedule.lanes[lane][0] + hi):
                        seen[r].append((c0, c1))
                if call.weights is not None:  # padded examples weigh 0, a member's own 1 / its batch length
                    assert torch.allclose(call.weights.sum(1), torch.ones(call.stop - call.start))
        for r, (n, b) in enumerate(zip(sizes, batches)):
            assert seen[r] == [(i, min(i + b, n)) for i in range(0, n, b)]
        assert list(schedule.steps) == [7, 7, 4, 3]
    assert Schedule(sizes, batches, 1e9).n_calls < Schedule(sizes, batches, 0.0).n_calls


def test_member_data_batches_keep_their_old_meaning():
    data = MemberData([_task(n=70), _task(n=45, seed=1)])
    gens = [torch.Generator().manual_seed(s) for s in (5, 6)]
    orders = data.epoch_orders(gens)
    steps = list(data.batches(orders, 16))
    assert [None if sel is None else sel.tolist() for sel, _ in steps][:2] == [None, None]
    assert sum(idx.shape[1] for sel, idx in steps if sel is None or 0 in sel.tolist()) == 70
