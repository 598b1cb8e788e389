"""Baselines that read the same data as ProbeX: Dense, StatNN (MLP head and gradient boosting) and NFN.

* :class:`DenseProbe` — a linear probe on the flattened layer matrix (the "linear classifier on a single
  layer" of Horwitz et al. 2025), with optional experts like :class:`~weightnets.probes.probex.ProbeX`.
* StatNN (Unterthiner et al. 2020, "Predicting Neural Network Accuracy from Weights", §3): 7 statistics
  (mean, variance, quantiles 0/.25/.5/.75/1) of every weight and bias tensor
  (:func:`kernels.layer_stats`, the data module's ``stats`` view) into a small MLP
  (:class:`StatMLP`) or into scikit-learn's ``HistGradientBoostingClassifier``/``Regressor``
  (:class:`BoostedTrees`; the paper used gradient-boosted trees, LightGBM).
* NFN (Zhou et al. 2023, "Permutation Equivariant Neural Functionals"): the ``nfn`` package's NP and HNP
  layers (``NPLinear``/``HNPLinear``, ``NPPool``/``HNPPool``) over the weights of an MLP or a 2-D CNN
  (:class:`NFNEncoder`, :func:`nfn_network`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
import torch.nn as nn
from sklearn.ensemble import (
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
)

from kernels import ParamLayout
from weightnets.probes.probex import per_expert, uniform_parameter
from zoo import ZooError


class DenseProbe(nn.Module):
    """Linear map of the flattened layer matrix ``[B, d_out, d_in]`` → ``[B, n_outputs]``
    (``d_out·d_in·n_outputs + n_outputs`` parameters per expert)."""

    def __init__(self, d_out: int, d_in: int, n_outputs: int, n_experts: int = 1) -> None:
        super().__init__()
        n = int(d_out) * int(d_in)
        self.shape = (int(d_out), int(d_in))
        self.weight = uniform_parameter((int(n_experts), n, int(n_outputs)), n)
        self.bias = uniform_parameter((int(n_experts), int(n_outputs)), n)

    @property
    def n_experts(self) -> int:
        return int(self.weight.shape[0])

    def forward(self, x: torch.Tensor, expert: torch.Tensor | None = None) -> torch.Tensor:
        if x.dim() != 3 or tuple(x.shape[1:]) != self.shape:
            raise ValueError(f"DenseProbe expects [B, {self.shape[0]}, {self.shape[1]}], got {list(x.shape)}")
        return torch.matmul(x.flatten(1).unsqueeze(1), per_expert(self.weight, expert)).squeeze(1) + per_expert(self.bias, expert)

    def params_per_expert(self) -> int:
        return sum(p.numel() for p in self.parameters()) // self.n_experts


class StatMLP(nn.Module):
    """StatNN's network head: features ``[B, n_features]`` → ReLU MLP (``hidden`` widths, dropout) →
    ``[B, n_outputs]``."""

    def __init__(self, n_features: int, n_outputs: int, hidden: Sequence[int] = (64, 64), dropout: float = 0.1) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = int(n_features)
        for h in hidden:
            layers += [nn.Linear(width, int(h)), nn.ReLU(), nn.Dropout(float(dropout))]
            width = int(h)
        layers.append(nn.Linear(width, int(n_outputs)))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


# ---------------------------------------------------------------------------- gradient-boosted trees
class BoostedTrees:
    """scikit-learn histogram gradient boosting for one target kind (StatNN's GBM).

    ``multilabel``: one ``HistGradientBoostingClassifier`` per label (a label constant in the training
    data predicts that constant); ``multiclass``: one classifier; ``regression``: one
    ``HistGradientBoostingRegressor`` per output. ``predict`` returns probabilities ``[N, C]`` (labels or
    classes) or values ``[N, k]``.
    """

    def __init__(self, kind: str, n_outputs: int, **params) -> None:
        self.kind = kind
        self.n_outputs = int(n_outputs)
        self.params = dict(params)
        self.models: list = []
        self.constants: dict[int, float] = {}
        self.classes: np.ndarray | None = None

    def fit(self, x: np.ndarray, y: np.ndarray) -> "BoostedTrees":
        if self.kind == "multiclass":
            self.models = [HistGradientBoostingClassifier(**self.params).fit(x, y.astype(np.int64))]
            self.classes = self.models[0].classes_
            return self
        y2 = y.reshape(len(y), -1)
        self.models, self.constants = [], {}
        for j in range(y2.shape[1]):
            col = y2[:, j]
            if self.kind == "multilabel":
                if np.unique(col).size < 2:
                    self.constants[j] = float(col[0])
                    self.models.append(None)
                    continue
                self.models.append(HistGradientBoostingClassifier(**self.params).fit(x, col.astype(np.int64)))
            else:
                self.models.append(HistGradientBoostingRegressor(**self.params).fit(x, col))
        return self

    def predict(self, x: np.ndarray) -> np.ndarray:
        if self.kind == "multiclass":
            proba = self.models[0].predict_proba(x)
            out = np.zeros((len(x), self.n_outputs))
            out[:, self.classes] = proba
            return out
        cols = []
        for j, m in enumerate(self.models):
            if m is None:
                cols.append(np.full(len(x), self.constants[j]))
            elif self.kind == "multilabel":
                cols.append(m.predict_proba(x)[:, list(m.classes_).index(1)])
            else:
                cols.append(m.predict(x))
        return np.stack(cols, axis=1)

    def n_trees(self) -> int:
        return sum(int(m.n_iter_) * int(getattr(m, "n_trees_per_iteration_", 1)) for m in self.models if m is not None)

    def max_nodes(self) -> int:
        """An upper bound on the fitted numbers (split thresholds and leaf values): ``trees · (2·leaves − 1)``
        (scikit-learn does not expose the node counts of its histogram trees)."""
        leaves = int(self.params.get("max_leaf_nodes") or 31)
        return self.n_trees() * (2 * leaves - 1)


# ---------------------------------------------------------------------------- NFN
@dataclass(frozen=True)
class NFNLayer:
    """How one layer of a layout becomes nfn's weight-space features: ``weight`` ``[out, in, *filter]`` with
    ``filter`` ``()`` (dense) or ``(h, w)`` (2-D conv; a dense layer fed by a flattened conv output is the
    ``(repeat, 1)`` filter of its input channels) and ``bias`` ``[out]``."""

    weight: str
    bias: str
    shape: tuple[int, ...]


def nfn_layers(layout: ParamLayout, arch_name: str = "") -> list[NFNLayer]:
    """The layers of ``layout`` in nfn's form, or a :class:`zoo.ZooError` naming why nfn cannot take them.

    nfn's NP/HNP layers take MLPs (dense ``[out, in]`` weights) and 2-D CNNs (``[out, in, h, w]``
    filters), each weight with a bias, chained layer to layer. 1-D convolutions ``[out, in, k]``,
    layers without a bias and parameters outside such a chain are refused.
    """
    what = f"architecture {arch_name!r}" if arch_name else "this architecture"
    entries = list(layout)
    if len(entries) % 2 or not entries:
        raise ZooError(f"NFN (nfn package) needs (weight, bias) pairs per layer; {what} has parameters "
                       f"{layout.names}")
    out: list[NFNLayer] = []
    prev_units = None
    for w, b in zip(entries[0::2], entries[1::2]):
        if len(w.shape) == 3:
            raise ZooError(f"NFN (nfn package) cannot take {what}: {w.name} is a 1-D convolution "
                           f"{list(w.shape)}; nfn's NP/HNP layers take dense [out, in] weights and 2-D "
                           "convolutions [out, in, h, w] only (use StatNN, Dense or ProbeX for 1-D CNNs)")
        if len(w.shape) not in (2, 4) or len(b.shape) != 1 or b.shape[0] != w.shape[0]:
            raise ZooError(f"NFN (nfn package) cannot take {what}: expected a weight [out, in] or [out, in, h, w] "
                           f"followed by its bias [out], got {w.name} {list(w.shape)} and {b.name} {list(b.shape)}")
        shape = tuple(w.shape)
        if len(shape) == 2 and prev_units is not None and shape[1] != prev_units:
            if shape[1] % prev_units:
                raise ZooError(f"NFN (nfn package) cannot take {what}: {w.name} has {shape[1]} inputs, not a "
                               f"multiple of the {prev_units} units of the layer before it")
            shape = (shape[0], prev_units, shape[1] // prev_units, 1)  # flattened conv output: unit-major
        elif prev_units is not None and shape[1] != prev_units:
            raise ZooError(f"NFN (nfn package) cannot take {what}: {w.name} has {shape[1]} input channels but "
                           f"the layer before it has {prev_units} outputs")
        out.append(NFNLayer(w.name, b.name, shape))
        prev_units = shape[0]
    return out


def nfn_network_spec(layers: Sequence[NFNLayer]):
    """nfn's ``NetworkSpec``: hidden dimensions are free (-1), the input of the first layer and the
    output of the last are fixed, filters are fixed."""
    from nfn.common import ArraySpec, NetworkSpec

    weights, biases = [], []
    last = len(layers) - 1
    for i, layer in enumerate(layers):
        shape = [-1, -1, *layer.shape[2:]]
        if i == 0:
            shape[1] = layer.shape[1]
        if i == last:
            shape[0] = layer.shape[0]
        weights.append(ArraySpec(tuple(shape)))
        biases.append(ArraySpec((layer.shape[0],) if i == last else (-1,)))
    return NetworkSpec(weights, biases)


def nfn_features(tensors: dict[str, torch.Tensor], layers: Sequence[NFNLayer]):
    """``{name: [B, *shape]}`` → nfn ``WeightSpaceFeatures`` with one channel: weights ``[B, 1, out, in]``
    or ``[B, 1, out, in, h, w]``, biases ``[B, 1, out]``."""
    from nfn.common import WeightSpaceFeatures

    ws, bs = [], []
    for layer in layers:
        w = tensors[layer.weight]
        ws.append(w.reshape(w.shape[0], 1, *layer.shape))
        bs.append(tensors[layer.bias].unsqueeze(1))
    return WeightSpaceFeatures(ws, bs)


class NFNEncoder(nn.Module):
    """An invariant NFN: ``depth`` equivariant layers (``NPLinear`` or ``HNPLinear``, ``channels`` wide,
    ReLU between) → invariant pooling (``NPPool``/``HNPPool``) → MLP head to ``n_outputs``.

    ``mode="np"``: every hidden, input and output neuron permutable (NP); ``"hnp"``: only hidden neurons
    (HNP, needs at least two layers). Input: nfn ``WeightSpaceFeatures`` (:func:`nfn_features`).
    Invariant to permutations of the hidden units of the network it reads (tests check it).
    """

    def __init__(self, network_spec, n_outputs: int, mode: str = "np", channels: int = 16, depth: int = 2,
                 head_hidden: int = 64, dropout: float = 0.0) -> None:
        super().__init__()
        from nfn.layers import HNPLinear, HNPPool, NPLinear, NPPool, TupleOp

        if mode not in ("np", "hnp"):
            raise ZooError(f"NFN mode must be 'np' or 'hnp', got {mode!r}")
        if mode == "hnp" and len(network_spec) < 2:
            raise ZooError("NFN mode 'hnp' needs a network of at least two layers; use mode 'np'")
        linear = NPLinear if mode == "np" else HNPLinear
        pool = NPPool if mode == "np" else HNPPool
        blocks: list[nn.Module] = []
        c_in = 1
        for _ in range(int(depth)):
            blocks += [linear(network_spec, c_in, int(channels)), TupleOp(nn.ReLU())]
            c_in = int(channels)
        self.equivariant = nn.Sequential(*blocks)
        self.pool = pool(network_spec)
        n_pooled = pool.get_num_outs(network_spec) * c_in
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(n_pooled, int(head_hidden)), nn.ReLU(),
                                  nn.Dropout(float(dropout)), nn.Linear(int(head_hidden), int(n_outputs)))

    def forward(self, wsfeat) -> torch.Tensor:
        return self.head(self.pool(self.equivariant(wsfeat)))
