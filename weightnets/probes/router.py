"""The tree router: assigns a model to its model tree from its weights alone (nearest tree centroid).

ProbeX's tree experts (Horwitz et al. 2025) train one expert per model tree, so an unseen model needs
its tree; the paper's released code has no router. Models fine-tuned from one base stay close to it and
far from other bases, so :class:`TreeRouter` is a nearest-centroid classifier fitted on the training
models only (this project's design, not the paper's):
the centroid of each tree is the mean of its training models' (normalised) layer matrices, and a model
goes to the tree whose centroid is nearest in Euclidean distance. The centroids are also the experts'
centring: each expert sees ``x - centroid[tree]``, the model's deviation from its tree.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from zoo import ZooError


class TreeRouter(nn.Module):
    """Nearest-centroid assignment of layer matrices ``[B, *shape]`` to ``n_groups`` trees.

    Fit by streaming: :meth:`accumulate` per training batch, then :meth:`finish`. The centroids
    ``[n_groups, *shape]`` are buffers (saved in checkpoints), not trained parameters.
    """

    def __init__(self, n_groups: int, shape: tuple[int, ...]) -> None:
        super().__init__()
        if n_groups < 1:
            raise ValueError(f"TreeRouter needs at least one group, got {n_groups}")
        self.register_buffer("centroids", torch.zeros(n_groups, *shape))
        self.register_buffer("counts", torch.zeros(n_groups, dtype=torch.int64))
        self.register_buffer("fitted", torch.zeros((), dtype=torch.bool))
        self._sums = torch.zeros(n_groups, *shape, dtype=torch.float64)

    @property
    def n_groups(self) -> int:
        return int(self.centroids.shape[0])

    def accumulate(self, x: torch.Tensor, group: torch.Tensor) -> None:
        """Add training matrices ``x [B, *shape]`` of trees ``group [B]`` (int64; all groups 0 when G = 1)."""
        g = group.clamp_min(0) if self.n_groups > 1 else torch.zeros_like(group)
        self._sums = self._sums.to(x.device)
        self._sums.index_add_(0, g, x.detach().double())
        self.counts.index_add_(0, g, torch.ones_like(g))

    def finish(self, names: list[str] | None = None) -> None:
        """Turn the sums into centroids. Raises ZooError when a tree has no training model."""
        empty = (self.counts == 0).nonzero().flatten().tolist()
        if empty:
            which = [names[i] for i in empty] if names else empty
            raise ZooError(f"tree(s) {which} have no training models, so neither an expert nor the router can "
                           "learn them; select models of trees present in the train split")
        shape = (-1,) + (1,) * (self._sums.dim() - 1)
        self.centroids.copy_((self._sums / self.counts.reshape(shape).double()).to(self.centroids.dtype))
        self.fitted.fill_(True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The nearest tree of each model: ``[B]`` int64."""
        if self.n_groups == 1:
            return torch.zeros(x.shape[0], dtype=torch.int64, device=x.device)
        d = torch.cdist(x.flatten(1).float(), self.centroids.flatten(1).float())
        return d.argmin(dim=1)

    def center(self, x: torch.Tensor, group: torch.Tensor) -> torch.Tensor:
        """``x - centroid[group]`` (the model's deviation from its tree's mean)."""
        idx = group.clamp_min(0) if self.n_groups > 1 else torch.zeros_like(group)
        return x - self.centroids.index_select(0, idx)
