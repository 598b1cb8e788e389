"""Parameter layout: where each parameter tensor of an architecture lives in a flat weight vector.

This is the one description of a network's parameters that the kernels (which take flat vectors)
and the zoo store (which keeps them) share; it lives at the bottom layer so that both import it from
here (as ``nfn`` keeps its network spec beside its layers).

A zoo stores the weights of every model as one flat float32 vector ``[n_params]`` per checkpoint.
The layout maps each named parameter to its ``offset`` and ``shape`` in that vector, the index of the
layer it belongs to, and its *permutable axes*: which axes are indexed by hidden units (MLP) or
channels (CNN) that can be permuted without changing the network's function.

Permutable axes are grouped: all axes that index the same hidden units share a ``group`` id. An axis
may index ``unit * repeat + r`` (``repeat > 1``), which is how a flattened conv output feeds a linear
layer: channel ``c`` owns the ``repeat`` consecutive input features ``c*repeat .. c*repeat+repeat-1``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Iterable, Mapping, Sequence

import torch

from kernels.errors import LayoutMismatchError


@dataclass(frozen=True)
class PermAxis:
    """One permutable axis of a parameter: ``axis`` is indexed by units of permutation ``group``."""

    group: int
    axis: int
    repeat: int = 1

    def to_record(self) -> list[int]:
        return [self.group, self.axis, self.repeat]

    @classmethod
    def from_record(cls, rec: Sequence[int]) -> "PermAxis":
        return cls(int(rec[0]), int(rec[1]), int(rec[2]) if len(rec) > 2 else 1)


@dataclass(frozen=True)
class ParamEntry:
    """One parameter tensor inside the flat vector: ``flat[offset : offset + numel]`` viewed as ``shape``."""

    name: str
    offset: int
    shape: tuple[int, ...]
    layer: int
    perm: tuple[PermAxis, ...] = ()

    @property
    def numel(self) -> int:
        return int(math.prod(self.shape))

    @property
    def is_bias(self) -> bool:
        return len(self.shape) == 1

    def to_record(self) -> dict:
        return {
            "name": self.name,
            "offset": self.offset,
            "shape": list(self.shape),
            "layer": self.layer,
            "perm": [p.to_record() for p in self.perm],
        }

    @classmethod
    def from_record(cls, rec: Mapping) -> "ParamEntry":
        return cls(
            name=str(rec["name"]),
            offset=int(rec["offset"]),
            shape=tuple(int(s) for s in rec["shape"]),
            layer=int(rec["layer"]),
            perm=tuple(PermAxis.from_record(p) for p in rec.get("perm", [])),
        )


@dataclass(frozen=True)
class ParamLayout:
    """The ordered parameter tensors of one architecture and its permutation groups.

    ``group_sizes[g]`` is the number of units (hidden neurons or channels) in permutation group ``g``.
    """

    entries: tuple[ParamEntry, ...]
    group_sizes: tuple[int, ...] = ()
    _by_name: dict = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        self._by_name.update({e.name: e for e in self.entries})
        expected = 0
        for e in self.entries:
            if e.offset != expected:
                raise ValueError(f"layout entry {e.name!r} has offset {e.offset}, expected {expected}")
            expected += e.numel

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_shapes(
        cls,
        named_shapes: Iterable[tuple[str, Sequence[int]]],
        perm_spec: Mapping[str, Sequence[PermAxis]] | None = None,
        group_sizes: Sequence[int] = (),
        layer_of: Mapping[str, int] | None = None,
    ) -> "ParamLayout":
        """Layout of parameters ``(name, shape)`` laid out one after another in the given order.

        ``layer_of`` maps a parameter name to its layer index; by default parameters that share the
        module prefix (``layers.0.weight`` and ``layers.0.bias``) share a layer, numbered in order.
        ``perm_spec[name]`` lists the permutable axes of a parameter, ``group_sizes`` the unit count of
        each permutation group.
        """
        perm_spec = perm_spec or {}
        entries = []
        offset = 0
        prefixes: dict[str, int] = {}
        for name, shape in named_shapes:
            if layer_of is not None and name in layer_of:
                layer = int(layer_of[name])
            else:
                layer = prefixes.setdefault(name.rsplit(".", 1)[0] if "." in name else name, len(prefixes))
            entry = ParamEntry(name, offset, tuple(int(s) for s in shape), layer, tuple(perm_spec.get(name, ())))
            entries.append(entry)
            offset += entry.numel
        return cls(tuple(entries), tuple(int(g) for g in group_sizes))

    @classmethod
    def from_module(
        cls,
        module: torch.nn.Module,
        perm_spec: Mapping[str, Sequence[PermAxis]] | None = None,
        group_sizes: Sequence[int] = (),
        layer_of: Mapping[str, int] | None = None,
    ) -> "ParamLayout":
        """Layout of ``module.named_parameters()`` in registration order (see :meth:`from_shapes`)."""
        return cls.from_shapes(((name, p.shape) for name, p in module.named_parameters()), perm_spec,
                               group_sizes, layer_of)

    @classmethod
    def of_module(cls, module: torch.nn.Module) -> "ParamLayout":
        """Layout of ``module`` with the permutation groups it declares through an optional
        ``permutation_spec() -> (perm_spec, group_sizes)`` method (none otherwise)."""
        if hasattr(module, "permutation_spec"):
            perm_spec, group_sizes = module.permutation_spec()
            return cls.from_module(module, perm_spec, group_sizes)
        return cls.from_module(module)

    def to_record(self) -> dict:
        return {
            "entries": [e.to_record() for e in self.entries],
            "group_sizes": list(self.group_sizes),
            "n_params": self.n_params,
        }

    @classmethod
    def from_record(cls, rec: Mapping) -> "ParamLayout":
        return cls(
            tuple(ParamEntry.from_record(e) for e in rec["entries"]),
            tuple(int(g) for g in rec.get("group_sizes", [])),
        )

    # ------------------------------------------------------------------ queries
    @property
    def n_params(self) -> int:
        return sum(e.numel for e in self.entries)

    @property
    def names(self) -> list[str]:
        return [e.name for e in self.entries]

    @property
    def n_layers(self) -> int:
        return 1 + max((e.layer for e in self.entries), default=-1)

    @property
    def permutable(self) -> bool:
        return len(self.group_sizes) > 0

    def __getitem__(self, name: str) -> ParamEntry:
        try:
            return self._by_name[name]
        except KeyError:
            raise KeyError(f"no parameter {name!r} in layout (has {self.names})") from None

    def __iter__(self):
        return iter(self.entries)

    def __len__(self) -> int:
        return len(self.entries)

    # ------------------------------------------------------------------ flat <-> tensors
    def unflatten(self, flat: torch.Tensor) -> dict[str, torch.Tensor]:
        """Views of ``flat [..., n_params]`` as ``{name: [..., *shape]}`` (no copy)."""
        if flat.shape[-1] != self.n_params:
            raise LayoutMismatchError(
                f"weight vector has {flat.shape[-1]} parameters but the layout expects {self.n_params}"
            )
        lead = flat.shape[:-1]
        return {
            e.name: flat[..., e.offset : e.offset + e.numel].reshape(*lead, *e.shape) for e in self.entries
        }

    def flatten(self, tensors: Mapping[str, torch.Tensor], batch_dims: int = 0) -> torch.Tensor:
        """Concatenate ``{name: [*batch, *shape]}`` into ``[*batch, n_params]`` in layout order."""
        parts = []
        for e in self.entries:
            if e.name not in tensors:
                raise LayoutMismatchError(f"missing parameter {e.name!r} (expected shape {list(e.shape)})")
            t = tensors[e.name]
            if tuple(t.shape[batch_dims:]) != e.shape:
                raise LayoutMismatchError(
                    f"parameter {e.name!r} has shape {list(t.shape[batch_dims:])}, expected {list(e.shape)}"
                )
            parts.append(t.reshape(*t.shape[:batch_dims], e.numel))
        extra = set(tensors) - set(self.names)
        if extra:
            raise LayoutMismatchError(f"unexpected parameters {sorted(extra)} not in the layout")
        return torch.cat(parts, dim=-1)

    def check_state_dict(self, state: Mapping[str, torch.Tensor], where: str = "state_dict") -> None:
        """Raise :class:`LayoutMismatchError` naming the first parameter whose name or shape differs."""
        for e in self.entries:
            if e.name not in state:
                raise LayoutMismatchError(f"{where}: missing parameter {e.name!r} of shape {list(e.shape)}")
            if tuple(state[e.name].shape) != e.shape:
                raise LayoutMismatchError(
                    f"{where}: parameter {e.name!r} has shape {list(state[e.name].shape)}, "
                    f"the architecture expects {list(e.shape)}"
                )

    # ------------------------------------------------------------------ permutations
    def permutation_index(self, perms: Sequence[torch.Tensor]) -> torch.Tensor:
        """Flat gather index ``[n_params]`` such that ``flat[index]`` applies the unit permutations.

        ``perms[g]`` is a permutation of ``range(group_sizes[g])``: new unit ``i`` of group ``g`` is
        old unit ``perms[g][i]``. Applying the same permutation to every axis of a group leaves the
        network's function unchanged.
        """
        if len(perms) != len(self.group_sizes):
            raise ValueError(f"expected {len(self.group_sizes)} permutations, got {len(perms)}")
        for g, (p, size) in enumerate(zip(perms, self.group_sizes)):
            if p.shape != (size,):
                raise ValueError(f"permutation of group {g} has shape {list(p.shape)}, expected [{size}]")
        pieces = []
        for e in self.entries:
            idx = torch.arange(e.numel, dtype=torch.long).reshape(e.shape)
            for pa in e.perm:
                p = perms[pa.group].to(torch.long)
                if pa.repeat > 1:
                    p = (p[:, None] * pa.repeat + torch.arange(pa.repeat)).reshape(-1)
                idx = idx.index_select(pa.axis, p)
            pieces.append(idx.reshape(-1) + e.offset)
        return torch.cat(pieces) if pieces else torch.zeros(0, dtype=torch.long)

    def random_permutations(self, generator: torch.Generator | None = None) -> list[torch.Tensor]:
        """One random permutation per group (``[group_sizes[g]]`` each)."""
        return [torch.randperm(size, generator=generator) for size in self.group_sizes]

    def layer_slices(self) -> list[tuple[int, int]]:
        """``(start, stop)`` of the contiguous flat range of each layer index, in layer order."""
        bounds: dict[int, list[int]] = {}
        for e in self.entries:
            b = bounds.setdefault(e.layer, [e.offset, e.offset + e.numel])
            b[0] = min(b[0], e.offset)
            b[1] = max(b[1], e.offset + e.numel)
        return [tuple(bounds[k]) for k in sorted(bounds)]

