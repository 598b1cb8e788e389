import numpy as np
import pytest
import torch

from generators.population import Member, PopulationConfig, train_population, train_single
from zoo.tasks import TaskData


def _task(shape=(40,), n=300, n_test=100, c=10, seed=0) -> TaskData:
    g = torch.Generator().manual_seed(seed)
    return TaskData(x_train=torch.randn(n, *shape, generator=g), y_train=torch.randint(0, c, (n,), generator=g),
                    x_test=torch.randn(n_test, *shape, generator=g), y_test=torch.randint(0, c, (n_test,), generator=g),
                    n_classes=c, input_shape=tuple(shape), classes=tuple(range(c)))


CASES = [
    ("mlp", (40,), {"width": 16, "depth": 2}, "sgd", "cosine", 1e-5),
    ("mlp", (40,), {"width": 8, "depth": 1, "activation": "tanh"}, "adam", "step", 1e-4),
    ("cnn1d", (40,), {"width": 6}, "sgd", "constant", 1e-5),
    ("cnn2d", (1, 12, 12), {"channels": (4, 3), "kernels": (3, 3), "pools": (2, 1), "hidden": 8}, "sgd",
     "constant", 1e-5),
]


@pytest.mark.parametrize("arch,shape,cfg,opt,sched,tol", CASES)
def test_population_equals_models_trained_alone(arch, shape, cfg, opt, sched, tol):
    task = _task(shape)
    config = PopulationConfig(arch, cfg, optimizer=opt, batch_size=32, epochs=3, checkpoint_epochs=(0, 1, 3),
                              schedule=sched, step_size=1)
    members = [Member(i, 50 + i, lr=0.02 * (i + 1), weight_decay=1e-3 * i, momentum=0.5 + 0.2 * i) for i in range(3)]
    pop = train_population(config, members, task)
    assert pop.weights.shape[:2] == (3, 3)
    for i, m in enumerate(members):
        alone = train_single(config, m, task)
        assert torch.allclose(pop.weights[i], alone.weights[0], atol=tol, rtol=0), i
        for name, values in alone.metrics.items():
            np.testing.assert_allclose(pop.metrics[name][i], values[0], atol=1e-4)
        np.testing.assert_allclose(pop.curve[i], alone.curve[0], rtol=1e-4)
    # the members really differ (different seeds and learning rates)
    assert not torch.allclose(pop.weights[0, -1], pop.weights[1, -1])


def test_initial_checkpoint_is_the_seeded_init_and_members_differ():
    task = _task()
    config = PopulationConfig("mlp", {"width": 8}, epochs=1, checkpoint_epochs=(0, 1))
    a = train_population(config, [Member(3, 0, 0.1), Member(4, 0, 0.1)], task)
    b = train_population(config, [Member(3, 0, 0.1)], task)
    assert torch.equal(a.weights[0, 0], b.weights[0, 0])
    assert not torch.equal(a.weights[0, 0], a.weights[1, 0])


def test_a_diverging_member_is_flagged_and_does_not_touch_the_others():
    task = _task()
    config = PopulationConfig("mlp", {"width": 8}, epochs=3, checkpoint_epochs=(0, 3))
    good = Member(0, 1, lr=0.01)
    pop = train_population(config, [good, Member(1, 2, lr=1e6, momentum=0.99)], task)
    alone = train_single(config, good, task)
    assert pop.diverged_epoch[0] == -1 and pop.diverged_epoch[1] >= 1
    assert torch.allclose(pop.weights[0], alone.weights[0], atol=1e-5)


def test_a_user_registered_architecture_trains_without_touching_the_trainer():
    import torch.nn as nn

    from zoo.architectures import register_architecture

    class TinyNormNet(nn.Module):
        def __init__(self, input_shape, n_classes, width=6):
            super().__init__()
            self.fc = nn.Linear(input_shape[0], width)
            self.norm = nn.LayerNorm(width)
            self.out = nn.Linear(width, n_classes)

        def forward(self, x):
            return self.out(torch.tanh(self.norm(self.fc(x))))

    register_architecture("test_tiny_norm")(lambda input_shape, n_classes, width=6: TinyNormNet(input_shape, n_classes,
                                                                                              width))
    task = _task()
    config = PopulationConfig("test_tiny_norm", {"width": 5}, optimizer="sgd", batch_size=50, epochs=2,
                              checkpoint_epochs=(0, 2))
    members = [Member(i, 7 + i, lr=0.05) for i in range(3)]
    pop = train_population(config, members, task)  # generic path: vmap over functional_call
    for i, m in enumerate(members):
        assert torch.allclose(pop.weights[i], train_single(config, m, task).weights[0], atol=1e-5)


@pytest.mark.parametrize("activation", ["relu", "tanh", "sigmoid"])
def test_mlp_hand_written_backward_equals_autograd(activation):
    from generators.population import PopulationModel, init_model

    task = _task()
    config = PopulationConfig("mlp", {"width": 12, "depth": 2, "activation": activation})
    model = PopulationModel([init_model(config, task, s) for s in range(3)])
    assert model.manual
    g = torch.Generator().manual_seed(0)
    idx = torch.randint(0, 300, (3, 17), generator=g)
    x, y = task.x_train[idx], task.y_train[idx]
    loss, grads = model.loss_and_grads(x, y)
    model.manual = False
    ref_loss, ref_grads = model.loss_and_grads(x, y)
    assert torch.allclose(loss, ref_loss, atol=1e-6)
    for a, b in zip(grads, ref_grads):
        assert torch.allclose(a, b, atol=1e-6), (a - b).abs().max()
