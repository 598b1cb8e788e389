"""Per-parameter-tensor normalisation statistics of a zoo's weights (computed on the train split).

Each layout entry (one parameter tensor, e.g. ``layers.0.weight``) gets one mean and one standard
deviation, pooled over all its values in all train models. :func:`compute_norm_stats` streams over
batches ``[b, n_params]`` and merges per-batch (count, mean, centred sum of squares) in float64
(Chan et al.'s parallel variance update), so memory is independent of the number of batches and the
result does not depend on how the models are batched.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

import torch

from kernels.layout import ParamLayout
from zoo.errors import ArchitectureMismatchError, ZooError


def _entry_index(layout: ParamLayout) -> torch.Tensor:
    """``[n_params]`` long: the layout entry each flat parameter belongs to."""
    sizes = torch.tensor([e.numel for e in layout], dtype=torch.long)
    return torch.repeat_interleave(torch.arange(len(layout)), sizes)


@dataclass
class NormStats:
    """Mean ``[n_entries]`` and std ``[n_entries]`` (float64) of each parameter tensor of a layout.

    ``std`` is NaN for a tensor that is constant over the train models (no spread to scale by): such a
    tensor is only centred (scale 1), never divided by a tiny number.
    """

    mean: torch.Tensor
    std: torch.Tensor
    _vectors: dict = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.mean = torch.as_tensor(self.mean, dtype=torch.float64).reshape(-1)
        self.std = torch.as_tensor(self.std, dtype=torch.float64).reshape(-1)
        if self.mean.shape != self.std.shape:
            raise ZooError(f"NormStats: mean has {self.mean.numel()} entries but std has {self.std.numel()}")
        if not ((self.std > 0) | torch.isnan(self.std)).all():
            raise ZooError("NormStats: every std must be positive (or NaN for a constant tensor)")

    @property
    def constant(self) -> torch.Tensor:
        """``[n_entries]`` bool: tensors constant over the train models (std NaN; centred, not scaled)."""
        return torch.isnan(self.std)

    def vectors(self, layout: ParamLayout, device: torch.device | str | None = None,
                dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and scale expanded to ``[n_params]`` (one value per flat parameter); the scale is the std,
        and 1 for constant tensors."""
        if len(layout) != self.mean.numel():
            raise ArchitectureMismatchError(
                f"normalisation statistics have {self.mean.numel()} entries but the layout has {len(layout)} "
                f"parameter tensors")
        key = (layout.n_params, str(device), dtype)
        if key not in self._vectors:
            index = _entry_index(layout)
            scale = torch.where(self.constant, torch.ones_like(self.std), self.std)
            self._vectors[key] = (self.mean[index].to(device=device, dtype=dtype),
                                  scale[index].to(device=device, dtype=dtype))
        return self._vectors[key]

    def to_record(self) -> dict:
        """JSON-able ``{"mean": [...], "std": [...]}``; the std of a constant tensor is ``null``, and
        ``"constant"`` lists those tensors' indices with the reason."""
        rec = {"mean": [float(v) for v in self.mean.tolist()],
               "std": [None if math.isnan(v) else float(v) for v in self.std.tolist()]}
        if self.constant.any():
            rec["constant"] = {"entries": torch.nonzero(self.constant).flatten().tolist(),
                               "reason": "constant over the train models: centred, not scaled"}
        return rec

    @classmethod
    def from_record(cls, rec: Mapping[str, Any]) -> "NormStats":
        """Inverse of :meth:`to_record` (extra keys of the record are ignored)."""
        for k in ("mean", "std"):
            if k not in rec:
                raise ZooError(f"normalisation record lacks {k!r} (has {sorted(rec)})")
        std = [math.nan if v is None else v for v in rec["std"]]
        return cls(torch.tensor(rec["mean"], dtype=torch.float64), torch.tensor(std, dtype=torch.float64))


def compute_norm_stats(batches: Iterable[torch.Tensor], layout: ParamLayout, eps: float = 1e-8) -> NormStats:
    """Streaming per-entry mean and (population) std over batches of flat weights ``[b, n_params]``.

    Rows holding any NaN or inf (diverged models) are skipped. A tensor whose std is at most ``eps``
    (or ``eps`` times its mean's magnitude, float noise) is constant over these models: its std is NaN,
    so it is centred and not scaled (a statistic the data cannot support is not stored as a number;
    dividing by a clamped std of 1e-8 would blow up any model that differs from the constant).
    """
    if not eps > 0:
        raise ZooError(f"compute_norm_stats: eps must be positive, got {eps}")
    index = _entry_index(layout)
    n_entries = len(layout)
    sizes = torch.tensor([e.numel for e in layout], dtype=torch.float64)
    count = torch.zeros(n_entries, dtype=torch.float64)
    mean = torch.zeros(n_entries, dtype=torch.float64)
    m2 = torch.zeros(n_entries, dtype=torch.float64)
    for batch in batches:
        batch = torch.as_tensor(batch)
        if batch.shape[-1] != layout.n_params:
            raise ArchitectureMismatchError(
                f"compute_norm_stats: batch of shape {list(batch.shape)} does not hold {layout.n_params} parameters")
        rows = batch.reshape(-1, layout.n_params).detach().to("cpu", torch.float64)
        rows = rows[torch.isfinite(rows).all(dim=1)]
        b = rows.shape[0]
        if b == 0:
            continue
        n_b = sizes * b
        mean_b = torch.zeros(n_entries, dtype=torch.float64).index_add_(0, index, rows.sum(0)) / n_b
        centred = rows - mean_b[index]
        m2_b = torch.zeros(n_entries, dtype=torch.float64).index_add_(0, index, (centred * centred).sum(0))
        total = count + n_b
        delta = mean_b - mean
        mean = mean + delta * (n_b / total)
        m2 = m2 + m2_b + delta * delta * (count * n_b / total)
        count = total
    if (count == 0).any():
        raise ZooError("compute_norm_stats: no finite weight vectors to compute statistics from")
    std = (m2 / count).sqrt()
    std = torch.where(std <= float(eps) * torch.clamp(mean.abs(), min=1.0), torch.full_like(std, math.nan), std)
    return NormStats(mean, std)


def normalize(flat: torch.Tensor, stats: NormStats, layout: ParamLayout) -> torch.Tensor:
    """``(w - mean_entry) / std_entry`` for ``flat [..., n_params]``, same shape and dtype."""
    _check(flat, layout, "normalize")
    mean, std = stats.vectors(layout, flat.device, flat.dtype)
    return (flat - mean) / std


def denormalize(flat: torch.Tensor, stats: NormStats, layout: ParamLayout) -> torch.Tensor:
    """Inverse of :func:`normalize`: ``w * std_entry + mean_entry`` for ``flat [..., n_params]``."""
    _check(flat, layout, "denormalize")
    mean, std = stats.vectors(layout, flat.device, flat.dtype)
    return flat * std + mean


def _check(flat: torch.Tensor, layout: ParamLayout, where: str) -> None:
    if flat.dim() == 0 or flat.shape[-1] != layout.n_params:
        raise ArchitectureMismatchError(
            f"{where}: weights of shape {list(flat.shape)} do not end in the layout's {layout.n_params} parameters")
