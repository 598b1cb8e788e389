"""SANE-style tokens: one token per neuron (MLP) or output channel (CNN).

A unit's token holds its incoming weights, the row ``W[o]`` of its layer's weight tensor flattened
(kernel dimensions included), followed by its bias ``b[o]``, zero-padded to ``token_dim``.

How a layout becomes tokens, layer by layer (in increasing ``layer`` index):

* every weight entry (two or more dimensions) gives one unit per row ``o``; it is paired with the
  first not-yet-paired bias entry (one dimension) of the same layer whose length is ``W.shape[0]``.
  A weight without such a bias gives tokens without the bias slot;
* a one-dimensional entry that is not paired with a weight gives one token per element.

Unit indices count up within a layer (a second weight entry of the same layer continues after the
first). ``token_dim`` defaults to the largest unit. With a smaller ``token_dim`` a unit with more
values is split into several consecutive tokens: they share the unit's layer and unit index in
``positions`` while the global token index keeps incrementing, and only the last one is padded.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from kernels.layout import ParamLayout
from zoo.errors import ArchitectureMismatchError, ZooError


@dataclass
class TokenMap:
    """Where every token slot of a layout comes from in the flat weight vector.

    index: ``[n_tokens, token_dim]`` long, flat parameter index of each slot, -1 for padding.
    mask: ``[n_tokens, token_dim]`` bool, True where the slot holds a real weight.
    positions: ``[n_tokens, 3]`` long, (global token index, layer index, unit index within the layer).
    n_params: length of the flat weight vector.
    """

    index: torch.Tensor
    mask: torch.Tensor
    positions: torch.Tensor
    n_params: int
    _source: torch.Tensor | None = field(default=None, repr=False, compare=False)

    @property
    def n_tokens(self) -> int:
        return int(self.index.shape[0])

    @property
    def token_dim(self) -> int:
        return int(self.index.shape[1])

    def source(self) -> torch.Tensor:
        """``[n_params]`` long: position of each parameter in the flattened ``[n_tokens * token_dim]`` grid."""
        if self._source is None:
            flat_index = self.index.reshape(-1)
            slots = torch.nonzero(flat_index >= 0).reshape(-1)
            src = torch.full((self.n_params,), -1, dtype=torch.long)
            src[flat_index[slots]] = slots
            self._source = src
        return self._source


def _units(layout: ParamLayout) -> list[tuple[int, int, list[int]]]:
    """``(layer, unit, flat indices)`` of every unit in token order."""
    by_layer: dict[int, list] = {}
    for e in layout:
        by_layer.setdefault(e.layer, []).append(e)
    units: list[tuple[int, int, list[int]]] = []
    for layer in sorted(by_layer):
        entries = by_layer[layer]
        paired: set[str] = set()
        unit = 0
        for w in entries:
            if len(w.shape) < 2:
                continue
            n_out = w.shape[0]
            bias = next((b for b in entries if len(b.shape) == 1 and b.name not in paired and b.shape[0] == n_out),
                        None)
            if bias is not None:
                paired.add(bias.name)
            row = w.numel // n_out
            for o in range(n_out):
                idx = list(range(w.offset + o * row, w.offset + (o + 1) * row))
                if bias is not None:
                    idx.append(bias.offset + o)
                units.append((layer, unit, idx))
                unit += 1
        for e in entries:
            if len(e.shape) < 2 and e.name not in paired:  # lone 1-D (or 0-D) entries: one token per element
                for j in range(e.numel):
                    units.append((layer, unit, [e.offset + j]))
                    unit += 1
    return units


def token_map(layout: ParamLayout, token_dim: int | None = None) -> TokenMap:
    """Precompute the :class:`TokenMap` of ``layout`` (``token_dim`` defaults to the largest unit)."""
    units = _units(layout)
    if not units:
        raise ZooError("token_map: the layout has no parameters")
    if token_dim is None:
        dim = max(len(idx) for _, _, idx in units)
    else:
        dim = int(token_dim)
        if dim < 1:
            raise ZooError(f"token_map: token_dim must be >= 1, got {token_dim}")
    rows: list[list[int]] = []
    positions: list[list[int]] = []
    for layer, unit, idx in units:
        for start in range(0, len(idx), dim):
            piece = idx[start:start + dim]
            rows.append(piece + [-1] * (dim - len(piece)))
            positions.append([len(positions), layer, unit])
    index = torch.tensor(rows, dtype=torch.long)
    used = index[index >= 0]
    if used.numel() != layout.n_params or not torch.equal(used.sort().values, torch.arange(layout.n_params)):
        raise ZooError("token_map: the layout's entries do not tile the flat vector")
    return TokenMap(index, index >= 0, torch.tensor(positions, dtype=torch.long), layout.n_params)


def tokenize(flat: torch.Tensor, tmap: TokenMap) -> torch.Tensor:
    """``[..., n_params]`` → ``[..., n_tokens, token_dim]``, zeros where ``tmap.mask`` is False."""
    if flat.dim() == 0 or flat.shape[-1] != tmap.n_params:
        raise ArchitectureMismatchError(
            f"tokenize: weights of shape {list(flat.shape)} do not end in the token map's {tmap.n_params} parameters")
    index = tmap.index.to(flat.device)
    mask = tmap.mask.to(flat.device)
    gathered = flat[..., index.clamp_min(0)]
    return torch.where(mask, gathered, torch.zeros((), dtype=flat.dtype, device=flat.device))


def detokenize(tokens: torch.Tensor, tmap: TokenMap) -> torch.Tensor:
    """Exact inverse of :func:`tokenize`: ``[..., n_tokens, token_dim]`` → ``[..., n_params]``.

    Padding slots are ignored.
    """
    if tokens.dim() < 2 or tuple(tokens.shape[-2:]) != (tmap.n_tokens, tmap.token_dim):
        raise ArchitectureMismatchError(
            f"detokenize: tokens of shape {list(tokens.shape)} do not end in "
            f"[{tmap.n_tokens}, {tmap.token_dim}]")
    grid = tokens.reshape(*tokens.shape[:-2], tmap.n_tokens * tmap.token_dim)
    return grid[..., tmap.source().to(tokens.device)]
