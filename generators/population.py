"""Train a population of P models of one architecture in one vectorised computation.

Parameters of all members are stacked (``{name: [P, *shape]}``). Each step gathers every member's own
mini-batch (its data-order seed decides the order), computes the logits of the whole population at once
-- with the architecture's ``population_forward`` fast path (batched matmuls) when it has one, otherwise
``torch.func.vmap`` over ``functional_call`` -- and applies SGD-with-momentum or Adam with per-member
learning rate, weight decay and momentum. Members are independent: every model ends with the weights
it would have had if trained alone (:func:`train_single` is that reference).

Members start from their seeded initialisation or, for fine-tuning (model-tree children), from given
flat weights (``start_weights``), and train on one shared task or on one task each
(:class:`generators.member_data.MemberData`).

Relies on PyTorch (``torch.func``) only.
"""

from __future__ import annotations

import inspect
import math
import time
from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch.func import functional_call, vmap

from zoo.architectures import build_architecture, layout_of, load_flat_weights
from zoo.errors import ArchitectureMismatchError, SpecError
from zoo.tasks import TaskData

from generators.member_data import MemberData

OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("constant", "cosine", "step")


@dataclass(frozen=True)
class Member:
    """One model of a population: its seeds and per-model optimiser settings."""

    init_seed: int
    data_seed: int
    lr: float
    weight_decay: float = 0.0
    momentum: float = 0.9


