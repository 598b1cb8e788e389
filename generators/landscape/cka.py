"""Linear CKA (Kornblith et al. 2019) between the representations of two models on the same inputs.

For representations ``X [n, c]`` and ``Y [n, d]`` of the same ``n`` samples, with column-centred
``Xc``, ``Yc`` (equivalently centred Gram matrices ``K = Xc Xc^T``, ``L = Yc Yc^T``)::

    CKA(X, Y) = ||Yc^T Xc||_F^2 / (||Xc^T Xc||_F * ||Yc^T Yc||_F) = HSIC(K, L) / sqrt(HSIC(K, K) HSIC(L, L))

It is 1 for representations equal up to an orthogonal map and isotropic scaling, and in [0, 1].
Here the representations are the logits of two seeds on one fixed held-out batch (Yang et al. 2021).
"""

from __future__ import annotations

import numpy as np
import torch

#: A representation whose centred values are at most this fraction of its values (float32 rounding
#: noise) is constant over the samples: it has no similarity structure, so its CKA is NaN.
CONSTANT_TOL = 1e-6


def linear_cka(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Linear CKA of ``x [..., n, c]`` and ``y [..., n, d]`` (batched over leading axes): ``[...]``.
    Computed in float64; NaN where a representation is constant over the samples (its centred values
    at most :data:`CONSTANT_TOL` of its values: what is left is rounding noise, whose CKA would be a
    number in [0, 1] that measures nothing)."""
    constant = torch.zeros(x.shape[:-2], dtype=torch.bool)
    centred = []
    for r in (x.double(), y.double()):
        c = r - r.mean(dim=-2, keepdim=True)
        constant |= torch.linalg.matrix_norm(c) <= CONSTANT_TOL * torch.linalg.matrix_norm(r)
        centred.append(c)
    x, y = centred
    cross = torch.linalg.matrix_norm(y.transpose(-1, -2) @ x) ** 2
    norm_x = torch.linalg.matrix_norm(x.transpose(-1, -2) @ x)
    norm_y = torch.linalg.matrix_norm(y.transpose(-1, -2) @ y)
    denom = norm_x * norm_y
    ok = (denom > 0) & ~constant
    return torch.where(ok, cross / denom.clamp_min(1e-300), torch.full_like(denom, float("nan")))


def pair_cka(logits: torch.Tensor, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """CKA of the pairs ``(a[i], b[i])`` (row indices into ``logits [P, n, C]``): ``[n_pairs]``."""
    ia, ib = torch.as_tensor(a, dtype=torch.long), torch.as_tensor(b, dtype=torch.long)
    return linear_cka(logits[ia], logits[ib]).numpy()
