"""Train a population of P models of one architecture family in one vectorised computation.

Parameters of all members are stacked in one flat buffer ``[P, n_params]`` (viewed as
``{name: [P, *shape]}``). Each step gathers every member's own mini-batch (its data-order seed decides
the order), computes the logits of the stepping members at once -- with the architecture's
``population_forward`` fast path (batched matmuls) when it has one, otherwise ``torch.func.vmap`` over
``functional_call`` -- and applies SGD-with-momentum, Adam or AdamW with per-member learning rate,
weight decay and momentum to the flat buffer. Members are independent: every model ends with the
weights it would have had if trained alone (:func:`train_single` is that reference).

Members may differ in width (zero-padded to the widest, with unit masks: :mod:`generators.padding`),
in batch size and in training set (one task each, e.g. ``train_fraction`` subsets of one source):
:class:`generators.member_data.Schedule` lets each member take its own mini-batches and number of
steps, with members whose batches are equally long stepping together. Members start from their
seeded initialisation (drawn at their own shape) or, for fine-tuning (model-tree children), from given
flat weights (``start_weights``).

Relies on PyTorch (``torch.func``) only.
"""

from __future__ import annotations

import copy
import inspect
import math
import time
from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch.func import functional_call, vmap

from generators.cost import DEFAULT_COST, CostModel, module_flops
from generators.member_data import MemberData
from generators.optimizers import OptimizerRule, get_optimizer, get_schedule, optimizer_names, schedule_names
from generators.padding import embedding_index, envelope_of, unit_masks
from kernels.layout import ParamLayout
from zoo.architectures import (
    build_architecture,
    layout_of,
    load_flat_weights,
    supports_unit_masks,
)
from zoo.errors import ArchitectureMismatchError, SpecError
from zoo.tasks import TaskData


@dataclass(frozen=True)
class Member:
    """One model of a population: its seeds, per-model optimiser settings and, where they differ from
    the population's, its batch size and architecture options (e.g. its width)."""

    init_seed: int
    data_seed: int
    lr: float
    weight_decay: float = 0.0
    momentum: float = 0.9
    batch_size: int | None = None
    arch_config: Mapping | None = None


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
        if self.optimizer not in optimizer_names():
            raise SpecError(f"optimizer: unknown optimiser {self.optimizer!r}; choose from {optimizer_names()}")
        if self.schedule not in schedule_names():
            raise SpecError(f"schedule: unknown schedule {self.schedule!r}; choose from {schedule_names()}")
        if self.batch_size < 1:
            raise SpecError(f"batch_size must be >= 1, got {self.batch_size}")
        bad = [e for e in self.checkpoint_epochs if not 0 <= e <= self.epochs]
        if bad:
            raise SpecError(f"checkpoints: epochs {bad} outside 0..{self.epochs}")

    def lr_factor(self, epoch: int) -> float:
        """Multiplier of the base learning rate during ``epoch`` (0-based), from the registered schedule
        (:mod:`generators.optimizers`)."""
        return get_schedule(self.schedule)(epoch, self.epochs, self.step_size, self.gamma)

    @property
    def optimizer_rule(self) -> OptimizerRule:
        """What :attr:`optimizer` means (:func:`generators.optimizers.get_optimizer`)."""
        return get_optimizer(self.optimizer)


@dataclass
class PopulationResult:
    """Everything a population run produces, per member.

    ``weights [P, n_checkpoints, n_params]`` (a list of ``[n_checkpoints, n_params_j]``, one per member,
    when the members' architectures differ in width), ``metrics[name] [P, n_checkpoints]``,
    ``curve [P, epochs]`` (mean mini-batch loss per epoch), ``diverged_epoch [P]`` (-1 if never),
    ``wall_time_s`` for the whole population.
    """

    weights: torch.Tensor | list[torch.Tensor]
    metrics: dict[str, np.ndarray]
    curve: np.ndarray
    diverged_epoch: np.ndarray
    wall_time_s: float


