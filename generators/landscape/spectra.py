"""Heavy-tail exponent alpha of each weight matrix's empirical spectral density (ESD).

For a weight matrix ``W`` (a conv kernel ``[out, in, *k]`` is reshaped to ``[out, in * prod(k)]``) the
ESD is the set of eigenvalues of ``W^T W``, i.e. the squared singular values (its non-zero part). A
power law ``p(x) ~ x^-alpha`` for ``x >= xmin`` is fitted to it by Clauset, Shalizi & Newman's (2009)
method: for every candidate ``xmin`` among the eigenvalues the maximum-likelihood
``alpha = 1 + n / sum(log(x_i / xmin))`` over the ``n`` eigenvalues ``>= xmin``; the ``xmin`` whose fit
has the smallest (two-sided) Kolmogorov-Smirnov distance to the empirical tail wins. How this differs
from WeightWatcher 0.7.7 is in ``docs/LANDSCAPE.md``. alpha does not depend on the scale of ``W``. A
spectrum that cannot support a fit (too few eigenvalues, no spread) gets NaN and its reason
(:data:`ALPHA_REASONS`), never a huge number.

FARMS (Hu et al. 2025, "Eigenspectrum Analysis of Neural Networks without Aspect Ratio Bias") pools
instead the ESDs of overlapping submatrices of one fixed aspect ratio and fits one power law to the
pooled eigenvalues (:func:`farms_eigenvalues`).

Singular values are computed for the whole population at once (``torch.linalg.svdvals`` on
``[P, ...]`` stacks); the fits run per member and layer on the eigenvalues.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from kernels.layout import ParamLayout

#: Why a weight matrix has no alpha; ``landscape/alpha_reason`` stores the index (0: it has one).
ALPHA_REASONS = ("fitted", "non-finite weights", "too few eigenvalues", "no spread", "no tail")
#: Tails whose values span less than this in log (a factor 1.0001) are no power law: eigenvalues that
#: equal to about four digits (an orthogonal or scaled-identity matrix: 1 +- 1e-7 after float32
#: rounding) would give alpha = 1 + n / sum(log(x / xmin)) of 1e6 to 1e15.
SPREAD_TOL = 1e-4


@dataclass(frozen=True)
class PowerLawFit:
    """A fitted tail: exponent, lower cut-off, KS distance and number of eigenvalues in the tail;
    ``reason`` is ``"fitted"`` or one of :data:`ALPHA_REASONS` (then the numbers are NaN, ``n_tail`` 0)."""

    alpha: float
    xmin: float
    ks_distance: float
    n_tail: int
    reason: str = "fitted"


def _no_fit(reason: str) -> PowerLawFit:
    return PowerLawFit(float("nan"), float("nan"), float("nan"), 0, reason)


def fit_power_law(values: np.ndarray, *, min_tail: int = 5, block: int = 256,
                  spread_tol: float = SPREAD_TOL) -> PowerLawFit:
    """Fit ``p(x) ~ x^-alpha`` (``x >= xmin``) to positive ``values [n]`` choosing ``xmin`` by the KS
    distance; tails with fewer than ``min_tail`` values, or whose values span less than ``spread_tol``
    in log, are not considered. Data that cannot support a fit gives a NaN fit with its ``reason``:
    ``too few eigenvalues`` (fewer than ``min_tail``), ``no spread`` (all values equal within
    ``spread_tol``) or ``no tail`` (no candidate left).
    """
    x = np.sort(np.asarray(values, dtype=np.float64))
    x = x[np.isfinite(x) & (x > 0)]
    n_total = len(x)
    if n_total < max(min_tail, 2):
        return _no_fit("too few eigenvalues")
    logx = np.log(x)
    if logx[-1] - logx[0] < spread_tol:
        return _no_fit("no spread")
    # suffix sums: sum of log x_j for j >= i
    suffix = np.concatenate([np.cumsum(logx[::-1])[::-1], [0.0]])
    best = _no_fit("no tail")
    n_candidates = n_total - max(min_tail, 2) + 1
    for start in range(0, n_candidates, block):
        idx = np.arange(start, min(start + block, n_candidates))
        n_tail = n_total - idx
        denom = suffix[idx] - n_tail * logx[idx]
        with np.errstate(divide="ignore", invalid="ignore"):
            alpha = 1.0 + n_tail / denom
        ok = np.isfinite(alpha) & (denom > 0) & (logx[-1] - logx[idx] >= spread_tol)
        # KS distance of each candidate's tail: rows = candidates, columns = position in the tail
        j = np.arange(n_total)[None, :]
        pos = idx[:, None] + j
        valid = pos < n_total
        ratio = np.where(valid, logx[np.minimum(pos, n_total - 1)] - logx[idx][:, None], 0.0)
        with np.errstate(over="ignore", invalid="ignore"):
            cdf = 1.0 - np.exp(-(alpha[:, None] - 1.0) * ratio)
        lower = cdf - j / n_tail[:, None]
        upper = (j + 1) / n_tail[:, None] - cdf
        ks = np.where(valid, np.maximum(lower, upper), -np.inf).max(axis=1)
        ks = np.where(ok, ks, np.inf)
        k = int(np.argmin(ks))
        if np.isfinite(ks[k]) and (not math.isfinite(best.ks_distance) or ks[k] < best.ks_distance):
            best = PowerLawFit(float(alpha[k]), float(x[idx[k]]), float(ks[k]), int(n_tail[k]))
    return best


def weight_matrices(layout: ParamLayout, flat: torch.Tensor) -> list[tuple[str, torch.Tensor]]:
    """``(name, W [P, rows, cols])`` for every parameter with two or more axes, in layout order;
    ``flat [P, n_params]``. A conv kernel ``[out, in, *k]`` becomes ``[out, in * prod(k)]``."""
    out = []
    for e in layout.entries:
        if len(e.shape) >= 2:
            w = flat[:, e.offset:e.offset + e.numel].reshape(flat.shape[0], e.shape[0], -1)
            out.append((e.name, w))
    return out


def n_weight_layers(layout: ParamLayout) -> int:
    return sum(1 for e in layout.entries if len(e.shape) >= 2)


def esd(w: torch.Tensor) -> torch.Tensor:
    """Eigenvalues of ``W^T W`` for a stack ``w [P, rows, cols]``: ``[P, min(rows, cols)]`` (float64)."""
    return torch.linalg.svdvals(w.double()).square()


def _window_starts(size: int, window: int, count: int) -> np.ndarray:
    if count <= 1 or size == window:
        return np.zeros(1, dtype=np.int64)
    return np.unique(np.round(np.linspace(0, size - window, count)).astype(np.int64))


def farms_shape(rows: int, cols: int, q: float, sub_rows: int = 0) -> tuple[int, int]:
    """Submatrix ``(r, c)`` with ``c / r = q`` (rounded) that fits in a ``rows x cols`` matrix oriented
    with ``rows <= cols``; ``sub_rows`` 0 takes the largest ``r`` that fits."""
    r = min(rows, int(math.floor(cols / q)))
    if sub_rows > 0:
        r = min(r, int(sub_rows))
    r = max(r, 1)
    c = min(cols, max(1, int(round(q * r))))
    return r, c


def farms_eigenvalues(w: torch.Tensor, *, q: float = 1.0, sub_rows: int = 0, windows: int = 10) -> torch.Tensor:
    """FARMS pooled ESD of a stack ``w [P, rows, cols]``: ``[P, n_windows * r]`` (float64).

    The matrix is oriented with rows <= cols (transposed if needed); submatrices of ``r x c`` with
    ``c / r = q`` (:func:`farms_shape`) sit at ``windows`` evenly spaced, rounded start positions along
    each dimension (duplicates removed, so a dimension that the window fills exactly has one
    position); the squared singular values of all of them are pooled.
    """
    if w.shape[1] > w.shape[2]:
        w = w.transpose(1, 2)
    rows, cols = w.shape[1], w.shape[2]
    r, c = farms_shape(rows, cols, q, sub_rows)
    row_starts = _window_starts(rows, r, windows)
    col_starts = _window_starts(cols, c, windows)
    blocks = [w[:, i:i + r, j:j + c] for i in row_starts for j in col_starts]
    subs = torch.stack(blocks, dim=1)  # [P, n_windows, r, c]
    return torch.linalg.svdvals(subs.double()).square().reshape(w.shape[0], -1)


def layer_alpha_fits(layout: ParamLayout, flat: torch.Tensor, *, min_eigs: int = 5, min_tail: int = 5,
                     zero_tol: float = 1e-5, farms: bool = False, farms_q: float = 1.0, farms_rows: int = 0,
                     farms_windows: int = 10, spread_tol: float = SPREAD_TOL) -> tuple[np.ndarray, np.ndarray]:
    """alpha ``[P, n_weight_layers]`` of every weight matrix of every member and why it is NaN: codes
    ``[P, n_weight_layers]`` int8 into :data:`ALPHA_REASONS` (0 fitted; ``too few eigenvalues``: fewer
    than ``min_eigs`` non-zero eigenvalues, ``> zero_tol * largest``; the others from
    :func:`fit_power_law`)."""
    mats = weight_matrices(layout, flat)
    out = np.full((flat.shape[0], len(mats)), np.nan)
    reasons = np.zeros((flat.shape[0], len(mats)), dtype=np.int8)
    for layer, (_, w) in enumerate(mats):
        finite = torch.isfinite(w).flatten(1).all(dim=1)  # the SVD refuses non-finite matrices
        reasons[~finite.numpy(), layer] = ALPHA_REASONS.index("non-finite weights")
        if not finite.any():
            continue
        members = torch.nonzero(finite).flatten().tolist()
        if farms:
            eigs = farms_eigenvalues(w[finite], q=farms_q, sub_rows=farms_rows, windows=farms_windows)
        else:
            eigs = esd(w[finite])
        eigs = eigs.numpy()
        for k, p in enumerate(members):
            e = eigs[k]
            e = e[e > zero_tol * e.max()] if e.max() > 0 else e[:0]
            if len(e) < min_eigs:
                reasons[p, layer] = ALPHA_REASONS.index("too few eigenvalues")
                continue
            fit = fit_power_law(e, min_tail=min_tail, spread_tol=spread_tol)
            out[p, layer] = fit.alpha
            reasons[p, layer] = ALPHA_REASONS.index(fit.reason)
    return out, reasons


def layer_alphas(layout: ParamLayout, flat: torch.Tensor, **options) -> np.ndarray:
    """alpha of every weight matrix of every member: ``[P, n_weight_layers]``, NaN where the data cannot
    support a fit (see :func:`layer_alpha_fits`, which also says why; same options)."""
    return layer_alpha_fits(layout, flat, **options)[0]
