"""SANE-style tokens: one token per neuron (MLP) or output channel (CNN).

A token holds the unit's incoming weights (the row ``W[o]`` flattened, kernel dimensions included)
followed by its bias, zero-padded to ``token_dim``. A unit with more values than ``token_dim`` is
split over several consecutive tokens that share its layer and unit positions. Parameter tensors
with no weight matrix in their layer (a lone 1-D entry) give one token per element.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from zoo.layout import ParamLayout


@dataclass
class TokenMap:
    """Where every token slot comes from in the flat vector.

    ``index [n_tokens, token_dim]``: flat parameter index, -1 for padding; ``mask`` is ``index >= 0``;
    ``positions [n_tokens, 3]``: (global token index, layer index, unit index within the layer).
    """

    index: torch.Tensor
    mask: torch.Tensor
    positions: torch.Tensor
    n_params: int

    @property
    def n_tokens(self) -> int:
        return self.index.shape[0]

    @property
    def token_dim(self) -> int:
        return self.index.shape[1]


def _unit_rows(layout: ParamLayout) -> list[tuple[int, int, list[int]]]:
    """``(layer, unit, flat indices)`` of every unit, in layout order."""
    by_layer: dict[int, list] = {}
    for e in layout:
        by_layer.setdefault(e.layer, []).append(e)
    units = []
    for layer in sorted(by_layer):
        entries = by_layer[layer]
        weights = [e for e in entries if len(e.shape) >= 2]
        biases = [e for e in entries if len(e.shape) == 1]
        if weights:
            w = weights[0]
            per_unit = w.numel // w.shape[0]
            bias = next((b for b in biases if b.shape[0] == w.shape[0]), None)
            for o in range(w.shape[0]):
                idx = list(range(w.offset + o * per_unit, w.offset + (o + 1) * per_unit))
                if bias is not None:
                    idx.append(bias.offset + o)
                units.append((layer, o, idx))
            rest = [e for e in entries if e is not w and e is not bias]
        else:
            rest = entries
        for e in rest:  # anything else in the layer: one token per element
            for j in range(e.numel):
                units.append((layer, j, [e.offset + j]))
    return units


def token_map(layout: ParamLayout, token_dim: int | None = None) -> TokenMap:
    """Build the :class:`TokenMap` of a layout (``token_dim`` defaults to the largest unit)."""
    units = _unit_rows(layout)
    dim = int(token_dim or max(len(idx) for _, _, idx in units))
    if dim < 1:
        raise ValueError(f"token_dim must be >= 1, got {token_dim}")
    rows, pos = [], []
    for layer, unit, idx in units:
        for start in range(0, len(idx), dim):
            piece = idx[start:start + dim]
            rows.append(piece + [-1] * (dim - len(piece)))
            pos.append([len(pos), layer, unit])
    index = torch.tensor(rows, dtype=torch.long)
    return TokenMap(index, index >= 0, torch.tensor(pos, dtype=torch.long), layout.n_params)


def tokenize(flat: torch.Tensor, tmap: TokenMap) -> torch.Tensor:
    """``[..., n_params]`` → ``[..., n_tokens, token_dim]`` with zeros in the padding."""
    if flat.shape[-1] != tmap.n_params:
        raise ValueError(f"tokenize: vector has {flat.shape[-1]} entries, token map expects {tmap.n_params}")
    gathered = flat[..., tmap.index.clamp_min(0)]
    return gathered * tmap.mask.to(flat.dtype)


def detokenize(tokens: torch.Tensor, tmap: TokenMap) -> torch.Tensor:
    """Exact inverse of :func:`tokenize`: ``[..., n_tokens, token_dim]`` → ``[..., n_params]``."""
    lead = tokens.shape[:-2]
    flat = tokens.new_zeros(*lead, tmap.n_params)
    sel = tmap.mask
    flat[..., tmap.index[sel]] = tokens[..., sel]
    return flat
