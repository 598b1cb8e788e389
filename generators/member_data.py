"""Training data of a population: one task shared by every member, or one task per member.

Members of a model-tree population are fine-tuned on different derived tasks (class subsets, label
permutations, corrupted inputs), so their training sets differ in content and, for class subsets, in
size. :class:`MemberData` concatenates the distinct training sets into one ``x [N, ...]``, ``y [N]``
and gives every member its own slice (``offsets``, ``sizes``). Each epoch every member draws a
permutation of its own examples from its own generator, exactly as it would when trained alone, and
:meth:`MemberData.batches` walks the members through their epochs step by step:

* while every member has a full batch left, a step is one gather ``x[idx]`` with ``idx [P, B]`` (the
  fast path; always the case when all members have equally many examples);
* at the end of an epoch members with fewer examples run out first: members whose next batch has the
  same length ``L`` step together (``idx [n_sel, L]``), members without a batch left wait.

Every member thus sees exactly the mini-batches it would see alone, including the short last batch.
"""

from __future__ import annotations

from typing import Iterator, Sequence

import torch

from zoo.errors import ZooError
from zoo.tasks import TaskData


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

    @property
    def n_members(self) -> int:
        return len(self.sizes)

    def epoch_orders(self, generators: Sequence[torch.Generator]) -> list[torch.Tensor]:
        """Each member's example order for one epoch: indices into ``x`` (``[sizes[j]]`` each)."""
        return [torch.randperm(int(n), generator=g) + int(o) for g, n, o in zip(generators, self.sizes, self.offsets)]

    def batches(self, orders: Sequence[torch.Tensor], batch_size: int
                ) -> Iterator[tuple[torch.Tensor | None, torch.Tensor]]:
        """The steps of one epoch: ``(members, idx)`` where ``members`` is None (all members, ``idx
        [P, B]``) or the indices ``[n_sel]`` of the members stepping now (``idx [n_sel, L]``)."""
        if self.equal_sizes:
            perms = torch.stack(list(orders))
            for i in range(0, perms.shape[1], batch_size):
                yield None, perms[:, i:i + batch_size]
            return
        sizes = self.sizes.tolist()
        for start in range(0, max(sizes), batch_size):
            lengths = [max(0, min(batch_size, n - start)) for n in sizes]
            if all(length == lengths[0] for length in lengths):
                yield None, torch.stack([o[start:start + lengths[0]] for o in orders])
                continue
            for length in sorted({length for length in lengths if length > 0}, reverse=True):
                sel = [j for j, l in enumerate(lengths) if l == length]
                yield torch.tensor(sel, dtype=torch.long), torch.stack([orders[j][start:start + length] for j in sel])
