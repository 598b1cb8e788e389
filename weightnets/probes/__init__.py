"""Learners that read weights: ProbeX with tree experts, and the Dense, StatNN and NFN baselines.

* :mod:`weightnets.probes.probex` — the ProbeX encoder (Horwitz et al. 2025), with stacked experts.
* :mod:`weightnets.probes.router` — the tree router (nearest tree centroid).
* :mod:`weightnets.probes.baselines` — Dense probe, StatNN heads (MLP, gradient-boosted trees), NFN.
* :mod:`weightnets.probes.module` — the Lightning modules ``weightzoo fit`` trains.
"""

from __future__ import annotations

from weightnets.probes.baselines import (
           BoostedTrees,
           DenseProbe,
           NFNEncoder,
           StatMLP,
           nfn_layers,
)
from weightnets.probes.module import (
           NFN,
           LayerProbe,
           StatNN,
           StatNNBoosting,
           WeightLearner,
)
from weightnets.probes.probex import ProbeX
from weightnets.probes.router import TreeRouter

__all__ = ["BoostedTrees", "DenseProbe", "LayerProbe", "NFN", "NFNEncoder", "ProbeX", "StatMLP", "StatNN",
           "StatNNBoosting", "TreeRouter", "WeightLearner", "nfn_layers"]
