"""Shared helpers of the composition tests: the shipped ``tree_quick`` model tree (landscape metrics off),
generated once per test session, and a small composition problem built from tensors."""

from __future__ import annotations

import torch

import zoo
from helpers.trees import tree_quick_path
from weightnets.compose import CompositionProblem, TaskVectors, load_problem

quick_tree_path = tree_quick_path


def quick_tree() -> zoo.Zoo:
    return zoo.open(quick_tree_path())


def quick_problem(family: str = "corruption", base: int = 0) -> CompositionProblem:
    return load_problem(quick_tree(), base, family=family)


def tiny_problem(dtype: torch.dtype = torch.float32, T: int = 2, seed: int = 0) -> CompositionProblem:
    """A 2-layer MLP (6 inputs, 5 hidden, 3 classes) with ``T`` random task vectors and random tasks."""
    g = torch.Generator().manual_seed(seed)
    arch = zoo.build_architecture("mlp", (6,), 3, {"width": 5, "depth": 1})
    layout = zoo.layout_of(arch)
    base = torch.randn(layout.n_params, generator=g).to(dtype)
    stack = (0.3 * torch.randn(T, layout.n_params, generator=g)).to(dtype)
    tasks = []
    for _ in range(T):
        x = torch.randn(60, 6, generator=g)
        y = torch.randint(3, (60,), generator=g)
        tasks.append(zoo.TaskData(x[:40], y[:40], x[40:], y[40:], 3, (6,), (0, 1, 2)))
    return CompositionProblem(TaskVectors(base, stack, layout), arch, tasks)
