"""Per-parameter-tensor normalisation statistics of a zoo's weights (computed on the train split)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

import torch

from zoo.layout import ParamLayout


@dataclass
class NormStats:
    """Mean and standard deviation ``[n_entries]`` of each parameter tensor of a layout."""

    mean: torch.Tensor
    std: torch.Tensor
    _vectors: dict = field(default_factory=dict, repr=False, compare=False)

    def vectors(self, layout: ParamLayout) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and std expanded to ``[n_params]`` float32 (cached per layout size)."""
        if layout.n_params not in self._vectors:
            index = _entry_index(layout)
            self._vectors[layout.n_params] = (self.mean.float()[index], self.std.float()[index])
        return self._vectors[layout.n_params]

    def to_record(self) -> dict:
        return {"mean": self.mean.tolist(), "std": self.std.tolist()}

    @classmethod
    def from_record(cls, rec: dict) -> "NormStats":
        return cls(torch.tensor(rec["mean"], dtype=torch.float64), torch.tensor(rec["std"], dtype=torch.float64))


def _entry_index(layout: ParamLayout) -> torch.Tensor:
    """``[n_params]`` index of the layout entry each parameter belongs to."""
    return torch.repeat_interleave(torch.arange(len(layout)), torch.tensor([e.numel for e in layout]))


def compute_norm_stats(batches: Iterable[torch.Tensor], layout: ParamLayout, eps: float = 1e-8) -> NormStats:
    """Streaming per-entry mean/std over batches of flat weights ``[b, n_params]``.

    Sums are accumulated in float64; memory does not depend on the number of batches. Rows with a
    non-finite value (diverged models) are skipped.
    """
    index = _entry_index(layout)
    n_entries = len(layout)
    s1 = torch.zeros(n_entries, dtype=torch.float64)
    s2 = torch.zeros(n_entries, dtype=torch.float64)
    count = torch.zeros(n_entries, dtype=torch.float64)
    sizes = torch.tensor([e.numel for e in layout], dtype=torch.float64)
    for batch in batches:
        batch = batch.reshape(-1, layout.n_params)
        batch = batch[torch.isfinite(batch).all(dim=1)].double()
        if batch.shape[0] == 0:
            continue
        s1.index_add_(0, index, batch.sum(0))
        s2.index_add_(0, index, (batch * batch).sum(0))
        count += sizes * batch.shape[0]
    if (count == 0).any():
        raise ValueError("compute_norm_stats: no finite weight vectors to compute statistics from")
    mean = s1 / count
    var = (s2 / count - mean * mean).clamp_min(0.0)
    return NormStats(mean, var.sqrt().clamp_min(eps))


def normalize(flat: torch.Tensor, stats: NormStats, layout: ParamLayout) -> torch.Tensor:
    """``(w - mean) / std`` per parameter tensor, for ``flat [..., n_params]``."""
    mean, std = stats.vectors(layout)
    return (flat - mean.to(flat.dtype)) / std.to(flat.dtype)


def denormalize(flat: torch.Tensor, stats: NormStats, layout: ParamLayout) -> torch.Tensor:
    """Inverse of :func:`normalize`."""
    mean, std = stats.vectors(layout)
    return flat * std.to(flat.dtype) + mean.to(flat.dtype)
