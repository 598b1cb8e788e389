"""Training data of a population: one task shared by every member, or one task per member, and the
order in which the members take their mini-batch steps.

Members of a model-tree population are fine-tuned on different derived tasks (class subsets, label
permutations, corrupted inputs); members of a phase-grid population may train on nested subsets of one
source task (``train_fraction``) and with different batch sizes. :class:`MemberData` concatenates the
distinct training sets into one ``x [N, ...]``, ``y [N]`` and gives every member its own slice
(``offsets``, ``sizes``). Each epoch every member draws a permutation of its own examples from its own
generator, exactly as it would when trained alone, and cuts it into batches of its own size.

A :class:`Schedule` walks the members through one epoch in *ticks*: at tick ``t`` every member that
still has a batch left takes its ``t``-th step. Members are rows ``0..P-1``; a maximal run of
consecutive rows whose batches at tick ``t`` have the same length ``L`` steps together in one *call*
(one gather ``x[idx]`` with ``idx [rows, L]``, one batched forward/backward, one optimiser update on a
contiguous block of rows). Ordering the members by batch size, then by training-set size (largest
first), makes the runs long: members with equal batch sizes then step together at every tick where
each has a full batch, and a member's short last batch, or the end of its epoch, only splits its run.

Neighbouring runs of different lengths may share a call too, the shorter batches padded to the longest
(the padding repeats a member's last example and has weight 0 in its loss, so the gradient is exactly
its own batch's): the schedule pads while a separate call's fixed overhead, ``overhead_samples``
example-rows of compute (:meth:`generators.cost.CostModel.overhead_in_samples`), outweighs the padded
rows. Every member thus sees exactly the mini-batches it would see alone, and takes exactly as many
steps; padding only changes which members share a matrix product.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np
import torch

from zoo.errors import ZooError
from zoo.tasks import TaskData


@dataclass(frozen=True)
class Call:
    """Rows ``start..stop-1`` step together on batches padded to ``length`` examples; ``pieces`` say
    where their indices are: ``(lane, first row in the lane, last row + 1, first column, last column
    + 1)`` of the lanes' stacked epoch orders (a piece narrower than ``length`` is padded);
    ``weights [rows, length]`` (None when nothing is padded) weigh each example in its member's loss."""

    start: int
    stop: int
    length: int
    pieces: tuple[tuple[int, int, int, int, int], ...]
    weights: torch.Tensor | None = None

    def index(self, lane_orders: Sequence[torch.Tensor]) -> torch.Tensor:
        """``idx [stop - start, length]`` into ``MemberData.x`` for this call."""
        parts = []
        for lane, lo, hi, c0, c1 in self.pieces:
            part = lane_orders[lane][lo:hi, c0:c1]
            if c1 - c0 < self.length:
                part = torch.cat([part, part[:, -1:].expand(-1, self.length - (c1 - c0))], dim=1)
            parts.append(part)
        return parts[0] if len(parts) == 1 else torch.cat(parts)


