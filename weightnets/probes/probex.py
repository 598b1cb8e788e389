"""ProbeX: Probing Experts (Horwitz, Cavia, Kahana & Hoshen, "Learning on Model Weights using Tree Experts",
CVPR 2025, the method section and Fig. 5), written from the paper's description.

ProbeX reads one layer's weight matrix ``X`` ``[d_out, d_in]`` (:func:`weightnets.views.layer_matrix`: conv
weights as ``[d_out, c_in * k]``, the bias as a last column):

1. ``r_U`` learned probes ``u_l`` ``[d_in]`` pass through the layer: responses ``X u_l`` ``[d_out]``;
2. a projection ``V`` ``[d_out, d_V]`` shared by all probes reduces each response, then a ReLU:
   ``h_l = ReLU(Vᵀ X u_l)`` ``[d_V]``;
3. a per-probe encoder ``M_l`` ``[d_V, r_T]`` maps each to a probe encoding, summed over probes into the
   model encoding ``e = Σ_l M_lᵀ h_l + c`` ``[r_T]`` (one linear map of the concatenated ``h``);
4. a linear head maps ``e`` to the outputs (logits, or regressed values).

Trained parameters: ``d_in·r_U + d_out·d_V + r_U·d_V·r_T + r_T + (r_T + 1)·n_outputs`` per expert, far
fewer than a dense linear probe's ``d_out·d_in·n_outputs`` once the layer is large.

**Experts.** With ``n_experts = G`` the module holds G independent ProbeX (one per model tree) as stacked
parameters ``[G, ...]``; ``forward(x, expert)`` runs each model through the expert its index names, all
in one batched computation (:class:`weightnets.probes.router.TreeRouter` chooses the index of an unseen
model).
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F


def uniform_parameter(shape: tuple[int, ...], fan_in: int) -> nn.Parameter:
    """``nn.Linear``'s default initialisation: U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
    bound = 1.0 / math.sqrt(max(fan_in, 1))
    return nn.Parameter(torch.empty(shape).uniform_(-bound, bound))


def per_expert(param: torch.Tensor, expert: torch.Tensor | None) -> torch.Tensor:
    """``param [G, ...]`` for each model: ``[B, ...]`` gathered by ``expert [B]``, or ``[1, ...]`` (G = 1)."""
    if expert is None or param.shape[0] == 1:
        return param[:1]
    return param.index_select(0, expert)


class ProbeX(nn.Module):
    """ProbeX encoder and head for one layer (module docstring), with ``n_experts`` independent copies.

    Args:
        d_out, d_in: the layer matrix's shape ``[d_out, d_in]``.
        n_outputs: outputs of the head.
        r_u: number of probes ``r_U``. d_v: width ``d_V`` of the shared projection. r_t: encoding size ``r_T``.
        n_experts: independent experts (1: one ProbeX).
        dropout: dropout on the model encoding during training.

    ``forward(x [B, d_out, d_in] float32, expert [B] int64 or None) -> [B, n_outputs]``.
    """

    def __init__(self, d_out: int, d_in: int, n_outputs: int, r_u: int = 16, d_v: int = 16, r_t: int = 32,
                 n_experts: int = 1, dropout: float = 0.0) -> None:
        super().__init__()
        for name, value in (("d_out", d_out), ("d_in", d_in), ("n_outputs", n_outputs), ("r_u", r_u), ("d_v", d_v),
                            ("r_t", r_t), ("n_experts", n_experts)):
            if int(value) < 1:
                raise ValueError(f"ProbeX: {name} must be >= 1, got {value}")
        g = int(n_experts)
        self.shape = (int(d_out), int(d_in))
        self.probes = uniform_parameter((g, d_in, r_u), d_in)          # u_1..u_rU as columns
        self.projection = uniform_parameter((g, d_out, d_v), d_out)    # V, shared by the probes
        self.encoder = uniform_parameter((g, r_u * d_v, r_t), r_u * d_v)  # M_1..M_rU stacked
        self.encoder_bias = uniform_parameter((g, r_t), r_u * d_v)
        self.head = uniform_parameter((g, r_t, n_outputs), r_t)
        self.head_bias = uniform_parameter((g, n_outputs), r_t)
        self.dropout = float(dropout)

    @property
    def n_experts(self) -> int:
        return int(self.probes.shape[0])

    def encode(self, x: torch.Tensor, expert: torch.Tensor | None = None) -> torch.Tensor:
        """The model encodings ``e`` ``[B, r_T]``."""
        if x.dim() != 3 or tuple(x.shape[1:]) != self.shape:
            raise ValueError(f"ProbeX expects layer matrices [B, {self.shape[0]}, {self.shape[1]}], got {list(x.shape)}")
        responses = torch.matmul(x, per_expert(self.probes, expert))                 # [B, d_out, r_U]
        h = F.relu(torch.matmul(responses.transpose(1, 2), per_expert(self.projection, expert)))  # [B, r_U, d_V]
        e = torch.matmul(h.flatten(1).unsqueeze(1), per_expert(self.encoder, expert)).squeeze(1)
        return e + per_expert(self.encoder_bias, expert)

    def forward(self, x: torch.Tensor, expert: torch.Tensor | None = None) -> torch.Tensor:
        e = F.dropout(self.encode(x, expert), self.dropout, self.training)
        return torch.matmul(e.unsqueeze(1), per_expert(self.head, expert)).squeeze(1) + per_expert(self.head_bias, expert)

    def params_per_expert(self) -> int:
        return sum(p.numel() for p in self.parameters()) // self.n_experts