@dataclass(frozen=True)
class PopulationConfig:
    """What all members of a population share."""

    architecture: str
    arch_config: Mapping = field(default_factory=dict)
    optimizer: str = "sgd"
    batch_size: int = 64
    epochs: int = 10
    checkpoint_epochs: Sequence[int] = (0, 10)
    schedule: str = "constant"
    step_size: int = 10
    gamma: float = 0.5
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    eval_batch: int = 2048
    divergence_loss: float = 1e4  # an epoch's mean training loss above this (or non-finite) = diverged

    def __post_init__(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise SpecError(f"optimizer: unknown optimiser {self.optimizer!r}; choose from {list(OPTIMIZERS)}")
        if self.schedule not in SCHEDULES:
            raise SpecError(f"schedule: unknown schedule {self.schedule!r}; choose from {list(SCHEDULES)}")
        if self.batch_size < 1:
            raise SpecError(f"batch_size must be >= 1, got {self.batch_size}")
        bad = [e for e in self.checkpoint_epochs if not 0 <= e <= self.epochs]
        if bad:
            raise SpecError(f"checkpoints: epochs {bad} outside 0..{self.epochs}")

    def lr_factor(self, epoch: int) -> float:
        """Multiplier of the base learning rate during ``epoch`` (0-based)."""
        if self.schedule == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * epoch / max(self.epochs, 1)))
        if self.schedule == "step":
            return self.gamma ** (epoch // max(self.step_size, 1))
        return 1.0


@dataclass
class PopulationResult:
    """Everything a population run produces, per member.

    ``weights [P, n_checkpoints, n_params]``, ``metrics[name] [P, n_checkpoints]``,
    ``curve [P, epochs]`` (mean mini-batch loss per epoch), ``diverged_epoch [P]`` (-1 if never),
    ``wall_time_s`` for the whole population.
    """

    weights: torch.Tensor
    metrics: dict[str, np.ndarray]
    curve: np.ndarray
    diverged_epoch: np.ndarray
    wall_time_s: float


def init_model(config: PopulationConfig, task: TaskData, init_seed: int) -> torch.nn.Module:
    """The architecture initialised from ``init_seed`` (the caller's global RNG state is untouched)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(init_seed))
        return build_architecture(config.architecture, task.input_shape, task.n_classes, config.arch_config)


def loss_and_correct(logits: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed cross-entropy ``[P]`` and number of correct predictions ``[P]`` of every member, from
    logits ``[P, n, C]`` and labels ``[n]`` (sums, so batches add up)."""
    p, n, c = logits.shape
    loss = F.cross_entropy(logits.reshape(p * n, c), y.repeat(p), reduction="none").view(p, n).sum(1)
    correct = (logits.argmax(-1) == y).sum(1)
    return loss, correct


class PopulationModel:
    """Stacked parameters of P members and a function computing their logits at once.

    ``modules`` are the members' initialised modules, or, with ``start_weights [P, n_params]``, one
    template module whose architecture every member shares and whose parameters are replaced.
    """

    def __init__(self, modules: Sequence[torch.nn.Module], start_weights: torch.Tensor | None = None) -> None:
        self.template = modules[0]
        self.layout = layout_of(self.template)
        if start_weights is not None:
            if start_weights.dim() != 2 or start_weights.shape[1] != self.layout.n_params:
                raise ArchitectureMismatchError(
                    f"start_weights of shape {list(start_weights.shape)} do not fit {type(self.template).__name__}: "
                    f"expected [members, {self.layout.n_params}]")
            flat = start_weights.detach().to(torch.float32)
            self.params = {k: v.clone().contiguous() for k, v in self.layout.unflatten(flat).items()}
        else:
            named = [dict(m.named_parameters()) for m in modules]
            self.params = {
                name: torch.stack([n[name].detach() for n in named]).contiguous() for name in self.layout.names
            }
        self.fast = hasattr(self.template, "population_forward")
        self.fast_shared = self.fast and "shared" in inspect.signature(self.template.population_forward).parameters
        self.manual = bool(getattr(self.template, "manual_backward", False))

    def logits(self, params: Mapping[str, torch.Tensor], x: torch.Tensor, shared: bool) -> torch.Tensor:
        """Logits ``[P, B, C]``; ``x`` is ``[P, B, ...]`` or, when ``shared``, ``[B, ...]`` for everyone."""
        p = next(iter(params.values())).shape[0]
        if self.fast:
            if self.fast_shared:
                return self.template.population_forward(params, x, shared=shared)
            xs = x.unsqueeze(0).expand(p, *x.shape) if shared else x
            return self.template.population_forward(params, xs)
        fn = lambda prm, inp: functional_call(self.template, prm, (inp,))  # noqa: E731
        return vmap(fn, in_dims=(0, None if shared else 0))(dict(params), x)

    def loss_and_grads(self, x: torch.Tensor, y: torch.Tensor, params: Mapping[str, torch.Tensor] | None = None
                       ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Mean cross-entropy ``[P]`` of every member on its own batch (``x [P, B, ...]``, ``y [P, B]``)
        and the gradients of the parameters, in layout order. Uses the architecture's hand-written
        backward when it has one, else autograd. ``params`` (default: all members' ``self.params``)
        may be the stacked parameters of a subset of the members."""
        names = self.layout.names
        params = self.params if params is None else params
        if self.manual:
            with torch.no_grad():
                loss, grads = self.template.population_loss_and_grads(params, x, y)
            return loss, [grads[k] for k in names]
        leaves = {k: v.detach().requires_grad_(True) for k, v in params.items()}
        logits = self.logits(leaves, x, shared=False)
        p, b = y.shape
        loss = F.cross_entropy(logits.reshape(p * b, -1), y.reshape(-1), reduction="none").view(p, b).mean(1)
        grads = torch.autograd.grad(loss.sum(), [leaves[k] for k in names])
        return loss.detach(), list(grads)

    def flat(self) -> torch.Tensor:
        """Current weights ``[P, n_params]``."""
        return self.layout.flatten(self.params, batch_dims=1)


def _evaluate(model: PopulationModel, data: MemberData, eval_batch: int) -> dict[str, np.ndarray]:
    """Loss and accuracy ``[P]`` of every member on the train and test split of its own task."""
    out = {f"{split}_{m}": np.full(data.n_members, np.nan, dtype=np.float32)
           for split in ("train", "test") for m in ("loss", "acc")}
    whole = len(data.groups) == 1
    with torch.no_grad():
        for task, members in data.groups:
            params = model.params if whole else {k: v[members] for k, v in model.params.items()}
            for split in ("train", "test"):
                x, y = task.split(split)
                loss_sum, correct = 0.0, 0
                for i in range(0, len(y), eval_batch):
                    l, c = loss_and_correct(model.logits(params, x[i:i + eval_batch], shared=True), y[i:i + eval_batch])
                    loss_sum = loss_sum + l
                    correct = correct + c
                out[f"{split}_loss"][members.numpy()] = (loss_sum / len(y)).numpy()
                out[f"{split}_acc"][members.numpy()] = (correct.double() / len(y)).numpy()
    return out


class _Hyper:
    """A per-member hyperparameter: a Python scalar when all members share it (cheaper fused
    updates), else ``[P, 1, ..., 1]`` tensors that broadcast against each stacked parameter."""

    def __init__(self, values: Sequence[float], params: Mapping[str, torch.Tensor]) -> None:
        self.values = [float(v) for v in values]
        self.uniform = len(set(values)) == 1
        self.scalar = float(values[0])
        self.any = any(v != 0 for v in values)
        self.tensors = {} if self.uniform else {
            k: torch.tensor(values, dtype=v.dtype).view(-1, *([1] * (v.dim() - 1))) for k, v in params.items()}

    def mul(self, key: str, factor: float = 1.0) -> float | torch.Tensor:
        return self.scalar * factor if self.uniform else self.tensors[key] * factor

    def subset(self, members: torch.Tensor, params: Mapping[str, torch.Tensor]) -> "_Hyper":
        """The hyperparameter of the members ``members [n_sel]`` (``params``: their stacked parameters)."""
        return _Hyper([self.values[j] for j in members.tolist()], params)


def _per_member(value: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``value [P]`` shaped ``[P, 1, ..., 1]`` to broadcast against the stacked parameter ``like``."""
    return value.to(like.dtype).view(-1, *([1] * (like.dim() - 1)))


def _update(config: PopulationConfig, k: str, p: torch.Tensor, g: torch.Tensor, state1: dict, state2: dict,
            lr: _Hyper, wd: _Hyper, mom: _Hyper, factor: float, step: int | torch.Tensor) -> None:
    """One optimiser step for stacked parameter ``k`` in place (``torch.optim`` semantics).

    ``step`` is the optimiser step count (Adam's bias correction): an int shared by all members, or
    ``[P]`` when members took different numbers of steps (training sets of different sizes).
    """
    if config.optimizer == "sgd":
        if wd.any:  # coupled L2: d = g + wd * p
            g = g.add_(p, alpha=wd.scalar) if wd.uniform else g.addcmul_(wd.tensors[k], p)
        buf = state1[k]
        if mom.uniform:  # buf = momentum * buf + d, one pass
            torch.add(g, buf, alpha=mom.scalar, out=buf)
        else:
            buf.mul_(mom.tensors[k]).add_(g)
        if lr.uniform:
            p.add_(buf, alpha=-lr.scalar * factor)
        else:
            p.addcmul_(lr.mul(k, -factor), buf)
        return
    beta1, beta2 = config.betas
    step_lr = lr.mul(k, factor)
    if config.optimizer == "adamw":
        if wd.any:
            p.mul_(1 - step_lr * wd.mul(k))
    elif wd.any:
        g = g.add_(p, alpha=wd.scalar) if wd.uniform else g.addcmul_(wd.tensors[k], p)
    state1[k].lerp_(g, 1 - beta1)
    state2[k].mul_(beta2).addcmul_(g, g, value=1 - beta2)
    if isinstance(step, torch.Tensor):
        steps = step.double()
        denom = (state2[k].sqrt() / _per_member((1 - beta2 ** steps).sqrt(), p)).add_(config.eps)
        p.sub_(step_lr / _per_member(1 - beta1 ** steps, p) * state1[k] / denom)
        return
    denom = (state2[k].sqrt() / math.sqrt(1 - beta2 ** step)).add_(config.eps)
    step_size = step_lr / (1 - beta1 ** step)
    if lr.uniform:
        p.addcdiv_(state1[k], denom, value=-step_size)
    else:
        p.sub_(step_size * state1[k] / denom)


def _optimizer_step(config: PopulationConfig, params: Mapping[str, torch.Tensor], grads: Sequence[torch.Tensor],
                    state1: dict, state2: dict, lr: _Hyper, wd: _Hyper, mom: _Hyper, factor: float,
                    steps: int | torch.Tensor) -> None:
    """Update every stacked parameter in place; ``steps`` is the members' step count after this step
    (an int, or ``[P]`` when they differ)."""
    step = steps
    if isinstance(steps, torch.Tensor) and config.optimizer != "sgd" and bool((steps == steps[0]).all()):
        step = int(steps[0])
    with torch.no_grad():
        for k, g in zip(params, grads):
            _update(config, k, params[k], g, state1, state2, lr, wd, mom, factor, step)


def train_population(
    config: PopulationConfig,
    members: Sequence[Member],
    task: TaskData | Sequence[TaskData],
    on_epoch: Callable[[int], None] | None = None,
    *,
    start_weights: torch.Tensor | None = None,
) -> PopulationResult:
    """Train all ``members`` together; see the module docstring.

    ``task`` is the task of every member, or a sequence with one task per member (same input shape and
    label space; pass the same object to members that share a task). ``start_weights [P, n_params]``
    replaces the seeded initialisation (fine-tuning): checkpoint epoch 0 then holds exactly these weights.
    """
    if not members:
        raise ValueError("train_population needs at least one member")
    tasks = [task] * len(members) if isinstance(task, TaskData) else list(task)
    if len(tasks) != len(members):
        raise ValueError(f"train_population: {len(tasks)} tasks for {len(members)} members")
    start = time.perf_counter()
    data = MemberData(tasks)
    if start_weights is None:
        model = PopulationModel([init_model(config, tasks[0], m.init_seed) for m in members])
    else:
        if start_weights.shape[0] != len(members):
            raise ValueError(f"train_population: start_weights for {start_weights.shape[0]} models, "
                             f"{len(members)} members")
        model = PopulationModel([init_model(config, tasks[0], members[0].init_seed)], start_weights)
    params = model.params
    P = len(members)
    gens = [torch.Generator().manual_seed(int(m.data_seed)) for m in members]

    lr = _Hyper([m.lr for m in members], params)
    wd = _Hyper([m.weight_decay for m in members], params)
    mom = _Hyper([m.momentum for m in members], params)
    state1 = {k: torch.zeros_like(v) for k, v in params.items()}
    state2 = {k: torch.zeros_like(v) for k, v in params.items()} if config.optimizer != "sgd" else {}
    steps = torch.zeros(P, dtype=torch.long)  # per-member optimiser steps (they differ for ragged data)
    step = 0  # the shared count while every member has taken every step (equal training sets)
    sub_hypers: dict[tuple, tuple[_Hyper, _Hyper, _Hyper]] = {}

    ckpts = sorted(set(int(e) for e in config.checkpoint_epochs))
    weights = torch.empty(P, len(ckpts), model.layout.n_params)
    metrics: dict[str, np.ndarray] = {}
    curve = np.full((P, config.epochs), np.nan, dtype=np.float32)
    diverged = np.full(P, -1, dtype=np.int64)

    def checkpoint(epoch: int) -> None:
        if epoch in ckpts:
            c = ckpts.index(epoch)
            weights[:, c] = model.flat()
            for name, values in _evaluate(model, data, config.eval_batch).items():
                metrics.setdefault(name, np.full((P, len(ckpts)), np.nan, dtype=np.float32))[:, c] = values

    n_batches = ((data.sizes + config.batch_size - 1) // config.batch_size).double()  # [P], the same every epoch
    checkpoint(0)
    for epoch in range(config.epochs):
        factor = config.lr_factor(epoch)
        orders = data.epoch_orders(gens)
        epoch_loss = torch.zeros(P, dtype=torch.float64)
        for sel, idx in data.batches(orders, config.batch_size):
            xb, yb = data.x[idx], data.y[idx]  # [P, B, ...], [P, B]
            if sel is None:
                loss, grads = model.loss_and_grads(xb, yb)
                epoch_loss += loss.double()
                if data.equal_sizes:
                    step += 1
                    _optimizer_step(config, params, grads, state1, state2, lr, wd, mom, factor, step)
                    continue
                steps += 1
                _optimizer_step(config, params, grads, state1, state2, lr, wd, mom, factor, steps)
                continue
            # members whose next batch is this long step alone: update their rows, then write them back
            sub = {k: v[sel] for k, v in params.items()}
            sub1 = {k: v[sel] for k, v in state1.items()}
            sub2 = {k: v[sel] for k, v in state2.items()}
            loss, grads = model.loss_and_grads(xb, yb, sub)
            epoch_loss[sel] += loss.double()
            steps[sel] += 1
            key = tuple(sel.tolist())
            if key not in sub_hypers:  # the same subsets recur every epoch
                sub_hypers[key] = tuple(h.subset(sel, sub) for h in (lr, wd, mom))
            _optimizer_step(config, sub, grads, sub1, sub2, *sub_hypers[key], factor, steps[sel])
            for full, part in ((params, sub), (state1, sub1), (state2, sub2)):
                for k, v in part.items():
                    full[k][sel] = v
        mean_loss = (epoch_loss / n_batches).numpy()
        curve[:, epoch] = mean_loss
        bad = (~np.isfinite(mean_loss) | (mean_loss > config.divergence_loss)) & (diverged < 0)
        diverged[bad] = epoch + 1
        checkpoint(epoch + 1)
        if on_epoch is not None:
            on_epoch(epoch + 1)
    return PopulationResult(weights, metrics, curve, diverged, time.perf_counter() - start)


def train_single(config: PopulationConfig, member: Member, task: TaskData,
                 start_weights: torch.Tensor | None = None) -> PopulationResult:
    """Reference and baseline: one model trained alone with a plain ``torch.optim`` loop.

    Same seeds, data order, optimiser semantics and schedule as :func:`train_population`;
    ``start_weights [n_params]`` replaces the seeded initialisation (fine-tuning).
    """
    start = time.perf_counter()
    module = init_model(config, task, member.init_seed)
    if start_weights is not None:
        load_flat_weights(module, start_weights.detach().to(torch.float32), where="train_single start_weights")
    layout = layout_of(module)
    if config.optimizer == "sgd":
        opt = torch.optim.SGD(module.parameters(), lr=member.lr, momentum=member.momentum,
                              weight_decay=member.weight_decay)
    elif config.optimizer == "adam":
        opt = torch.optim.Adam(module.parameters(), lr=member.lr, betas=config.betas, eps=config.eps,
                               weight_decay=member.weight_decay)
    else:
        opt = torch.optim.AdamW(module.parameters(), lr=member.lr, betas=config.betas, eps=config.eps,
                                weight_decay=member.weight_decay)
    gen = torch.Generator().manual_seed(int(member.data_seed))
    x_train, y_train = task.x_train, task.y_train
    n = len(y_train)
    ckpts = sorted(set(int(e) for e in config.checkpoint_epochs))
    weights = torch.empty(1, len(ckpts), layout.n_params)
    metrics: dict[str, np.ndarray] = {}
    curve = np.full((1, config.epochs), np.nan, dtype=np.float32)
    diverged = np.full(1, -1, dtype=np.int64)

    def checkpoint(epoch: int) -> None:
        if epoch in ckpts:
            c = ckpts.index(epoch)
            weights[0, c] = torch.cat([p.detach().reshape(-1) for p in module.parameters()])
            with torch.no_grad():
                for split in ("train", "test"):
                    x, y = task.split(split)
                    logits = module(x)
                    metrics.setdefault(f"{split}_loss", np.full((1, len(ckpts)), np.nan, np.float32))[0, c] = \
                        F.cross_entropy(logits, y).item()
                    metrics.setdefault(f"{split}_acc", np.full((1, len(ckpts)), np.nan, np.float32))[0, c] = \
                        (logits.argmax(-1) == y).double().mean().item()

    checkpoint(0)
    for epoch in range(config.epochs):
        for group in opt.param_groups:
            group["lr"] = member.lr * config.lr_factor(epoch)
        perm = torch.randperm(n, generator=gen)
        total, batches = 0.0, 0
        for i in range(0, n, config.batch_size):
            idx = perm[i:i + config.batch_size]
            opt.zero_grad()
            loss = F.cross_entropy(module(x_train[idx]), y_train[idx])
            loss.backward()
            opt.step()
            total += loss.item()
            batches += 1
        curve[0, epoch] = total / max(batches, 1)
        if not curve[0, epoch] <= config.divergence_loss and diverged[0] < 0:  # also catches NaN
            diverged[0] = epoch + 1
        checkpoint(epoch + 1)
    return PopulationResult(weights, metrics, curve, diverged, time.perf_counter() - start)
