"""Baselines a weight generator must beat, on the same vectors (task vectors or weights) it learns from.

All of them see only training models. Per base (model tree) they are:

* :func:`nearest_seen` — the training child of the nearest seen task: smallest Hamming distance between
  class sets (ties: closest class count, then lowest row);
* :func:`noisy_copies` — that child plus Gaussian noise with a per-coordinate scale (the zoo's standard
  deviation across training models times a factor): the "noise-added copies" that Zeng et al. (2025,
  "Generative Modeling of Weights: Generalization or Memorization?") find such generators do not beat;
* :class:`PerCoordinateGaussian` — independent Gaussians per coordinate fitted to the training models;
* :class:`LatentKDE` — SANE-style sampling (Schürholt et al. 2024, Sec. 3.3): a Gaussian kernel density
  estimate over autoencoder latents of anchor models (here: the children of the nearest seen tasks),
  bandwidth by Scott's rule per latent dimension, decoded by the autoencoder;
* :class:`TaskRegressor` — a deterministic regressor from the task descriptor (per base) to the vector:
  ridge regression (scikit-learn ``Ridge``) on the descriptor's interaction with the base one-hot, its
  regularisation chosen on validation models' mean squared error.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from zoo import ZooError


def hamming(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Hamming distances ``[n_a, n_b]`` (int) between multi-hot rows ``a [n_a, C]`` and ``b [n_b, C]`` (bool)."""
    a, b = np.asarray(a, dtype=bool), np.asarray(b, dtype=bool)
    return (a[:, None, :] != b[None, :, :]).sum(-1)


def nearest_seen(train_classes: np.ndarray, query: np.ndarray, k: int = 1) -> np.ndarray:
    """Rows ``[k]`` of ``train_classes [R, C]`` (bool) nearest to ``query [C]``: Hamming distance, then
    difference in class count, then row index."""
    if len(train_classes) == 0:
        raise ZooError("nearest_seen: no training models to choose from")
    train_classes = np.asarray(train_classes, dtype=bool)
    d = hamming(query[None], train_classes)[0]
    size = np.abs(train_classes.sum(1) - np.asarray(query, dtype=bool).sum())
    order = np.lexsort((np.arange(len(d)), size, d))
    return order[:k]


def noisy_copies(vector: torch.Tensor, std: torch.Tensor, n: int, scale: float = 1.0,
                 generator: torch.Generator | None = None) -> torch.Tensor:
    """``n`` copies ``[n, P]`` of ``vector [P]`` plus Gaussian noise of standard deviation ``scale * std [P]``."""
    noise = torch.randn(n, vector.numel(), generator=generator)
    return vector[None] + scale * std[None] * noise


class PerCoordinateGaussian:
    """Independent Gaussian per coordinate: mean and (population) standard deviation of ``vectors [R, P]``."""

    def __init__(self, vectors: torch.Tensor) -> None:
        if len(vectors) < 2:
            raise ZooError("PerCoordinateGaussian needs at least two models")
        self.mean = vectors.mean(0)
        self.std = vectors.std(0, unbiased=False)

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``[n, P]`` samples."""
        return noisy_copies(self.mean, self.std, n, 1.0, generator)


class LatentKDE:
    """Gaussian KDE over anchor latents ``[A, L]``: a sample is a random anchor plus ``N(0, diag(h² σ²))``
    with ``σ`` the anchors' per-dimension standard deviation (the training latents' when there are fewer
    than two anchors, passed as ``fallback_std``) and Scott's factor ``h = A^(-1/(L+4))``."""

    def __init__(self, anchors: torch.Tensor, fallback_std: torch.Tensor | None = None) -> None:
        if len(anchors) == 0:
            raise ZooError("LatentKDE needs at least one anchor")
        self.anchors = anchors
        a, dim = anchors.shape
        if a >= 2:
            std = anchors.std(0)
        elif fallback_std is not None:
            std = fallback_std
        else:
            raise ZooError("LatentKDE with one anchor needs fallback_std")
        self.bandwidth = std * a ** (-1.0 / (dim + 4))

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        idx = torch.randint(len(self.anchors), (n,), generator=generator)
        return self.anchors[idx] + self.bandwidth * torch.randn(n, self.anchors.shape[1], generator=generator)