class Schedule:
    """The calls of one epoch (the same every epoch) for members with training-set sizes ``sizes [P]``
    and batch sizes ``batch_sizes [P]`` (see the module docstring); ``overhead_samples`` > 0 lets
    neighbouring runs share a padded call.

    Attributes: ``ticks`` (a list of ticks, each a list of :class:`Call`), ``lanes`` (maximal runs of
    consecutive rows with equal size and batch size, ``(start, stop)``), ``steps [P]`` (steps per epoch
    of every member), ``n_calls`` (calls per epoch), ``rows_examples`` (example-rows computed per
    epoch, padding included).
    """

    def __init__(self, sizes: Sequence[int], batch_sizes: Sequence[int], overhead_samples: float = 0.0) -> None:
        n = np.asarray(sizes, dtype=np.int64)
        b = np.asarray(batch_sizes, dtype=np.int64)
        if n.shape != b.shape:
            raise ValueError(f"{len(b)} batch sizes for {len(n)} members")
        if (b < 1).any():
            raise ZooError(f"batch sizes must be >= 1, got {sorted(set(b.tolist()))}")
        self.steps = -(-n // b)
        lanes, lane_of = [], np.empty(len(n), dtype=np.int64)
        for r in range(len(n)):
            if r == 0 or n[r] != n[r - 1] or b[r] != b[r - 1]:
                lanes.append([r, r])
            lanes[-1][1] = r + 1
            lane_of[r] = len(lanes) - 1
        self.lanes = [tuple(lane) for lane in lanes]
        self.ticks: list[list[Call]] = []
        self.rows_examples = 0
        for t, groups in enumerate(tick_calls(n, b, overhead_samples)):
            calls = []
            for group in groups:
                start, stop, length = group[0][0], group[-1][1], max(r[2] for r in group)
                pieces = []
                for run_start, run_stop, run_length in group:
                    for lane in range(int(lane_of[run_start]), int(lane_of[run_stop - 1]) + 1):
                        la, lb = self.lanes[lane]
                        col = t * int(b[la])
                        pieces.append((lane, max(la, run_start) - la, min(lb, run_stop) - la, col, col + run_length))
                weights = None
                if len(group) > 1:
                    weights = torch.zeros(stop - start, length)
                    for run_start, run_stop, run_length in group:
                        weights[run_start - start:run_stop - start, :run_length] = 1.0 / run_length
                calls.append(Call(start, stop, length, tuple(pieces), weights))
                self.rows_examples += (stop - start) * length
            self.ticks.append(calls)
        self.n_calls = sum(len(calls) for calls in self.ticks)

    def lane_orders(self, orders: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """The members' epoch orders (``[sizes[r]]`` each, row order) stacked per lane: ``[rows, size]``."""
        return [torch.stack(list(orders[a:b])) for a, b in self.lanes]


def tick_calls(sizes: Sequence[int], batch_sizes: Sequence[int], overhead_samples: float = 0.0
               ) -> Iterator[list[list[tuple[int, int, int]]]]:
    """The calls of every tick of one epoch (:class:`Schedule`), each a group of runs ``(start, stop,
    length)`` of consecutive rows whose batches are ``length`` long (the call pads them to the longest)."""
    n = np.asarray(sizes, dtype=np.int64)
    b = np.asarray(batch_sizes, dtype=np.int64)
    for t in range(int((-(-n // b)).max(initial=0))):
        lengths = np.clip(n - t * b, 0, b)
        bounds = np.flatnonzero(np.diff(lengths)) + 1
        runs = [(int(s), int(e), int(lengths[s])) for s, e in zip(np.r_[0, bounds], np.r_[bounds, len(n)])
                if lengths[s] > 0]
        yield _merge_runs(runs, overhead_samples)


def _merge_runs(runs: list[tuple[int, int, int]], overhead: float) -> list[list[tuple[int, int, int]]]:
    """Neighbouring runs ``(start, stop, length)`` grouped into calls: a run joins the call before it
    while padding both to the longer length costs fewer example-rows than the overhead of a call of its
    own (``overhead`` example-rows; 0: every run is its own call)."""
    groups: list[list[tuple[int, int, int]]] = []
    for run in runs:
        if groups and overhead > 0:
            group = groups[-1]
            rows = group[-1][1] - group[0][0]
            length = max(r[2] for r in group)
            alone = (overhead + rows * length) + (overhead + (run[1] - run[0]) * run[2])
            together = overhead + (rows + run[1] - run[0]) * max(length, run[2])
            if together <= alone:
                group.append(run)
                continue
        groups.append([run])
    return groups


class MemberData:
    """The training examples of P members (``tasks[j]`` is member ``j``'s task; repeat one object to share).

    Attributes: ``x [N, *input_shape]``, ``y [N]``, ``offsets [P]`` and ``sizes [P]`` (member ``j``
    owns ``x[offsets[j] : offsets[j] + sizes[j]]``), ``groups``: ``(task, member indices [n_j])`` per
    distinct task, in order of first use.
    """

    def __init__(self, tasks: Sequence[TaskData]) -> None:
        if not tasks:
            raise ZooError("a population needs at least one member task")
        distinct: list[TaskData] = []
        members: list[list[int]] = []
        which = []
        for j, task in enumerate(tasks):
            for d, seen in enumerate(distinct):
                if seen is task:
                    break
            else:
                d = len(distinct)
                distinct.append(task)
                members.append([])
            members[d].append(j)
            which.append(d)
        first = distinct[0]
        for d, task in enumerate(distinct[1:], start=1):
            if task.input_shape != first.input_shape or task.n_classes != first.n_classes:
                raise ZooError(f"population member {members[d][0]}: task with inputs {list(task.input_shape)} and "
                               f"{task.n_classes} classes cannot train with member 0's task ({list(first.input_shape)},"
                               f" {first.n_classes} classes); members must share input shape and label space")
        self.groups = [(task, torch.tensor(m, dtype=torch.long)) for task, m in zip(distinct, members)]
        if len(distinct) == 1:
            self.x, self.y = first.x_train, first.y_train
        else:
            self.x = torch.cat([t.x_train for t in distinct])
            self.y = torch.cat([t.y_train for t in distinct])
        starts = torch.tensor([0] + [len(t.y_train) for t in distinct]).cumsum(0)[:-1]
        self.offsets = starts[torch.tensor(which)]
        self.sizes = torch.tensor([len(distinct[d].y_train) for d in which])
        if (self.sizes == 0).any():
            raise ZooError(f"population members {torch.flatnonzero(self.sizes == 0).tolist()} have no training examples")
        self.equal_sizes = bool((self.sizes == self.sizes[0]).all())
        self._schedules: dict[tuple, Schedule] = {}

    @property
    def n_members(self) -> int:
        return len(self.sizes)

    def schedule(self, batch_sizes: int | Sequence[int], overhead_samples: float = 0.0) -> Schedule:
        """The :class:`Schedule` of one epoch with these batch sizes (one for all, or one per member)."""
        sizes = (int(batch_sizes),) * self.n_members if isinstance(batch_sizes, int) else tuple(map(int, batch_sizes))
        key = (*sizes, float(overhead_samples))
        if key not in self._schedules:
            self._schedules[key] = Schedule(self.sizes.tolist(), sizes, overhead_samples)
        return self._schedules[key]

    def steps_per_epoch(self, batch_sizes: int | Sequence[int]) -> torch.Tensor:
        """Mini-batch steps ``[P]`` every member takes per epoch."""
        return torch.from_numpy(self.schedule(batch_sizes).steps)

    def epoch_orders(self, generators: Sequence[torch.Generator]) -> list[torch.Tensor]:
        """Each member's example order for one epoch: indices into ``x`` (``[sizes[j]]`` each)."""
        return [torch.randperm(int(n), generator=g) + int(o) for g, n, o in zip(generators, self.sizes, self.offsets)]

    def batches(self, orders: Sequence[torch.Tensor], batch_sizes: int | Sequence[int]
                ) -> Iterator[tuple[torch.Tensor | None, torch.Tensor]]:
        """The steps of one epoch: ``(members, idx)`` where ``members`` is None (all members, ``idx
        [P, B]``) or the indices ``[n_sel]`` of the members stepping now (``idx [n_sel, L]``)."""
        schedule = self.schedule(batch_sizes)
        lanes = schedule.lane_orders(orders)
        for calls in schedule.ticks:
            for call in calls:
                whole = call.start == 0 and call.stop == self.n_members
                yield (None if whole else torch.arange(call.start, call.stop)), call.index(lanes)

