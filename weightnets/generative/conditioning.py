"""What a weight generator is conditioned on: the task descriptor, a support set, the base model.

* :func:`task_descriptor` turns a derived task spec (``zoo.tasks``) into a fixed-length vector: the
  multi-hot class set (over the source task's classes), the corruption kind (one-hot, ``none`` included)
  and its level (one slot per kind).
* :class:`SupportSetEncoder` embeds ``k`` labelled examples ``(x, y)`` of the target task with a Set
  Transformer (Lee et al., ICML 2019: a self-attention block, SAB, then pooling by multi-head attention
  with a learned seed, PMA), the dataset conditioning of D2NWG (Soro et al., ICLR 2025, Sec. 3.2), so
  weights can be asked for with only ``k`` examples.
* :class:`ConditionEncoder` adds the embedding of the base model (which tree of a model-tree zoo the
  weights belong to) and implements condition dropout: a dropped task condition is replaced by a learned
  null embedding, which is what the unconditional branch of classifier-free guidance (Ho & Salimans,
  2022) evaluates. Without it guidance does nothing (D2NWG trains no dropout).

Layers are PyTorch's (``nn.TransformerEncoderLayer``, ``nn.MultiheadAttention``).
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from zoo import ZooError
from zoo.tasks import CORRUPTION_KINDS

#: The modes a generator can be conditioned in.
CONDITIONINGS = ("descriptor", "support", "none")

#: Corruption kinds in descriptor order (``none`` first).
KINDS = ("none", *CORRUPTION_KINDS)


def descriptor_dim(n_classes: int) -> int:
    """Length of :func:`task_descriptor`: ``n_classes`` + kinds (with ``none``) + one level slot per kind."""
    return int(n_classes) + len(KINDS) + len(CORRUPTION_KINDS)


def level_feature(kind: str, level: float) -> float:
    """The number a corruption level is encoded as: the noise standard deviation as is, a shift in
    tenths of positions, the logarithm of a scale factor."""
    if kind == "noise":
        return float(level)
    if kind == "shift":
        return float(level) / 10.0
    if kind == "scale":
        return math.log(float(level))
    raise ZooError(f"unknown corruption kind {kind!r}; choose from {list(CORRUPTION_KINDS)}")


def task_classes(spec: Mapping, class_ids: Sequence[int]) -> list[int]:
    """The original class ids a task trains on: its ``class_subset``, else its ``classes``, else all of
    ``class_ids``. Raises :class:`zoo.ZooError` naming the ids that are not among ``class_ids`` (the
    source task's classes)."""
    classes = spec.get("class_subset") or spec.get("classes") or list(class_ids)
    outside = sorted(int(c) for c in classes if int(c) not in set(int(i) for i in class_ids))
    if outside:
        raise ZooError(f"task {dict(spec)}: class ids {outside} are outside the source task's classes "
                       f"{[int(c) for c in class_ids]}")
    return [int(c) for c in classes]


def task_descriptor(spec: Mapping, class_ids: Sequence[int]) -> torch.Tensor:
    """``[descriptor_dim(len(class_ids))]`` float32 descriptor of a task spec (canonical or not).

    Layout: multi-hot over ``class_ids`` (the classes the task keeps), one-hot over :data:`KINDS`, then
    one level slot per corruption kind (:func:`level_feature`, zero unless that kind is the task's).
    Raises :class:`zoo.ZooError` for class ids outside ``class_ids`` and for label permutations, which
    the descriptor cannot express.
    """
    if spec.get("label_permutation") is not None:
        raise ZooError(f"task {dict(spec)}: the task descriptor has no slot for a label permutation; train the "
                       "generator on the families class_subset and corruption")
    ids = [int(c) for c in class_ids]
    out = torch.zeros(descriptor_dim(len(ids)))
    for c in task_classes(spec, ids):
        out[ids.index(c)] = 1.0
    corruption = spec.get("corruption") or None
    kind = corruption["kind"] if corruption else "none"
    if kind not in KINDS:
        raise ZooError(f"task {dict(spec)}: unknown corruption kind {kind!r}; choose from {list(CORRUPTION_KINDS)}")
    out[len(ids) + KINDS.index(kind)] = 1.0
    if corruption:
        out[len(ids) + len(KINDS) + KINDS.index(kind) - 1] = level_feature(kind, corruption["level"])
    return out


def mlp(d_in: int, d_hidden: int, d_out: int) -> nn.Sequential:
    """Two-layer perceptron with a SiLU."""
    return nn.Sequential(nn.Linear(d_in, d_hidden), nn.SiLU(), nn.Linear(d_hidden, d_out))


class SupportSetEncoder(nn.Module):
    """Permutation-invariant embedding ``[B, cond_dim]`` of support sets ``x [B, k, *input_shape]``,
    ``y [B, k]`` (int64 labels in ``0..n_classes-1``).

    Each example becomes ``phi([x, onehot(y)])``; one self-attention block (SAB) lets examples see each
    other; pooling by multi-head attention with a learned seed query (PMA) gives one vector per set
    (Set Transformer, Lee et al. 2019, Sec. 3; used for dataset conditioning in D2NWG, Soro et al. 2025).
    The set's label frequencies (the mean one-hot label, itself permutation-invariant) join the pooled
    vector before the output layer: without this shortcut the attention path had to discover from
    scratch which classes occur, and a class-subset generator conditioned on 16 examples reached only
    about 80 % of the descriptor-conditioned one's accuracy on held-out tasks (docs/GENERATE.md).
    """

    def __init__(self, in_features: int, n_classes: int, cond_dim: int, d_model: int = 64, n_heads: int = 4) -> None:
        super().__init__()
        self.in_features = int(in_features)
        self.n_classes = int(n_classes)
        self.phi = mlp(self.in_features + self.n_classes, d_model, d_model)
        self.sab = nn.TransformerEncoderLayer(d_model, n_heads, dim_feedforward=2 * d_model, dropout=0.0,
                                              batch_first=True)
        self.seed = nn.Parameter(torch.randn(1, 1, d_model) / math.sqrt(d_model))
        self.pma = nn.MultiheadAttention(d_model, n_heads, batch_first=True)
        self.out = nn.Linear(d_model + self.n_classes, cond_dim)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        b, k = y.shape
        onehot = F.one_hot(y, self.n_classes).float()
        h = self.sab(self.phi(torch.cat([x.reshape(b, k, -1).float(), onehot], dim=-1)))
        pooled, _ = self.pma(self.seed.expand(b, -1, -1), h, h, need_weights=False)
        return self.out(torch.cat([pooled[:, 0], onehot.mean(1)], dim=-1))


class ConditionEncoder(nn.Module):
    """The condition vector ``[B, cond_dim]`` of a batch: base embedding + task embedding.

    Args:
        mode: ``descriptor`` (task descriptors ``[B, descriptor_dim]``), ``support`` (support sets) or
            ``none`` (unconditional on the task: p-diff).
        n_bases: bases the weights can belong to (0: no base, e.g. a phase-grid zoo).
        n_classes, in_features: label space and flattened input size (descriptor and support modes).
        cond_dim, hidden: widths.

    The task part of rows whose ``keep`` is False is the learned ``null`` vector (condition dropout in
    training, the unconditional branch of guidance at sampling); the base part is always present.
    """

    def __init__(self, mode: str, n_bases: int, n_classes: int, in_features: int, cond_dim: int = 128,
                 hidden: int = 128) -> None:
        super().__init__()
        if mode not in CONDITIONINGS:
            raise ZooError(f"unknown conditioning {mode!r}; choose from {list(CONDITIONINGS)}")
        self.mode = mode
        self.n_bases = int(n_bases)
        self.cond_dim = int(cond_dim)
        self.base = nn.Embedding(self.n_bases, cond_dim) if self.n_bases > 0 else None
        self.null = nn.Parameter(torch.zeros(cond_dim))
        if mode == "descriptor":
            self.task: nn.Module | None = mlp(descriptor_dim(n_classes), hidden, cond_dim)
        elif mode == "support":
            self.task = SupportSetEncoder(in_features, n_classes, cond_dim, d_model=hidden // 2)
        else:
            self.task = None

    def forward(self, batch_size: int, *, base: torch.Tensor | None = None, descriptor: torch.Tensor | None = None,
                support_x: torch.Tensor | None = None, support_y: torch.Tensor | None = None,
                keep: torch.Tensor | None = None) -> torch.Tensor:
        """``keep [B]`` bool: rows whose task condition is used (None: all rows, unless ``mode`` is none)."""
        null = self.null.expand(batch_size, -1)
        if self.task is None or (keep is not None and not bool(keep.any())):
            cond = null
        else:
            if self.mode == "descriptor":
                if descriptor is None:
                    raise ZooError("this generator is conditioned on task descriptors; none was given")
                task = self.task(descriptor)
            else:
                if support_x is None or support_y is None:
                    raise ZooError("this generator is conditioned on support sets; none was given (--support k)")
                task = self.task(support_x, support_y)
            cond = task if keep is None else torch.where(keep[:, None], task, null)
        if self.base is not None:
            if base is None:
                raise ZooError(f"this generator needs the base model (one of {self.n_bases}) of every sample")
            cond = cond + self.base(base)
        return cond