class TaskRegressor:
    """Ridge regression from ``[descriptor ⊗ onehot(base), onehot(base)]`` to vectors ``[P]``.

    ``fit`` takes training rows and validation rows; ``alpha`` is the value of ``alphas`` with the lowest
    validation mean squared error (scikit-learn ``Ridge``; features as described above, so every base
    gets its own linear map and intercept).
    """

    def __init__(self, n_bases: int, alphas: Sequence[float] = (0.01, 0.1, 1.0, 10.0, 100.0)) -> None:
        self.n_bases = max(int(n_bases), 1)
        self.alphas = list(alphas)
        self.alpha: float | None = None
        self.model = None

    def features(self, descriptors: torch.Tensor, base: torch.Tensor) -> np.ndarray:
        d = np.asarray(descriptors, dtype=np.float64)
        onehot = np.eye(self.n_bases)[np.asarray(base, dtype=np.int64)]
        return np.concatenate([(d[:, None, :] * onehot[:, :, None]).reshape(len(d), -1), onehot], axis=1)

    def fit(self, descriptors: torch.Tensor, base: torch.Tensor, vectors: torch.Tensor, val_descriptors: torch.Tensor,
            val_base: torch.Tensor, val_vectors: torch.Tensor) -> "TaskRegressor":
        from sklearn.linear_model import Ridge

        x, y = self.features(descriptors, base), vectors.double().numpy()
        xv, yv = self.features(val_descriptors, val_base), val_vectors.double().numpy()
        best = None
        for alpha in self.alphas:
            model = Ridge(alpha=alpha).fit(x, y)
            err = float(np.mean((model.predict(xv) - yv) ** 2))
            if best is None or err < best[0]:
                best = (err, alpha, model)
        _, self.alpha, self.model = best
        return self

    def predict(self, descriptors: torch.Tensor, base: torch.Tensor) -> torch.Tensor:
        """``[B, P]`` float32 predicted vectors."""
        if self.model is None:
            raise ZooError("TaskRegressor.predict before fit")
        return torch.from_numpy(self.model.predict(self.features(descriptors, base))).float()


def nearest_distances(samples: torch.Tensor, train: torch.Tensor, chunk: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """L2 distance ``[S]`` of every sample ``[S, P]`` to its nearest training model ``[R, P]`` and that
    model's row ``[S]``."""
    dists, rows = [], []
    t = train.double()
    for i in range(0, len(samples), chunk):
        d = torch.cdist(samples[i:i + chunk].double(), t)
        m = d.min(1)
        dists.append(m.values.numpy())
        rows.append(m.indices.numpy())
    return np.concatenate(dists), np.concatenate(rows)


def leave_one_out_distances(train: torch.Tensor) -> np.ndarray:
    """Distance ``[R]`` of every training model to its nearest *other* training model."""
    d = torch.cdist(train.double(), train.double())
    d.fill_diagonal_(float("inf"))
    return d.min(1).values.numpy()


def wrong_agreement(pred: np.ndarray, other: np.ndarray, y: np.ndarray) -> float:
    """Among the examples ``pred`` gets wrong, the fraction where ``other`` predicts the same wrong label
    (NaN when ``pred`` makes no mistakes). ``pred``, ``other``, ``y``: ``[n]`` int labels (or ``[S, n]``
    with ``y [n]``, pooled)."""
    pred, other = np.asarray(pred), np.asarray(other)
    wrong = pred != np.asarray(y)
    if not wrong.any():
        return float("nan")
    return float((pred[wrong] == other[wrong]).mean())
