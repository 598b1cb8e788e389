"""Zero-padding: members of one architecture family with different widths in one population.

Two instances of an architecture can share a population when they differ only in how many units
(hidden neurons, channels) their permutation groups have (:class:`kernels.layout.ParamLayout`): the
same parameter names, axes and repeats, equal sizes on every axis that is not a unit axis. Their
:func:`skeleton` is then equal. A member is embedded in the *envelope* -- the member with the most
units in every group -- by putting each of its tensors in the leading corner of the envelope's
(unit ``k`` of a group keeps index ``k``, also for a flattened conv output where it owns ``repeat``
consecutive features); every other entry is zero, and ``unit_masks`` (1 for real units, 0 for padding)
zero the padded units' outputs in the forward pass (``zoo.architectures``: ``forward(x, unit_masks)``).

With the padded units' outputs exactly zero, the loss does not depend on the padded parameters, so
their gradients are exactly zero and SGD (with momentum and weight decay), Adam and AdamW leave them at
zero: the real parameters follow exactly the narrower model's training, up to float rounding of the
longer sums in the matrix products.
"""

from __future__ import annotations

from typing import Sequence

import torch

from kernels.layout import ParamLayout
from zoo.errors import ArchitectureMismatchError

Skeleton = tuple


def skeleton(layout: ParamLayout) -> Skeleton:
    """What two layouts must share to be padded to one shape: per parameter its name, its unit axes
    ``(axis, group, repeat)`` and the sizes of its other axes (None on unit axes); the group count."""
    entries = []
    for e in layout.entries:
        unit_axes = {p.axis for p in e.perm}
        sizes = tuple(None if d in unit_axes else s for d, s in enumerate(e.shape))
        perm = tuple(sorted((p.axis, p.group, p.repeat) for p in e.perm))
        entries.append((e.name, sizes, perm))
    return tuple(entries), len(layout.group_sizes)


def _check_units(layout: ParamLayout) -> None:
    """Every unit axis must be ``units * repeat`` long (else the corner embedding would be wrong)."""
    for e in layout.entries:
        for p in e.perm:
            if e.shape[p.axis] != layout.group_sizes[p.group] * p.repeat:
                raise ArchitectureMismatchError(
                    f"parameter {e.name!r}: axis {p.axis} has {e.shape[p.axis]} entries, but group {p.group} has "
                    f"{layout.group_sizes[p.group]} units x repeat {p.repeat}; it cannot be zero-padded")


def envelope_of(layouts: Sequence[ParamLayout]) -> int:
    """Index of the layout every other one pads to: equal skeletons, and at least as many units in
    every group as each of the others. Raises :class:`zoo.errors.ArchitectureMismatchError` naming
    the problem when there is none."""
    first = skeleton(layouts[0])
    for i, lay in enumerate(layouts):
        _check_units(lay)
        if skeleton(lay) != first:
            raise ArchitectureMismatchError(
                f"member {i} cannot be zero-padded to member 0's shape: their parameters differ in more than "
                f"their unit counts ({[e.name for e in lay.entries]} vs {[e.name for e in layouts[0].entries]})")
    widest = [max(lay.group_sizes[g] for lay in layouts) for g in range(len(layouts[0].group_sizes))]
    for i, lay in enumerate(layouts):
        if list(lay.group_sizes) == widest:
            return i
    raise ArchitectureMismatchError(
        f"no member has the most units in every group (widest per group: {widest}; members: "
        f"{sorted({tuple(lay.group_sizes) for lay in layouts})}); such members cannot share a population")


def embedding_index(member: ParamLayout, envelope: ParamLayout) -> torch.Tensor:
    """``[member.n_params]`` positions of the member's flat weights in the envelope's flat vector:
    ``padded[..., index] = flat`` embeds, ``padded[..., index]`` takes the member's weights back."""
    pieces = []
    for e, big in zip(member.entries, envelope.entries):
        positions = torch.arange(big.numel, dtype=torch.long).reshape(big.shape)
        corner = positions[tuple(slice(0, s) for s in e.shape)]
        pieces.append(corner.reshape(-1) + big.offset)
    return torch.cat(pieces) if pieces else torch.zeros(0, dtype=torch.long)


def unit_masks(member: ParamLayout, envelope: ParamLayout) -> list[torch.Tensor]:
    """One float mask ``[envelope units of group g]`` per group: 1 for the member's units, 0 for padding."""
    out = []
    for units, total in zip(member.group_sizes, envelope.group_sizes):
        mask = torch.zeros(total)
        mask[:units] = 1.0
        out.append(mask)
    return out
