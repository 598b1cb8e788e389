"""Robust weight signatures (Cai et al., ICML 2023, "Robust Weight Signatures: Gaining Robustness as
Easy as Patching Weights?", §3–4).

A corruption child's task vector ``τ = θ_robust − θ_clean`` is concentrated in the shallowest layers
(§3.2). A **signature** keeps only the entries of the first ``layers`` layers (layer indices of the
architecture's :class:`kernels.ParamLayout`; configurable), optionally quantised to int8 (symmetric,
one float32 scale per parameter tensor: ``q = round(τ / s)``, ``s = max|τ| / 127``). Patching a clean
model adds it: ``θ = θ_clean + c · signature`` (the paper's "patching", coefficient ``c``, default 1).
A signature made on one base is **transferred** to another base of the same architecture by weight
matching (:mod:`weightnets.compose.matching`): the source base is aligned to the target, and the same
unit permutations are applied to the signature (it lives in the source's unit order).

:func:`signature_report` measures what the issue asks: the corrupted-task accuracy gained, the clean
accuracy kept, and the storage ratio (signature bytes / full float32 weights).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Sequence

import numpy as np
import torch

import kernels
from weightnets.compose.matching import weight_matching
from weightnets.evaluate import evaluate_on_tasks
from zoo import ArchitectureMismatchError, ParamLayout, SpecError
from zoo.tasks import TaskData


@dataclass
class WeightSignature:
    """The entries of a task vector on some parameter tensors.

    ``names`` are the tensors kept (layout order), ``values`` their entries concatenated (float32, or
    int8 when quantised, then ``scales [len(names)]`` float32 hold one scale per tensor), ``n_params``
    the full vector's length and ``layout`` the architecture's layout.
    """

    names: list[str]
    values: torch.Tensor
    scales: torch.Tensor | None
    layout: ParamLayout

    @property
    def n_params(self) -> int:
        return self.layout.n_params

    @property
    def nbytes(self) -> int:
        """Bytes to store the signature: its values, the per-tensor scales, and 8 bytes (offset, length)
        per kept tensor."""
        scale_bytes = 0 if self.scales is None else self.scales.numel() * 4
        return int(self.values.numel() * self.values.element_size() + scale_bytes + 8 * len(self.names))

    @property
    def storage_ratio(self) -> float:
        """``nbytes`` / bytes of the full float32 weight vector."""
        return self.nbytes / (4.0 * self.n_params)

    def dense(self) -> torch.Tensor:
        """``[n_params]`` float32: the (dequantised) signature, zero outside its tensors."""
        out = torch.zeros(self.n_params, dtype=torch.float32)
        pos = 0
        for k, name in enumerate(self.names):
            e = self.layout[name]
            piece = self.values[pos:pos + e.numel].float()
            if self.scales is not None:
                piece = piece * self.scales[k]
            out[e.offset:e.offset + e.numel] = piece
            pos += e.numel
        return out


def extract_signature(task_vector: torch.Tensor, layout: ParamLayout, layers: int | Sequence[int] = 1,
                      quantize: Literal["int8"] | None = None) -> WeightSignature:
    """The signature of ``task_vector [n_params]``: the tensors of the first ``layers`` layers (an int) or
    of the listed layer indices, optionally int8-quantised.

    Raises :class:`zoo.ArchitectureMismatchError` when the vector does not fit ``layout`` and
    :class:`zoo.SpecError` for an unknown ``quantize`` or layers the architecture does not have."""
    if task_vector.dim() != 1 or task_vector.shape[0] != layout.n_params:
        raise ArchitectureMismatchError(f"signature: task vector of shape {list(task_vector.shape)} does not fit an "
                                        f"architecture of {layout.n_params} parameters")
    if quantize not in (None, "int8"):
        raise SpecError(f"signature: quantize must be None or 'int8', got {quantize!r}")
    wanted = set(range(int(layers))) if isinstance(layers, int) else {int(k) for k in layers}
    have = {e.layer for e in layout}
    if not wanted or not wanted <= have:
        raise SpecError(f"signature: layers {sorted(wanted)} not among the architecture's layers {sorted(have)}")
    names = [e.name for e in layout if e.layer in wanted]
    pieces = [task_vector[layout[n].offset:layout[n].offset + layout[n].numel].float() for n in names]
    if quantize is None:
        return WeightSignature(names, torch.cat(pieces), None, layout)
    scales, qs = [], []
    for piece in pieces:
        top = float(piece.abs().max()) if piece.numel() else 0.0
        if not np.isfinite(top):
            raise SpecError("signature: the task vector holds non-finite entries; it cannot be quantised")
        s = top / 127.0
        scales.append(s)
        qs.append(torch.zeros_like(piece, dtype=torch.int8) if s == 0 else
                  torch.round(piece / s).clamp(-127, 127).to(torch.int8))
    return WeightSignature(names, torch.cat(qs), torch.tensor(scales, dtype=torch.float32), layout)


def patch(model: torch.Tensor, signature: WeightSignature, coefficient: float = 1.0) -> torch.Tensor:
    """``model + coefficient · signature`` for ``model [n_params]`` or ``[P, n_params]``."""
    if model.shape[-1] != signature.n_params:
        raise ArchitectureMismatchError(f"patch: model of {model.shape[-1]} parameters, signature of "
                                        f"{signature.n_params}")
    return model + float(coefficient) * signature.dense().to(model.dtype)


def transfer(signature: WeightSignature, source_base: torch.Tensor, target_base: torch.Tensor, *,
             seed: int = 0) -> WeightSignature:
    """The signature expressed in ``target_base``'s unit order: weight-match ``source_base`` to
    ``target_base`` and permute the signature the same way (float32 result; quantise again if needed)."""
    layout = signature.layout
    perms = weight_matching(layout, target_base.float(), source_base.float(), seed=seed)
    moved = kernels.permute(signature.dense()[None], layout, perms)[0]
    return extract_signature(moved, layout, layers=sorted({layout[n].layer for n in signature.names}))


@dataclass
class SignatureReport:
    """Accuracies (test split) of a clean model before and after patching, on the corrupted task and
    on the clean task, and the signature's storage ratio."""

    corrupted_before: float
    corrupted_after: float
    clean_before: float
    clean_after: float
    child_corrupted: float
    storage_ratio: float

    @property
    def corrupted_gain(self) -> float:
        return self.corrupted_after - self.corrupted_before

    @property
    def clean_kept(self) -> float:
        """``clean_after / clean_before``."""
        return self.clean_after / self.clean_before

    def as_dict(self) -> dict:
        out = dict(self.__dict__)
        out.update(corrupted_gain=self.corrupted_gain, clean_kept=self.clean_kept)
        return out


def signature_report(model: torch.Tensor, signature: WeightSignature, arch: torch.nn.Module, corrupted: TaskData,
                     clean: TaskData, child: torch.Tensor | None = None, coefficient: float = 1.0) -> SignatureReport:
    """Patch ``model [n_params]`` with ``signature`` and evaluate both on ``corrupted`` and ``clean`` (test
    splits) in one batched pass per task; ``child`` (the corruption child itself, when known) gives the
    reference accuracy on the corrupted task."""
    rows = [model.float(), patch(model.float(), signature, coefficient)]
    if child is not None:
        rows.append(child.float())
    acc = evaluate_on_tasks(torch.stack(rows), arch, [corrupted, clean], "test").acc
    return SignatureReport(float(acc[0, 0]), float(acc[1, 0]), float(acc[0, 1]), float(acc[1, 1]),
                           float(acc[2, 0]) if child is not None else float("nan"), signature.storage_ratio)