def init_model(config: PopulationConfig, task: TaskData, init_seed: int, arch_config: Mapping | None = None
               ) -> torch.nn.Module:
    """The architecture (with ``arch_config``, default the population's) initialised from ``init_seed``
    (the caller's global RNG state is untouched)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(init_seed))
        return build_architecture(config.architecture, task.input_shape, task.n_classes,
                                  config.arch_config if arch_config is None else arch_config)


def loss_and_correct(logits: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed cross-entropy ``[P]`` and number of correct predictions ``[P]`` of every member, from
    logits ``[P, n, C]`` and labels ``[n]`` (sums, so batches add up)."""
    p, n, c = logits.shape
    # class-major [P, C, n]: torch's CPU log_softmax over an innermost axis of ~10 classes is much slower
    loss = F.cross_entropy(logits.transpose(1, 2), y.expand(p, n), reduction="none").sum(1)
    correct = (logits.argmax(-1) == y).sum(1)
    return loss, correct


class PopulationModel:
    """Stacked parameters of P members and a function computing their logits at once.

    ``modules`` are the members' initialised modules (one per member), or one template module whose
    architecture every member shares (with ``start_weights``). ``start_weights`` (``[P, n_params]``, or
    one flat ``[n_params_j]`` per member) replaces the modules' parameters.

    Members may differ in width (:mod:`generators.padding`): they are zero-padded to the widest
    member's shapes (the *envelope*: ``template`` and ``layout``), and ``unit_masks`` (``[P, units]``
    per permutation group, None when every member has the envelope's shape) keep the padded units at
    exactly zero. ``flat_params [P, n_params of the envelope]`` holds all weights; ``params`` are views
    of it, ``{name: [P, *shape]}``.
    """

    def __init__(self, modules: Sequence[torch.nn.Module],
                 start_weights: torch.Tensor | Sequence[torch.Tensor] | None = None) -> None:
        shared = len(modules) == 1 and start_weights is not None
        n_members = len(start_weights) if shared else len(modules)
        if not shared and start_weights is not None and len(start_weights) != len(modules):
            raise ValueError(f"PopulationModel: start_weights for {len(start_weights)} members, {len(modules)} modules")
        layouts: dict[int, ParamLayout] = {}
        for m in modules:
            if id(m) not in layouts:
                layouts[id(m)] = layout_of(m)
        member_modules = list(modules) * n_members if shared else list(modules)
        member_layouts = [layouts[id(m)] for m in member_modules]
        distinct: dict[tuple, int] = {}  # layout shapes -> index of its first member
        for j, lay in enumerate(member_layouts):
            distinct.setdefault(tuple(e.shape for e in lay.entries), j)
        firsts = list(distinct.values())
        self.padded = len(firsts) > 1
        if self.padded and not supports_unit_masks(member_modules[0]):
            raise ArchitectureMismatchError(
                f"members of {type(member_modules[0]).__name__} have different shapes, but it cannot be zero-padded "
                "(its forward takes no unit_masks, or it has no permutation_spec): train them in separate populations")
        env = firsts[envelope_of([member_layouts[j] for j in firsts])] if self.padded else 0
        self.template = member_modules[env]
        self.layout = member_layouts[env]
        self.member_layouts = member_layouts
        self._index = {key: embedding_index(member_layouts[j], self.layout) for key, j in distinct.items()} \
            if self.padded else {}
        self.member_index = [self._index[tuple(e.shape for e in lay.entries)] for lay in member_layouts] \
            if self.padded else None
        self.unit_masks = None
        if self.padded:
            per_member = [unit_masks(lay, self.layout) for lay in member_layouts]
            self.unit_masks = [torch.stack([m[g] for m in per_member]) for g in range(len(self.layout.group_sizes))]
        if isinstance(start_weights, torch.Tensor) and not self.padded and (
                start_weights.dim() != 2 or start_weights.shape[1] != self.layout.n_params):
            raise ArchitectureMismatchError(
                f"start_weights of shape {list(start_weights.shape)} do not fit {type(self.template).__name__}: "
                f"expected [members, {self.layout.n_params}]")
        if start_weights is None:
            flats = [torch.cat([p.detach().reshape(-1) for p in m.parameters()]) for m in member_modules]
        else:
            flats = [w.detach().to(torch.float32) for w in start_weights]
            for j, (w, lay) in enumerate(zip(flats, member_layouts)):
                if w.dim() != 1 or w.shape[0] != lay.n_params:
                    raise ArchitectureMismatchError(
                        f"start_weights of member {j} have shape {list(w.shape)} and do not fit "
                        f"{type(member_modules[j]).__name__}: expected [{lay.n_params}] per member "
                        f"([members, {lay.n_params}] stacked)")
        self.flat_params = self.embed(flats)
        self.params = self.layout.unflatten(self.flat_params)
        self.fast = hasattr(self.template, "population_forward")
        self.fast_shared = self.fast and "shared" in inspect.signature(self.template.population_forward).parameters
        self.manual = bool(getattr(self.template, "manual_backward", False))
        self._rows: dict[tuple[int, int], tuple[dict, list | None]] = {}

    @property
    def n_members(self) -> int:
        return self.flat_params.shape[0]

    @property
    def member_sizes(self) -> list[int]:
        """Every member's own number of parameters (the envelope's when unpadded)."""
        return [lay.n_params for lay in self.member_layouts]

    def embed(self, flats: Sequence[torch.Tensor]) -> torch.Tensor:
        """``[len(flats), n_params of the envelope]`` from each member's own flat weights ``[n_params_j]``
        (zeros in the padding)."""
        if not self.padded:
            return torch.stack(list(flats)).contiguous()
        out = torch.zeros(len(flats), self.layout.n_params, dtype=flats[0].dtype)
        for j, w in enumerate(flats):
            out[j, self.member_index[j]] = w
        return out

    def unembed(self, padded: torch.Tensor) -> list[torch.Tensor]:
        """Each member's own weights ``[..., n_params_j]`` from envelope weights ``[P, ..., n_params]``."""
        if not self.padded:
            return list(padded)
        return [padded[j][..., self.member_index[j]] for j in range(padded.shape[0])]

    def select(self, rows: slice | Sequence[int] | torch.Tensor) -> "PopulationModel":
        """The same population function for some members only (their parameters, masks and layouts)."""
        idx = torch.arange(self.n_members)[rows] if isinstance(rows, slice) else torch.as_tensor(rows, dtype=torch.long)
        out = copy.copy(self)
        out.flat_params = self.flat_params[idx]
        out.params = self.layout.unflatten(out.flat_params)
        out.member_layouts = [self.member_layouts[int(i)] for i in idx]
        if self.padded:
            out.member_index = [self.member_index[int(i)] for i in idx]
            out.unit_masks = [m[idx] for m in self.unit_masks]
        out.reset_views()
        return out

    def reset_views(self) -> None:
        """Forget the cached per-block views of the parameters (after ``flat_params`` was replaced)."""
        self._rows = {}

    def _masks(self, params: Mapping[str, torch.Tensor], masks: Sequence[torch.Tensor] | None
               ) -> Sequence[torch.Tensor] | None:
        if masks is not None or self.unit_masks is None:
            return masks
        p = next(iter(params.values())).shape[0]
        if p != self.n_members:
            raise ValueError(f"padded population of {self.n_members} members: parameters of {p} members need their "
                             "unit masks (use select(rows))")
        return self.unit_masks

    def logits(self, params: Mapping[str, torch.Tensor], x: torch.Tensor, shared: bool,
               masks: Sequence[torch.Tensor] | None = None) -> torch.Tensor:
        """Logits ``[P, B, C]``; ``x`` is ``[P, B, ...]`` or, when ``shared``, ``[B, ...]`` for everyone.
        ``masks`` (``[P, units]`` per group) default to the members' own when ``params`` has all P rows."""
        masks = self._masks(params, masks)
        kw = {} if masks is None else {"unit_masks": list(masks)}
        p = next(iter(params.values())).shape[0]
        if self.fast:
            if self.fast_shared:
                return self.template.population_forward(params, x, shared=shared, **kw)
            xs = x.unsqueeze(0).expand(p, *x.shape) if shared else x
            return self.template.population_forward(params, xs, **kw)
        if masks is None:
            fn = lambda prm, inp: functional_call(self.template, prm, (inp,))  # noqa: E731
            return vmap(fn, in_dims=(0, None if shared else 0))(dict(params), x)
        fn = lambda prm, inp, m: functional_call(self.template, prm, (inp,), {"unit_masks": m})  # noqa: E731
        return vmap(fn, in_dims=(0, None if shared else 0, 0))(dict(params), x, list(masks))

    def loss_and_grads(self, x: torch.Tensor, y: torch.Tensor, params: Mapping[str, torch.Tensor] | None = None,
                       masks: Sequence[torch.Tensor] | None = None, sample_weights: torch.Tensor | None = None
                       ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Mean cross-entropy ``[P]`` of every member on its own batch (``x [P, B, ...]``, ``y [P, B]``)
        and the gradients of the parameters, in layout order. Uses the architecture's hand-written
        backward when it has one, else autograd. ``params`` (default: all members' ``self.params``)
        may be the stacked parameters of a subset of the members, with their ``masks``;
        ``sample_weights [P, B]`` replaces the batch mean by a weighted sum (padded batches)."""
        names = self.layout.names
        params = self.params if params is None else params
        masks = self._masks(params, masks)
        if self.manual:
            kw = {} if masks is None else {"unit_masks": list(masks)}
            if sample_weights is not None:
                kw["sample_weights"] = sample_weights
            with torch.no_grad():
                loss, grads = self.template.population_loss_and_grads(params, x, y, **kw)
            return loss, [grads[k] for k in names]
        leaves = {k: v.detach().requires_grad_(True) for k, v in params.items()}
        logits = self.logits(leaves, x, shared=False, masks=masks)
        p, b = y.shape
        ce = F.cross_entropy(logits.transpose(1, 2), y, reduction="none")  # [P, B], class-major (faster)
        loss = ce.mean(1) if sample_weights is None else (ce * sample_weights).sum(1)
        grads = torch.autograd.grad(loss.sum(), [leaves[k] for k in names])
        return loss.detach(), list(grads)

    def rows_loss_and_grads(self, x: torch.Tensor, y: torch.Tensor, start: int, stop: int,
                            sample_weights: torch.Tensor | None = None, flat: bool = True
                            ) -> tuple[torch.Tensor, torch.Tensor | list[torch.Tensor]]:
        """:meth:`loss_and_grads` of the members ``start..stop-1`` (a contiguous block of rows): the
        loss ``[stop - start]`` and the gradients, flat ``[stop - start, n_params]`` or, with ``flat``
        False, one tensor per parameter (layout order)."""
        key = (start, stop)
        if key not in self._rows:
            params = {k: v[start:stop] for k, v in self.params.items()}
            masks = None if self.unit_masks is None else [m[start:stop] for m in self.unit_masks]
            self._rows[key] = (params, masks)
        params, masks = self._rows[key]
        loss, grads = self.loss_and_grads(x, y, params, masks, sample_weights)
        if not flat:
            return loss, grads
        n = stop - start
        return loss, torch.cat([g.reshape(n, -1) for g in grads], dim=1)

    def flat(self) -> torch.Tensor:
        """Current weights ``[P, n_params]`` (the envelope's layout)."""
        return self.flat_params


def _evaluate(model: PopulationModel, data: MemberData, eval_batch: int) -> dict[str, np.ndarray]:
    """Loss and accuracy ``[P]`` of every member on the train and test split of its own task."""
    out = {f"{split}_{m}": np.full(data.n_members, np.nan, dtype=np.float32)
           for split in ("train", "test") for m in ("loss", "acc")}
    whole = len(data.groups) == 1
    with torch.no_grad():
        for task, members in data.groups:
            part = model if whole else model.select(members)
            for split in ("train", "test"):
                x, y = task.split(split)
                loss_sum, correct = 0.0, 0
                for i in range(0, len(y), eval_batch):
                    logits = part.logits(part.params, x[i:i + eval_batch], shared=True)
                    l, c = loss_and_correct(logits, y[i:i + eval_batch])
                    loss_sum = loss_sum + l
                    correct = correct + c
                out[f"{split}_loss"][members.numpy()] = (loss_sum / len(y)).numpy()
                out[f"{split}_acc"][members.numpy()] = (correct.double() / len(y)).numpy()
    return out


class _Hyper:
    """A per-member hyperparameter over blocks of rows: for rows ``start..stop-1``, a Python scalar
    when those members share it (cheaper fused updates), else a ``[rows, 1, ..., 1]`` tensor that
    broadcasts against their parameters (``dims`` dimensions, rows first)."""

    def __init__(self, values: Sequence[float]) -> None:
        self.values = [float(v) for v in values]
        self.column = torch.tensor(self.values, dtype=torch.float32)
        self._rows: dict[tuple[int, int, int], float | torch.Tensor] = {}

    def rows(self, start: int, stop: int, dims: int = 2) -> float | torch.Tensor:
        key = (start, stop, dims)
        if key not in self._rows:
            part = self.values[start:stop]
            self._rows[key] = part[0] if len(set(part)) == 1 else \
                self.column[start:stop].view(-1, *([1] * (dims - 1)))
        return self._rows[key]


def _nonzero(value: float | torch.Tensor) -> bool:
    return isinstance(value, torch.Tensor) or value != 0


class _Optimizer:
    """SGD with momentum, Adam or AdamW (``torch.optim`` semantics) on the flat parameters ``[P, n]``
    (viewed per parameter by ``layout``), one contiguous block of members at a time, with per-member
    learning rate, weight decay and momentum.

    A block's gradients come flat (one update of the whole block: fewest kernel launches) or per
    parameter (no flattening pass: cheaper where the parameters, not the launches, cost the time).
    Elementwise updates only, so the result does not depend on the thread count."""

    def __init__(self, config: PopulationConfig, members: Sequence[Member], flat: torch.Tensor,
                 layout: ParamLayout) -> None:
        self.config, self.flat, self.layout = config, flat, layout
        self.lr = _Hyper([m.lr for m in members])
        self.wd = _Hyper([m.weight_decay for m in members])
        self.mom = _Hyper([m.momentum for m in members])
        self.state1 = torch.zeros_like(flat)
        self.rule = config.optimizer_rule
        self.state2 = torch.zeros_like(flat) if self.rule.second_moment else None
        self._views: dict[tuple[int, int], list[tuple[torch.Tensor, ...]]] = {}

    def step(self, start: int, stop: int, g: torch.Tensor | Sequence[torch.Tensor], factor: float,
             step: int | torch.Tensor) -> None:
        """Update members ``start..stop-1`` in place from their gradients (flat ``[rows, n]``, or one
        ``[rows, *shape]`` per parameter); ``step`` is their optimiser step count after this step (an
        int, or ``[rows]`` when they differ)."""
        if isinstance(g, torch.Tensor):
            second = None if self.state2 is None else self.state2[start:stop]
            self._update(self.flat[start:stop], g, self.state1[start:stop], second, start, stop, factor, step)
            return
        key = (start, stop)
        if key not in self._views:
            states = [self.layout.unflatten(t[start:stop]) if t is not None else None
                      for t in (self.flat, self.state1, self.state2)]
            self._views[key] = [(states[0][k], states[1][k], None if states[2] is None else states[2][k])
                                for k in self.layout.names]
        for (p, m1, m2), gk in zip(self._views[key], g):
            self._update(p, gk, m1, m2, start, stop, factor, step)

    def _update(self, p: torch.Tensor, g: torch.Tensor, m1: torch.Tensor, m2: torch.Tensor | None, start: int,
                stop: int, factor: float, step: int | torch.Tensor) -> None:
        dims = p.dim()
        lr, wd = self.lr.rows(start, stop, dims), self.wd.rows(start, stop, dims)
        if not self.rule.second_moment:
            if _nonzero(wd):  # coupled L2: d = g + wd * p
                g = g.addcmul_(wd, p) if isinstance(wd, torch.Tensor) else g.add_(p, alpha=wd)
            mom = self.mom.rows(start, stop, dims)
            if isinstance(mom, torch.Tensor):
                m1.mul_(mom).add_(g)
            else:  # buf = momentum * buf + d, one pass
                torch.add(g, m1, alpha=mom, out=m1)
            if isinstance(lr, torch.Tensor):
                p.addcmul_(lr, m1, value=-factor)
            else:
                p.add_(m1, alpha=-lr * factor)
            return
        beta1, beta2 = self.config.betas
        step_lr = lr * factor
        if self.rule.decoupled_weight_decay:
            if _nonzero(wd):
                p.mul_(1 - step_lr * wd)
        elif _nonzero(wd):
            g = g.addcmul_(wd, p) if isinstance(wd, torch.Tensor) else g.add_(p, alpha=wd)
        m1.lerp_(g, 1 - beta1)
        m2.mul_(beta2).addcmul_(g, g, value=1 - beta2)
        if isinstance(step, torch.Tensor):
            steps = step.double().view(-1, *([1] * (dims - 1)))
            denom = (m2.sqrt() / (1 - beta2 ** steps).sqrt().to(p.dtype)).add_(self.config.eps)
            p.sub_(step_lr / (1 - beta1 ** steps).to(p.dtype) * m1 / denom)
            return
        denom = (m2.sqrt() / math.sqrt(1 - beta2 ** step)).add_(self.config.eps)
        step_size = step_lr / (1 - beta1 ** step)
        if isinstance(step_size, torch.Tensor):
            p.sub_(step_size * m1 / denom)
        else:
            p.addcdiv_(m1, denom, value=-step_size)


def member_arch_config(config: PopulationConfig, member: Member) -> Mapping:
    """The architecture options ``member`` trains with (its own, else the population's)."""
    return config.arch_config if member.arch_config is None else member.arch_config


def member_batch_size(config: PopulationConfig, member: Member) -> int:
    """The batch size ``member`` trains with (its own, else the population's)."""
    return config.batch_size if member.batch_size is None else int(member.batch_size)


def _population_model(config: PopulationConfig, members: Sequence[Member], tasks: Sequence[TaskData],
                      start_weights: torch.Tensor | Sequence[torch.Tensor] | None) -> PopulationModel:
    """The members' :class:`PopulationModel`: seeded initialisations at each member's own shape, or
    ``start_weights`` on one template per distinct architecture."""
    if start_weights is None:
        return PopulationModel([init_model(config, tasks[0], m.init_seed, member_arch_config(config, m))
                                for m in members])
    templates: dict[str, torch.nn.Module] = {}
    modules = []
    for m in members:
        cfg = member_arch_config(config, m)
        key = repr(sorted(dict(cfg).items()))
        if key not in templates:
            templates[key] = init_model(config, tasks[0], m.init_seed, cfg)
        modules.append(templates[key])
    if len(templates) == 1 and isinstance(start_weights, torch.Tensor):
        return PopulationModel(modules[:1], start_weights)
    return PopulationModel(modules, list(start_weights))


def train_population(
    config: PopulationConfig,
    members: Sequence[Member],
    task: TaskData | Sequence[TaskData],
    on_epoch: Callable[[int], None] | None = None,
    *,
    start_weights: torch.Tensor | Sequence[torch.Tensor] | None = None,
    cost_model: CostModel | None = None,
) -> PopulationResult:
    """Train all ``members`` together; see the module docstring.

    ``task`` is the task of every member, or a sequence with one task per member (same input shape and
    label space; pass the same object to members that share a task). Members may have their own batch
    size and architecture options (``Member.batch_size``, ``Member.arch_config``: widths that differ
    are zero-padded, :mod:`generators.padding`). ``start_weights`` (``[P, n_params]``, or one flat
    vector per member) replaces the seeded initialisation (fine-tuning): checkpoint epoch 0 then holds
    exactly these weights. ``cost_model`` (default :data:`generators.cost.DEFAULT_COST`) decides when
    members with shorter batches share a padded call (speed only).
    """
    if not members:
        raise ValueError("train_population needs at least one member")
    tasks = [task] * len(members) if isinstance(task, TaskData) else list(task)
    if len(tasks) != len(members):
        raise ValueError(f"train_population: {len(tasks)} tasks for {len(members)} members")
    if start_weights is not None and len(start_weights) != len(members):
        raise ValueError(f"train_population: start_weights for {len(start_weights)} models, {len(members)} members")
    start = time.perf_counter()
    P = len(members)
    batch = [member_batch_size(config, m) for m in members]
    bad = [b for b in batch if b < 1]
    if bad:
        raise SpecError(f"batch_size must be >= 1, got {bad[0]}")
    # rows: members by batch size, then training-set size (largest first), so that equal steps share calls
    order = sorted(range(P), key=lambda j: (batch[j], -len(tasks[j].y_train), j))
    rows = [members[j] for j in order]
    row_tasks = [tasks[j] for j in order]
    row_batch = [batch[j] for j in order]
    row_start = None if start_weights is None else [start_weights[j] for j in order]
    if row_start is not None and isinstance(start_weights, torch.Tensor):
        row_start = start_weights[torch.tensor(order)]
    data = MemberData(row_tasks)
    model = _population_model(config, rows, row_tasks, row_start)
    flat = model.flat_params
    gens = [torch.Generator().manual_seed(int(m.data_seed)) for m in rows]
    opt = _Optimizer(config, rows, flat, model.layout)
    cost = DEFAULT_COST if cost_model is None else cost_model
    overhead = cost.overhead_in_samples(module_flops(model.template, row_tasks[0].input_shape))
    schedule = data.schedule(row_batch, overhead)
    flat_limit = cost.flat_update_limit(len(model.layout.names))  # rows x params up to which updates go flat
    n_env = flat.shape[1]
    per_epoch = schedule.steps  # [P] steps per epoch
    uniform_steps: dict[tuple[int, int], int | None] = {}  # Adam's step count is an int where it can be
    sgd = not config.optimizer_rule.second_moment  # no step count needed

    ckpts = sorted(set(int(e) for e in config.checkpoint_epochs))
    stacked = torch.empty(P, len(ckpts), flat.shape[1])
    metrics: dict[str, np.ndarray] = {}
    curve = np.full((P, config.epochs), np.nan, dtype=np.float32)
    diverged = np.full(P, -1, dtype=np.int64)

    def checkpoint(epoch: int) -> None:
        if epoch in ckpts:
            c = ckpts.index(epoch)
            stacked[:, c] = flat
            for name, values in _evaluate(model, data, config.eval_batch).items():
                metrics.setdefault(name, np.full((P, len(ckpts)), np.nan, dtype=np.float32))[:, c] = values

    n_batches = torch.from_numpy(per_epoch).double()
    checkpoint(0)
    for epoch in range(config.epochs):
        factor = config.lr_factor(epoch)
        lanes = schedule.lane_orders(data.epoch_orders(gens))
        epoch_loss = torch.zeros(P, dtype=torch.float64)
        for t, calls in enumerate(schedule.ticks):
            for call in calls:
                a, b = call.start, call.stop
                idx = call.index(lanes)
                loss, grad = model.rows_loss_and_grads(data.x[idx], data.y[idx], a, b, call.weights,
                                                       flat=(b - a) * n_env <= flat_limit)
                epoch_loss[a:b].add_(loss)
                if sgd:
                    opt.step(a, b, grad, factor, 0)
                    continue
                if (a, b) not in uniform_steps:
                    block = per_epoch[a:b]
                    uniform_steps[(a, b)] = int(block[0]) if (block == block[0]).all() else None
                steps_per_epoch = uniform_steps[(a, b)]
                if steps_per_epoch is not None:
                    step: int | torch.Tensor = epoch * steps_per_epoch + t + 1
                else:
                    step = torch.from_numpy(per_epoch[a:b]) * epoch + t + 1
                opt.step(a, b, grad, factor, step)
        mean_loss = (epoch_loss / n_batches).numpy()
        curve[:, epoch] = mean_loss
        bad_now = (~np.isfinite(mean_loss) | (mean_loss > config.divergence_loss)) & (diverged < 0)
        diverged[bad_now] = epoch + 1
        checkpoint(epoch + 1)
        if on_epoch is not None:
            on_epoch(epoch + 1)

    back = np.argsort(order)  # row of each member
    own = model.unembed(stacked)
    weights = torch.stack(own)[torch.from_numpy(back)] if not model.padded else [own[r] for r in back]
    return PopulationResult(weights, {k: v[back] for k, v in metrics.items()}, curve[back], diverged[back],
                            time.perf_counter() - start)


def train_single(config: PopulationConfig, member: Member, task: TaskData,
                 start_weights: torch.Tensor | None = None) -> PopulationResult:
    """Reference and baseline: one model trained alone with a plain ``torch.optim`` loop.

    Same seeds, data order, optimiser semantics and schedule as :func:`train_population`;
    ``start_weights [n_params]`` replaces the seeded initialisation (fine-tuning).
    """
    start = time.perf_counter()
    module = init_model(config, task, member.init_seed, member_arch_config(config, member))
    batch_size = member_batch_size(config, member)
    if start_weights is not None:
        load_flat_weights(module, start_weights.detach().to(torch.float32), where="train_single start_weights")
    layout = layout_of(module)
    rule = config.optimizer_rule
    if rule.second_moment:
        opt = rule.reference(module.parameters(), lr=member.lr, betas=config.betas, eps=config.eps,
                             weight_decay=member.weight_decay)
    else:
        opt = rule.reference(module.parameters(), lr=member.lr, momentum=member.momentum,
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
        for i in range(0, n, batch_size):
            idx = perm[i:i + batch_size]
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
