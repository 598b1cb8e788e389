"""Learned coefficients (aTLAS, AdaMerging): only the coefficients train, C = 0 is the base bit for bit, the
coefficient gradient matches finite differences, the data module serves what it promises, CMA-ES."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from helpers.compose_fixtures import quick_problem, quick_tree, tiny_problem

from weightnets.compose import (
    ATLAS,
    AdaMerging,
    CompositionDataModule,
    CompositionError,
    cma_search,
    few_shot,
)
from weightnets.compose.coefficients import entropy, uniform_cross_entropy
from weightnets.compose.run import fit_coefficients
from weightnets.evaluate import validation_split


def test_zero_coefficients_are_the_base_bit_for_bit():
    problem = quick_problem()
    module = ATLAS().bind(problem)
    assert module.coeffs.shape == (problem.vectors.n_tasks, len(problem.vectors.layout))  # per tensor
    assert torch.equal(module.coeffs, torch.zeros_like(module.coeffs))
    w = module.composed()
    assert torch.equal(w.view(torch.int32), problem.vectors.base.view(torch.int32))  # bits, not values
    x, _ = problem.tasks[0].split("test")
    base_model = quick_tree().build_model(problem.base_id)
    with torch.no_grad():
        assert torch.equal(module(x), base_model(x))


def test_only_coefficients_are_trainable_and_checkpointed():
    problem = quick_problem()
    module = ATLAS().bind(problem)
    trainable = [n for n, p in module.named_parameters() if p.requires_grad]
    assert trainable == ["coeffs"] and module.n_trainable() == module.coeffs.numel()
    assert "base" not in module.state_dict() and "stack" not in module.state_dict()
    opt = module.configure_optimizers()
    assert [p for g in opt.param_groups for p in g["params"]] == [module.coeffs]
    loss = F.cross_entropy(module(problem.tasks[0].x_train[:32]), problem.tasks[0].y_train[:32])
    loss.backward()
    assert module.coeffs.grad is not None and module.base.grad is None and module.stack.grad is None
    assert all(p.grad is None for p in problem.arch.parameters())


@pytest.mark.parametrize("granularity", ["task", "layer", "tensor"])
def test_coefficient_gradient_matches_finite_differences(granularity):
    problem = tiny_problem(torch.float64)
    module = ATLAS(granularity=granularity).bind(problem)
    x = problem.tasks[0].x_train.double()
    y = problem.tasks[0].y_train

    def loss(c):
        return F.cross_entropy(module.logits(x, module.composed(c)), y)

    c0 = 0.3 * torch.randn(module.coeffs.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    assert torch.autograd.gradcheck(loss, (c0.requires_grad_(),), eps=1e-6, atol=1e-6)


def test_objectives():
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.5, 0.5, 0.5]])
    p = logits.softmax(-1)
    torch.testing.assert_close(entropy(logits), -(p * p.log()).sum(-1).mean())
    uniform = torch.zeros(4, 10)
    assert float(uniform_cross_entropy(uniform)) == pytest.approx(float(torch.log(torch.tensor(10.0))))
    assert float(uniform_cross_entropy(logits)) > float(uniform_cross_entropy(torch.zeros(2, 3)))


def test_few_shot_draws_from_the_fitting_part_only():
    task = quick_problem().tasks[0]
    x, y = few_shot(task, 4, seed=0)
    assert torch.bincount(y).tolist() == [4] * task.n_classes
    (fx, _), (vx, _) = validation_split(task)
    fit_rows = {tuple(r.tolist()) for r in fx}
    assert all(tuple(r.tolist()) in fit_rows for r in x)
    assert not ({tuple(r.tolist()) for r in x} & {tuple(r.tolist()) for r in vx})
    assert torch.equal(few_shot(task, 4, seed=0)[0], x) and not torch.equal(few_shot(task, 4, seed=1)[0], x)
    with pytest.raises(CompositionError, match=r"--shots 500: task has only \d+ training examples of class"):
        few_shot(task, 500, name="task")


def test_unlabelled_data_never_carries_labels():
    problem = quick_problem()
    dm = CompositionDataModule.from_problem(problem, unlabelled="test", batch_size=1000)
    batch, _, _ = next(iter(dm.train_dataloader()))
    assert sorted(batch) == [f"task{t}" for t in range(problem.vectors.n_tasks)]
    for t in range(problem.vectors.n_tasks):
        x, y = batch[f"task{t}"]
        assert (y == -1).all() and len(x) == len(problem.tasks[t].y_test)
    with pytest.raises(CompositionError, match="either shots"):
        CompositionDataModule(shots=2, unlabelled="test")


def test_atlas_few_shot_lowers_its_loss_and_adamerging_clamps():
    problem = quick_problem()
    torch.manual_seed(0)
    dm = CompositionDataModule.from_problem(problem, shots=8, seed=0)
    module = ATLAS("ce", lr=0.05)
    fit_coefficients(problem, module, dm, steps=30, select_every=None)
    batch = next(iter(dm.train_dataloader()))[0]
    trained = float(module.objective_loss(batch))
    start = ATLAS("ce").bind(problem)
    assert trained < float(start.objective_loss(batch))
    ada = AdaMerging("layer", lr=0.5)  # a large step must still respect the [0, 1] clip
    fit_coefficients(problem, ada, CompositionDataModule.from_problem(problem, unlabelled="test"), steps=5)
    assert float(ada.coeffs.min()) >= 0.0 and float(ada.coeffs.max()) <= 1.0
    assert ada.coeffs.shape == (problem.vectors.n_tasks, problem.vectors.layout.n_layers)


def test_validation_selection_keeps_the_best_checked_step():
    problem = quick_problem()
    dm = CompositionDataModule.from_problem(problem, unlabelled="test")
    module = ATLAS("entropy", lr=0.05)
    fit_coefficients(problem, module, dm, steps=10, select_every=5)
    steps = [s for s, _ in module.selection["history"]]
    assert steps == [0, 5, 10]
    best = max(score for _, score in module.selection["history"])
    assert module.selection["val_score"] == best


def test_negation_needs_a_control_and_reports_it():
    problem = quick_problem("class_subset")
    dm = CompositionDataModule.from_problem(problem, negate=True, shots=4)
    batch = next(iter(dm.train_dataloader()))[0]
    assert "control" in batch and (batch["task0"][1] == -1).all() and (batch["control"][1] >= 0).all()
    module = ATLAS("negation").bind(problem)
    assert torch.isfinite(module.objective_loss(batch))
    with pytest.raises(Exception, match="needs control examples"):
        module.objective_loss({k: v for k, v in batch.items() if k != "control"})


def test_cma_search_improves_on_its_start():
    problem = quick_problem()
    data = [few_shot(task, 8, seed=t) for t, task in enumerate(problem.tasks)]
    from weightnets.compose.search import population_objective

    start = population_objective(problem.vectors.base[None], problem.arch, data)[0]
    res = cma_search(problem.vectors, problem.arch, data, granularity="task", init=0.0, generations=5, seed=0)
    assert res.coeffs.shape == (problem.vectors.n_tasks, 1) and res.evaluations > 0
    assert res.value <= start + 1e-9
