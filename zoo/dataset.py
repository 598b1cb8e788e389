"""Torch datasets over a zoo: one item per model, read chunk by chunk from the store.

Relies on PyTorch (``torch.utils.data``) and Zarr. Normalisation statistics come from the train part of
the split only and are stored in the zoo's attributes (when it is open for writing) so every user of a
split sees the same statistics.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from zoo.errors import ZooError
from zoo.format import STATUS_CODES, STATUS_NAMES
from zoo.normalization import NormStats, compute_norm_stats, normalize
from zoo.store import Zoo
from zoo.tokens import token_map, tokenize

VIEWS = ("flat", "layers", "tokens")


def norm_stats(z: Zoo, arch_key: str, checkpoint: int = -1, split_name: str = "default",
               batch_size: int = 64) -> NormStats:
    """Per-parameter-tensor mean/std of ``arch_key``'s weights over the *train* models of ``split_name``.

    Read from the zoo's attributes when stored; otherwise computed by streaming over the train models
    (``batch_size`` at a time) and stored if the zoo is writable.
    """
    c = z.checkpoint_index(checkpoint)
    key = f"{split_name}/{arch_key}/{c}"
    stored = z.meta.get("normalization", {}).get(key)
    if stored is not None:
        return NormStats.from_record(stored)
    planned = z.planned
    train = set(z.split_ids("train", split_name).tolist())
    ok = z.status_codes() == STATUS_CODES["ok"]
    sel = planned[(planned["arch_key"] == arch_key) & planned["model_id"].isin(train) & ok]
    if sel.empty:
        raise ZooError(f"{z.path}: split {split_name!r} has no complete train models of {arch_key!r}")
    rows = sel["arch_row"].to_numpy()
    layout = z.layout(arch_key)
    batches = (z.read_rows(arch_key, rows[i:i + batch_size], c) for i in range(0, len(rows), batch_size))
    stats = compute_norm_stats(batches, layout)
    if z.writable:
        norm = dict(z.meta.get("normalization", {}))
        norm[key] = {**stats.to_record(), "n_models": int(len(rows)), "checkpoint_epoch": z.checkpoint_epochs[c]}
        z.update_meta(normalization=norm)
    return stats


class ZooDataset(Dataset):
    """Models of one split as training examples.

    Args:
        z: an open :class:`~zoo.store.Zoo`.
        split: ``"train"``, ``"val"``, ``"test"`` or ``"all"``.
        checkpoint: checkpoint index (negative from the end), or ``epoch=`` for an epoch.
        target: a models-table column (``"test_acc"``, ``"grid_load"``...), a list of columns, or None.
        view: ``"flat"`` → ``[n_params]``; ``"layers"`` → ``{name: [*shape]}``; ``"tokens"`` →
            ``{"tokens": [n_tokens, token_dim], "mask": [n_tokens, token_dim], "positions": [n_tokens, 3]}``.
        transform: applied to the flat vector ``[n_params]`` (after normalisation), e.g.
            :class:`zoo.augment.PermutationAugment`.
        normalize: standardise each parameter tensor with train-split statistics (:func:`norm_stats`).
        split_name: which stored split (``"default"``, ``"by_cell"``, ``"ood_cells"``...).
        arch: architecture key; required when the split holds several architectures.
        include_diverged: keep models with status ``diverged`` (they may hold NaN); default False.
        ids: keep only these model ids (e.g. a selection of the models table); None keeps every model.

    Items are ``(x, y)`` with ``y`` a float32 tensor (``[]`` for one column, ``[k]`` for k) or, without a
    target, the model id. Each item reads one ``[n_params]`` chunk: memory does not grow with the zoo.
    """

    def __init__(self, z: Zoo, split: str = "train", checkpoint: int = -1, target: str | Sequence[str] | None = "test_acc",
                 view: str = "flat", transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
                 normalize: bool = False, split_name: str = "default", arch: str | None = None,
                 include_diverged: bool = False, epoch: int | None = None, token_dim: int | None = None,
                 ids: Sequence[int] | None = None) -> None:
        if view not in VIEWS:
            raise ZooError(f"view must be one of {list(VIEWS)}, got {view!r}")
        self.z = z
        self.view = view
        self.transform = transform
        self.checkpoint = z.checkpoint_index(checkpoint, epoch)
        if target is None:  # no targets: the planned table and the status suffice (no metrics or records read)
            models = z.planned.assign(status=[STATUS_NAMES.get(int(c), "unknown") for c in z.status_codes()])
        else:
            models = z.models
        keep = models["status"].isin(["ok", "diverged"] if include_diverged else ["ok"])
        if split != "all":
            keep &= models["model_id"].isin(set(z.split_ids(split, split_name).tolist()))
        if ids is not None:
            keep &= models["model_id"].isin(set(int(i) for i in ids))
        models = models[keep]
        archs = sorted(models["arch_key"].unique())
        if arch is None:
            if len(archs) > 1:
                raise ZooError(f"{z.path}: split {split!r} holds several architectures {archs}; pass arch=")
            arch = archs[0] if archs else next(iter(z.architectures))
        elif arch not in z.architectures:
            raise ZooError(f"{z.path}: no architecture {arch!r} (has {sorted(z.architectures)})")
        models = models[models["arch_key"] == arch].sort_values("model_id")
        self.arch = arch
        self.layout = z.layout(arch)
        self.model_ids = models["model_id"].to_numpy(dtype=np.int64)
        self.rows = models["arch_row"].to_numpy(dtype=np.int64)
        self.targets = self._targets(models, target)
        self.stats = norm_stats(z, arch, self.checkpoint, split_name) if normalize else None
        self.tmap = token_map(self.layout, token_dim) if view == "tokens" else None

    @staticmethod
    def _targets(models, target) -> torch.Tensor | None:
        if target is None:
            return None
        cols = [target] if isinstance(target, str) else list(target)
        missing = [c for c in cols if c not in models.columns]
        if missing:
            raise ZooError(f"target column(s) {missing} not in the models table (columns: {list(models.columns)})")
        values = models[cols].to_numpy(dtype=np.float32)
        return torch.from_numpy(np.array(values[:, 0] if isinstance(target, str) else values))

    def __len__(self) -> int:
        return len(self.model_ids)

    def flat(self, index: int) -> torch.Tensor:
        """Weights ``[n_params]`` of item ``index``, normalised if asked (no transform)."""
        w = self.z.read_rows(self.arch, [int(self.rows[index])], self.checkpoint)[0]
        if self.stats is not None:
            w = normalize(w, self.stats, self.layout)
        return w

    def __getitem__(self, index: int) -> tuple[Any, Any]:
        w = self.z.read_rows(self.arch, [int(self.rows[index])], self.checkpoint)[0]
        return self.examples(w, int(index))

    def examples(self, weights: torch.Tensor, positions: int | np.ndarray) -> tuple[Any, Any]:
        """``(x, y)`` of the items at dataset ``positions`` from their stored weights: normalised (if asked),
        transformed, in the dataset's view, with their targets.

        ``weights [n_params]`` with one position (an int) gives one item, as ``dataset[position]``;
        ``weights [B, n_params]`` with positions ``[B]`` gives a batch (``x`` with a leading ``B``: the token
        view's ``mask`` and ``positions`` are broadcast views; ``y`` ``[B]`` / ``[B, k]`` targets, or model
        ids ``[B]`` without a target). A batch goes through the transform in one call.
        """
        w = weights
        if self.stats is not None:
            w = normalize(w, self.stats, self.layout)
        if self.transform is not None:
            w = self.transform(w)
        lead = tuple(w.shape[:-1])
        if self.view == "layers":
            x: Any = {k: v.clone() for k, v in self.layout.unflatten(w).items()}
        elif self.view == "tokens":
            x = {"tokens": tokenize(w, self.tmap), "mask": self.tmap.mask.expand(*lead, *self.tmap.mask.shape),
                 "positions": self.tmap.positions.expand(*lead, *self.tmap.positions.shape)}
        else:
            x = w
        if np.ndim(positions) == 0:
            y = self.targets[int(positions)] if self.targets is not None else int(self.model_ids[int(positions)])
        else:
            positions = np.asarray(positions, dtype=np.int64)
            y = (self.targets[torch.from_numpy(positions)] if self.targets is not None
                 else torch.from_numpy(self.model_ids[positions]))
        return x, y
