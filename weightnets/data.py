"""``ZooDataModule``: a zoo as a ``LightningDataModule`` for every learner that reads weights.

One data module serves ProbeX, Dense, StatNN, NFN and any later learner: it opens a store (a path, a URL or
a catalog name through :func:`zoo.load`), keeps the ``ok`` models a pandas query selects, splits them by
a split stored in the zoo, reads the weights of one or several checkpoints, builds the targets and serves
batches in the learner's *view*, streamed through :class:`zoo.ZooBatchLoader` (blocks of models per read,
shuffled in a bounded buffer), or read once and served from memory with ``cache=True``. Relies on Lightning (``LightningDataModule``), pandas (``select``) and
:mod:`zoo` / :mod:`kernels` (datasets, normalisation, permutation augmentation, StatNN statistics).

**Targets** (``target``): any column of the models table (a number: regression; text, a category or a
bool: classes); ``classes``, the multi-hot class columns of a model-tree zoo (:func:`zoo.class_multi_hot`,
multi-label); a per-checkpoint metric such as ``test_acc`` (read at the checkpoint of each example);
``phase`` (the phase labels); a landscape metric (a column, or a vector-valued one). A list of columns
gives several outputs. Examples whose target is missing (NaN, no phase label) are left out and counted.

**Views** (``view``):

============  ===============================================================================
``flat``      ``[B, n_params]`` float32, every parameter in layout order
``layers``    ``{parameter name: [B, *shape]}``; architectures may differ between batches
``stats``     ``[B, n_tensors, 7]``: StatNN statistics of every weight and bias tensor
              (:func:`kernels.layer_stats`: mean, var, q0, q25, q50, q75, q100) of the raw weights
a layer name  ``[B, d_out, columns]``: one layer as a matrix (:func:`weightnets.views.layer_matrix`:
              conv weights ``[out, in, k]`` as ``[out, in*k]``, bias as the last column); a
              parameter name (``layers.1.weight``) gives that tensor alone
============  ===============================================================================

**Normalisation** (``normalize``): every parameter tensor is standardised with the mean and standard
deviation of that tensor over the *train* models of the selection (all chosen checkpoints); the
``stats`` view standardises each statistic the same way. **Augmentation** (``augment``, a probability):
training batches get random function-preserving permutations of hidden units / channels
(:class:`zoo.augment.PermutationAugment`). Validation and test batches are never augmented.

Batches are dicts: ``x`` (the view), ``y`` (``[B]`` float32 for one regression target, ``[B, k]`` float32
for several or for multi-hot classes, ``[B]`` int64 class indices), ``model_id [B]`` and ``checkpoint [B]``
int64, ``group [B]`` int64 (the model's tree, see ``group_by``; -1 without groups) and ``arch`` (the
architecture key shared by the batch).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pandas as pd
import torch
from lightning.pytorch import LightningDataModule

import kernels
import zoo
from kernels import ParamLayout
from weightnets.views import LayerRef, layer_matrix, resolve_layer
from zoo import ZooError
from zoo.augment import PermutationAugment
from zoo.normalization import NormStats, compute_norm_stats, normalize

SPLITS = ("train", "val", "test")
TARGET_KINDS = ("regression", "multiclass", "multilabel")
BASE_VIEWS = ("flat", "layers", "stats")
READ_BLOCK = 256


def open_store(store: str | os.PathLike) -> zoo.Zoo:
    """A zoo from a path or URL (:func:`zoo.open`), else a catalog name (:func:`zoo.load`).

    Raises:
        ZooError: a path that holds no zoo, or a name the catalog does not know.
    """
    text = str(store)
    if "://" in text or Path(text).exists():
        return zoo.open(text)
    if os.sep in text or text.endswith((".zarr", ".zip", ".tar")):
        raise ZooError(f"no zoo at {text!r} (not a path that exists, and not a catalog name)")
    return zoo.load(text)


@dataclass
class DataSpec:
    """What a learner needs to know of the data to build itself (saved in its checkpoints).

    ``layouts`` maps each architecture key to its :class:`kernels.ParamLayout`; ``layer`` is the layer
    of a single-layer view; ``target_names`` name the outputs (classes of a multi-label or multi-class
    target, columns of a regression); ``target_mean``/``target_std`` are the train split's statistics of
    a regression target (per output); ``groups`` the names of the groups (trees) ``group`` indexes."""

    store: str
    view: str
    arch_keys: list[str]
    layouts: dict[str, ParamLayout]
    layer: str | None
    target: str | list[str]
    target_kind: str
    target_names: list[str]
    target_mean: list[float] | None = None
    target_std: list[float] | None = None
    group_by: str | None = None
    groups: list[str] = field(default_factory=list)
    checkpoints: list[int] = field(default_factory=lambda: [-1])
    n_examples: dict[str, int] = field(default_factory=dict)

    @property
    def n_outputs(self) -> int:
        return len(self.target_names)

    @property
    def n_groups(self) -> int:
        return len(self.groups)

    def layout(self, arch: str | None = None) -> ParamLayout:
        """The layout of ``arch`` (default: the first architecture)."""
        return self.layouts[arch if arch is not None else self.arch_keys[0]]

    def layer_ref(self, arch: str | None = None) -> LayerRef | None:
        """The resolved layer of a single-layer view (None for the other views)."""
        if self.layer is None:
            return None
        name = self.layer
        return resolve_layer(self.layout(arch), name)

    def to_record(self) -> dict[str, Any]:
        rec = {k: getattr(self, k) for k in ("store", "view", "arch_keys", "layer", "target", "target_kind",
                                             "target_names", "target_mean", "target_std", "group_by", "groups",
                                             "checkpoints", "n_examples")}
        rec["layouts"] = {k: v.to_record() for k, v in self.layouts.items()}
        return rec

    @classmethod
    def from_record(cls, rec: dict[str, Any]) -> "DataSpec":
        rec = dict(rec)
        rec["layouts"] = {k: ParamLayout.from_record(v) for k, v in rec["layouts"].items()}
        return cls(**rec)


@dataclass
class _Part:
    """The examples of one split, architecture and checkpoint: model ids, their rows in the weights array,
    targets and groups (aligned, sorted by model id)."""

    arch: str
    checkpoint: int
    ids: np.ndarray            # [n] int64 model ids, sorted
    rows: np.ndarray           # [n] int64 rows of weights/<arch>
    targets: torch.Tensor      # [n, ...]
    groups: torch.Tensor       # [n] int64
    position: np.ndarray       # model id -> index into targets (-1 elsewhere)
    dataset: zoo.ZooDataset | None = None  # made when first streamed


class MemoryBatches:
    """Batches ``(raw weights [B, n_params], model ids [B])`` of weights held in memory (``cache=True``),
    in a seeded order that changes every epoch; the interface of :class:`zoo.ZooBatchLoader`."""

    def __init__(self, data: tuple[torch.Tensor, torch.Tensor], batch_size: int, shuffle: bool, seed: int) -> None:
        self.weights, self.ids = data
        self.batch_size = int(batch_size)
        self.shuffle = shuffle
        self.seed = int(seed)
        self.epoch = 0

    def __len__(self) -> int:
        return -(-len(self.ids) // self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n = len(self.ids)
        order = (torch.from_numpy(np.random.default_rng((self.seed, self.epoch)).permutation(n)) if self.shuffle
                 else torch.arange(n))
        for i in range(0, n, self.batch_size):
            idx = order[i:i + self.batch_size]
            yield self.weights.index_select(0, idx), self.ids.index_select(0, idx)
        self.epoch += 1


class ZooBatches:
    """Batches of several :class:`zoo.ZooBatchLoader` s (one per architecture and checkpoint) as dicts.

    With ``shuffle`` the loaders' batches are interleaved in a seeded random order that changes every
    epoch; otherwise they come loader by loader. ``len()`` is the number of batches per epoch."""

    def __init__(self, module: "ZooDataModule", parts: list[_Part], *, shuffle: bool, augment: float,
                 seed: int) -> None:
        self.module = module
        self.parts = parts
        self.shuffle = shuffle
        self.seed = int(seed)
        self.epoch = 0
        self.loaders, self.augments = [], []
        for i, part in enumerate(parts):
            self.augments.append(PermutationAugment(module.spec.layouts[part.arch], p=augment, seed=self.seed * 1000 + i)
                                 if augment > 0 else None)
            if module.cache:
                self.loaders.append(MemoryBatches(module.cached(part), module.batch_size, shuffle,
                                                  seed=self.seed * 1000 + i))
            else:
                self.loaders.append(zoo.ZooBatchLoader(module.dataset(part), batch_size=module.batch_size,
                                                       shuffle=shuffle, seed=self.seed * 1000 + i))
        # the statistics of a cached part are computed once (they do not change under permutations)
        self.precomputed = module.cache and module.view == "stats"

    def __len__(self) -> int:
        return sum(len(loader) for loader in self.loaders)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        order = np.concatenate([np.full(len(loader), i) for i, loader in enumerate(self.loaders)]
                               ) if self.loaders else np.zeros(0, dtype=np.int64)
        if self.shuffle:
            order = np.random.default_rng((self.seed, self.epoch)).permutation(order)
        iterators = [iter(loader) for loader in self.loaders]
        for i in order:
            raw, ids = next(iterators[int(i)])
            if self.precomputed:
                yield self.module.make_batch(self.parts[int(i)], None, ids, stats=raw)
                continue
            if self.augments[int(i)] is not None:
                raw = self.augments[int(i)](raw)
            yield self.module.make_batch(self.parts[int(i)], raw, ids)
        self.epoch += 1


class ZooDataModule(LightningDataModule):
    """A zoo's models as training examples for weight-space learners (module docstring: targets, views).

    Args:
        store: a store path, a URL, or a catalog name (:func:`zoo.load`).
        select: a pandas query on the models table (``"derivation == 'class_subset'"``); only ``ok`` models
            are ever used.
        split: the name of a split stored in the zoo (``default``, ``by_tree``, ``ood_cells`` ...).
        checkpoint: a checkpoint index (negative from the end), a list of them, or ``"all"``: each
            (model, checkpoint) is one example, and a model's checkpoints share its split.
        target: see the module docstring; ``target_kind`` overrides the inferred kind (``regression``,
            ``multiclass``, ``multilabel``).
        view: ``flat``, ``layers``, ``stats``, or a layer / parameter name.
        normalize: standardise with train-split statistics.
        augment: probability of a random hidden-unit permutation per training example (0: off).
        group_by: a column whose values group the models (``tree_id``: the model trees); ``"auto"`` uses
            ``tree_id`` in a model-tree zoo, none otherwise.
        batch_size: models per batch. seed: the shuffle and augmentation seed.
        cache: read the selected weights once and serve every epoch from memory (for zoos that fit in
            memory: saves Zarr's per-chunk cost on every epoch); False streams every epoch from the store.

    Raises (when the data is first used: ``setup``, ``spec`` or a loader, so ``weightzoo fit`` reports it
    as one line):
        ZooError: a store that cannot be opened, a selection with no models (or a query pandas refuses), a
            target that is neither a column, a metric, a landscape metric nor ``classes`` (listing them),
            ``classes`` on a zoo that is not a model tree, a layer that does not exist (listing the layers),
            several architectures under a view that needs one (naming them), an unknown split or
            checkpoint, and a split part with no examples.
    """

    def __init__(self, store: str, select: str | None = None, split: str = "default",
                 checkpoint: int | list[int] | str = -1, target: str | list[str] = "test_acc",
                 target_kind: str = "auto", view: str = "flat", normalize: bool = True, augment: float = 0.0,
                 group_by: str | None = "auto", batch_size: int = 64, seed: int = 0, cache: bool = False) -> None:
        super().__init__()
        self.store = str(store)
        self.select = select
        self.split_name = split
        self.checkpoint_arg = checkpoint
        self.target = target
        self.target_kind = target_kind
        self.view = view
        self.normalize = bool(normalize)
        self.augment = float(augment)
        self.group_by = group_by
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.cache = bool(cache)
        self._memory: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        self._spec: DataSpec | None = None
        self.weight_stats: dict[str, NormStats] = {}
        self.feature_stats: tuple[torch.Tensor, torch.Tensor] | None = None
        self._parts: dict[str, list[_Part]] | None = None

    @property
    def spec(self) -> DataSpec:
        """The :class:`DataSpec` (opens the store and checks every argument on first use)."""
        if self._spec is None:
            self._spec = self._resolve()
        return self._spec

    def _resolve(self) -> DataSpec:
        if self.target_kind not in ("auto", *TARGET_KINDS):
            raise ZooError(f"target_kind must be 'auto' or one of {list(TARGET_KINDS)}, got {self.target_kind!r}")
        if not 0.0 <= self.augment <= 1.0:
            raise ZooError(f"augment is a probability in [0, 1], got {self.augment}")
        if self.batch_size < 1:
            raise ZooError(f"batch_size must be >= 1, got {self.batch_size}")
        self.z = open_store(self.store)
        split, view, target = self.split_name, self.view, self.target
        models = self.z.models
        self.checkpoints = self._checkpoints(self.checkpoint_arg)
        selected = self._select(models, self.select)
        codes = self.z.split(split)[selected["model_id"].to_numpy()]
        selected = selected.assign(split_part=np.asarray(SPLITS, dtype=object)[codes])
        values, names, kind = self._targets(selected, target, self.target_kind)
        self.arch_keys = sorted(selected["arch_key"].unique().tolist())
        layouts = {k: self.z.layout(k) for k in self.arch_keys}
        layer = self._check_view(view, layouts)
        group_col = self._group_column(self.group_by, selected)
        groups: list[str] = []
        group_idx = np.full(len(selected), -1, dtype=np.int64)
        if group_col is not None:
            labels = selected[group_col].astype(str).to_numpy()
            groups = sorted(set(labels.tolist()), key=_natural)
            group_idx = np.array([groups.index(v) for v in labels], dtype=np.int64)
        self.selected = selected.assign(group=group_idx)
        self.values = values  # [n_selected, n_checkpoints, k] float64, or [n_selected, n_checkpoints] object
        present = self._present(values, kind)  # [n_selected, n_checkpoints] bool
        self.present = present
        self.n_missing_target = int((~present).sum())
        n_examples = {s: int(present[(selected["split_part"] == s).to_numpy()].sum()) for s in SPLITS}
        for s in SPLITS:
            if n_examples[s] == 0:
                raise ZooError(f"{self.z.path}: part {s!r} of split {split!r} holds none of the selected models "
                               f"with a target ({len(selected)} models selected; parts: {n_examples})")
        self.categories: list[str] = names if kind == "multiclass" else []
        mean = std = None
        if kind == "regression":
            train = values[(selected["split_part"] == "train").to_numpy()]
            flat = train.reshape(-1, train.shape[-1])
            flat = flat[np.isfinite(flat).all(axis=1)]
            mean = flat.mean(axis=0).tolist()
            std = [s if s > 0 else 1.0 for s in flat.std(axis=0).tolist()]
        return DataSpec(store=self.store, view=view, arch_keys=self.arch_keys, layouts=layouts, layer=layer,
                        target=target, target_kind=kind, target_names=names, target_mean=mean, target_std=std,
                        group_by=group_col, groups=groups, checkpoints=self.checkpoints, n_examples=n_examples)

    # ------------------------------------------------------------------ selection
    def _checkpoints(self, checkpoint: int | list[int] | str) -> list[int]:
        n = len(self.z.checkpoint_epochs)
        if isinstance(checkpoint, str):
            if checkpoint != "all":
                raise ZooError(f"checkpoint must be an index, a list of indices or 'all', got {checkpoint!r}")
            return list(range(n))
        items = [checkpoint] if isinstance(checkpoint, int) else list(checkpoint)
        if not items:
            raise ZooError("checkpoint: an empty list; give an index, a list of indices or 'all'")
        return sorted({self.z.checkpoint_index(int(c)) for c in items})

    def _select(self, models: pd.DataFrame, select: str | None) -> pd.DataFrame:
        ok = models[models["status"] == "ok"]
        if select:
            try:
                chosen = ok.query(select)
            except Exception as exc:  # pandas raises many kinds (NameError, SyntaxError, ValueError, ...)
                raise ZooError(f"select {select!r} cannot be evaluated on the models table of {self.z.path}: "
                               f"{type(exc).__name__}: {exc}; columns: {list(models.columns)}") from None
        else:
            chosen = ok
        if chosen.empty:
            counts = models["status"].value_counts().to_dict()
            what = f"select {select!r}" if select else "the zoo"
            raise ZooError(f"{self.z.path}: {what} leaves no models to learn on ({len(models)} models, status "
                           f"{counts}; only 'ok' models are used)")
        return chosen.sort_values("model_id").reset_index(drop=True)

    def _group_column(self, group_by: str | None, models: pd.DataFrame) -> str | None:
        if group_by is None:
            return None
        if group_by == "auto":
            return "tree_id" if "tree" in self.z.meta and "tree_id" in models.columns else None
        if group_by not in models.columns:
            raise ZooError(f"group_by {group_by!r} is not a column of the models table of {self.z.path}; "
                           f"columns: {list(models.columns)}")
        return group_by

    def _check_view(self, view: str, layouts: dict[str, ParamLayout]) -> str | None:
        if view == "layers":
            return None
        if view == "stats":
            counts = {k: len(v) for k, v in layouts.items()}
            if len(set(counts.values())) > 1:
                raise ZooError(f"view 'stats' concatenates the statistics of every tensor, but the selected "
                               f"architectures have different numbers of tensors {counts}; select one "
                               f"architecture (e.g. select: \"arch_key == '{self.arch_keys[0]}'\")")
            return None
        if len(layouts) > 1:
            what = "view 'flat'" if view == "flat" else f"the single-layer view {view!r}"
            raise ZooError(f"{what} needs one architecture, but the selection holds {len(layouts)}: "
                           f"{sorted(layouts)}; add the architecture to select, e.g. "
                           f"select: \"arch_key == '{self.arch_keys[0]}'\" (or use view 'stats' or 'layers', "
                           "which take several)")
        if view == "flat":
            return None
        layout = next(iter(layouts.values()))
        return resolve_layer(layout, view).name

    def _targets(self, models: pd.DataFrame, target: str | list[str], target_kind: str
                 ) -> tuple[np.ndarray, list[str], str]:
        """Target values ``[n_selected, n_checkpoints, k]`` float64 (or ``[n, n_ckpt]`` object for classes
        from text), the output names and the target kind."""
        n, nc = len(models), len(self.checkpoints)
        ids = models["model_id"].to_numpy()
        if isinstance(target, str) and target == "classes":
            if "tree" not in self.z.meta:
                raise ZooError(f"target 'classes' (the multi-hot class sets of a model tree) needs a model-tree "
                               f"zoo, but {self.z.path} is a {self.z.meta.get('kind')!r} zoo; choose a column "
                               "of its models table as target")
            hot = zoo.class_multi_hot(self.z, ids).astype(np.float64)
            names = list(self.z.meta["tree"]["class_columns"])
            return np.repeat(hot[:, None, :], nc, axis=1), names, "multilabel"
        columns = [target] if isinstance(target, str) else list(target)
        if not columns:
            raise ZooError("target: an empty list of columns")
        metrics = set(self.z.metric_names)
        landscape = set(self.z.landscape_names)
        unknown = [c for c in columns if c not in models.columns and c not in metrics and c not in landscape]
        if unknown:
            raise ZooError(f"target {unknown[0]!r} is not a column of the models table of {self.z.path}, nor a "
                           f"metric or landscape metric; columns: {list(models.columns)}; metrics: "
                           f"{sorted(metrics)}; landscape: {sorted(landscape)}; or 'classes' for a model tree")
        numeric, blocks, names = True, [], []
        for c in columns:
            if c in metrics:
                per_ckpt = self.z.metric(c, ids)[:, self.checkpoints].astype(np.float64)
                blocks.append(per_ckpt[:, :, None])
                names.append(c)
            elif c in models.columns:
                col = models[c]
                if pd.api.types.is_bool_dtype(col) or not pd.api.types.is_numeric_dtype(col):
                    numeric = False
                    values = col.to_numpy(dtype=object)
                    blocks.append(np.repeat(values[:, None, None], nc, axis=1))
                else:
                    blocks.append(np.repeat(col.to_numpy(dtype=np.float64)[:, None, None], nc, axis=1))
                names.append(c)
            else:  # a landscape metric that is not a scalar column (vector-valued)
                vals = self.z.landscape(c, ids).reshape(n, -1).astype(np.float64)
                blocks.append(np.repeat(vals[:, None, :], nc, axis=1))
                names.extend(f"{c}[{j}]" for j in range(vals.shape[1]))
        if target_kind == "auto":
            if numeric:
                target_kind = "regression"
            elif all(pd.api.types.is_bool_dtype(models[c]) for c in columns if c in models.columns) and len(columns) > 1:
                target_kind = "multilabel"
            else:
                target_kind = "multiclass"
        if target_kind == "regression":
            if not numeric:
                bad = [c for c in columns if c in models.columns and not pd.api.types.is_numeric_dtype(models[c])]
                raise ZooError(f"target_kind 'regression' needs numbers, but column(s) {bad} hold text")
            return np.concatenate(blocks, axis=2), names, "regression"
        if target_kind == "multilabel":
            values = np.concatenate([b.astype(np.float64) for b in blocks], axis=2)
            finite = values[np.isfinite(values)]
            if not np.isin(finite, (0.0, 1.0)).all():
                raise ZooError(f"target_kind 'multilabel' needs 0/1 (bool) columns; {columns} hold other values")
            return values, names, "multilabel"
        if len(blocks) != 1 or blocks[0].shape[2] != 1:
            raise ZooError(f"target_kind 'multiclass' takes one column, got {columns}")
        raw = blocks[0][:, :, 0]
        labels = np.empty(raw.shape, dtype=object)
        for idx, v in np.ndenumerate(raw):
            labels[idx] = None if _missing(v) else (str(int(v)) if isinstance(v, float) and v.is_integer() else str(v))
        categories = sorted({v for v in labels.ravel().tolist() if v is not None}, key=_natural)
        if len(categories) < 2:
            raise ZooError(f"target {columns[0]!r} has {len(categories)} class(es) {categories} among the selected "
                           "models; classification needs at least two")
        return labels, categories, "multiclass"

    @staticmethod
    def _present(values: np.ndarray, kind: str) -> np.ndarray:
        if kind == "multiclass":
            return np.vectorize(lambda v: v is not None, otypes=[bool])(values)
        return np.isfinite(values).all(axis=2)

    # ------------------------------------------------------------------ statistics
    def _train_rows(self, arch: str) -> list[tuple[int, np.ndarray]]:
        sel = self.selected
        mask = ((sel["split_part"] == "train") & (sel["arch_key"] == arch)).to_numpy()
        out = []
        for j, c in enumerate(self.checkpoints):
            keep = mask & self.present[:, j]
            if keep.any():
                out.append((c, sel.loc[keep, "arch_row"].to_numpy(dtype=np.int64)))
        return out

    def _raw_train_batches(self, arch: str) -> Iterator[torch.Tensor]:
        for c, rows in self._train_rows(arch):
            for i in range(0, len(rows), READ_BLOCK):
                yield self.z.read_rows(arch, rows[i:i + READ_BLOCK], c)

    def _fit_statistics(self) -> None:
        if not self.normalize:
            return
        if self.view == "stats":
            total, total_sq, count = None, None, 0
            for arch in self.arch_keys:
                for raw in self._raw_train_batches(arch):
                    feats = kernels.layer_stats(raw, self.spec.layouts[arch]).double().flatten(1)
                    total = feats.sum(0) if total is None else total + feats.sum(0)
                    total_sq = (feats ** 2).sum(0) if total_sq is None else total_sq + (feats ** 2).sum(0)
                    count += feats.shape[0]
            mean = total / count
            std = (total_sq / count - mean ** 2).clamp_min(0).sqrt()
            std = torch.where(std > 1e-8, std, torch.ones_like(std))
            self.feature_stats = (mean.float(), std.float())
            return
        for arch in self.arch_keys:
            if self._train_rows(arch):
                self.weight_stats[arch] = compute_norm_stats(self._raw_train_batches(arch), self.spec.layouts[arch])

    # ------------------------------------------------------------------ Lightning hooks
    def setup(self, stage: str | None = None) -> None:
        if self._parts is not None:
            return
        self.spec  # noqa: B018 - resolves and checks the arguments
        self._fit_statistics()
        parts: dict[str, list[_Part]] = {s: [] for s in SPLITS}
        sel = self.selected
        kind = self.spec.target_kind
        for s in SPLITS:
            for arch in self.arch_keys:
                mask = ((sel["split_part"] == s) & (sel["arch_key"] == arch)).to_numpy()
                for j, c in enumerate(self.checkpoints):
                    keep = np.flatnonzero(mask & self.present[:, j])
                    if len(keep) == 0:
                        continue
                    rows = keep  # selected is sorted by model id
                    ids = sel["model_id"].to_numpy()[rows].astype(np.int64)
                    if kind == "multiclass":
                        y = torch.tensor([self.categories.index(v) for v in self.values[rows, j]], dtype=torch.int64)
                    else:
                        y = torch.from_numpy(self.values[rows, j].astype(np.float32))
                        if y.shape[1] == 1 and kind == "regression":
                            y = y[:, 0]
                    position = np.full(self.z.n_models, -1, dtype=np.int64)
                    position[ids] = np.arange(len(ids))
                    groups = torch.from_numpy(sel["group"].to_numpy()[rows].astype(np.int64))
                    arch_rows = sel["arch_row"].to_numpy()[rows].astype(np.int64)
                    parts[s].append(_Part(arch, c, ids, arch_rows, y, groups, position))
        self._parts = parts

    def loader(self, split: str, *, shuffle: bool | None = None, augment: bool | None = None) -> ZooBatches:
        """Batches of ``split`` (``train``, ``val``, ``test``). By default only ``train`` is shuffled and
        augmented; learners that need a pass over the training data (centroids, tree models) ask for
        ``loader("train", shuffle=False, augment=False)``."""
        if split not in SPLITS:
            raise ZooError(f"split part must be one of {list(SPLITS)}, got {split!r}")
        self.setup()
        train = split == "train"
        shuffle = train if shuffle is None else shuffle
        augment = train if augment is None else augment
        return ZooBatches(self, self._parts[split], shuffle=shuffle, augment=self.augment if augment else 0.0,
                          seed=self.seed)

    def train_dataloader(self) -> ZooBatches:
        return self.loader("train")

    def val_dataloader(self) -> ZooBatches:
        return self.loader("val")

    def test_dataloader(self) -> ZooBatches:
        return self.loader("test")

    def predict_dataloader(self) -> ZooBatches:
        return self.loader("test")

    # ------------------------------------------------------------------ batches
    def make_batch(self, part: _Part, raw: torch.Tensor | None, ids: torch.Tensor,
                   stats: torch.Tensor | None = None) -> dict[str, Any]:
        """The batch dict of models ``ids [B]`` of ``part`` from their (augmented) raw weights ``raw [B, n_params]``
        (or, for the ``stats`` view, their precomputed statistics ``stats [B, n_tensors, 7]``)."""
        layout = self.spec.layouts[part.arch]
        if self.view == "stats":
            x: Any = stats if stats is not None else kernels.layer_stats(raw, layout)
            if self.feature_stats is not None:
                mean, std = self.feature_stats
                x = ((x.flatten(1) - mean) / std).reshape(x.shape)
        else:
            w = normalize(raw, self.weight_stats[part.arch], layout) if part.arch in self.weight_stats else raw
            if self.view == "flat":
                x = w
            elif self.view == "layers":
                x = dict(layout.unflatten(w))
            else:
                x = layer_matrix(w, resolve_layer(layout, self.view))
        pos = torch.from_numpy(part.position[ids.numpy()])
        return {"x": x, "y": part.targets[pos], "model_id": ids.to(torch.int64),
                "checkpoint": torch.full((len(ids),), part.checkpoint, dtype=torch.int64),
                "group": part.groups[pos], "arch": part.arch}

    def dataset(self, part: _Part) -> zoo.ZooDataset:
        """The :class:`zoo.ZooDataset` a part streams from (flat raw weights, model ids as items)."""
        if part.dataset is None:
            part.dataset = zoo.ZooDataset(self.z, split="all", checkpoint=part.checkpoint, target=None, view="flat",
                                          arch=part.arch, ids=part.ids)
            if not np.array_equal(part.dataset.model_ids, part.ids):
                raise ZooError(f"{self.z.path}: the dataset of {part.arch} does not hold the selected models")
        return part.dataset

    def cached(self, part: _Part) -> tuple[torch.Tensor, torch.Tensor]:
        """``(raw weights [n, n_params], model ids [n])`` of a part, read once (``cache=True``); for the
        ``stats`` view, their statistics ``[n, n_tensors, 7]`` instead of the weights."""
        key = id(part)
        if key not in self._memory:
            blocks = []
            for i in range(0, len(part.ids), READ_BLOCK):
                sl = slice(i, i + READ_BLOCK)
                raw = self.z.read_rows(part.arch, part.rows[sl], part.checkpoint)  # checked: missing chunks raise
                blocks.append(kernels.layer_stats(raw, self.spec.layouts[part.arch]) if self.view == "stats" else raw)
            self._memory[key] = (torch.cat(blocks), torch.from_numpy(part.ids))
        return self._memory[key]

    def split_models(self, split: str) -> pd.DataFrame:
        """The selected models of one split part (rows of the models table plus ``split_part`` and ``group``)."""
        return self.selected[self.selected["split_part"] == split]


def _missing(v: Any) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v)) or (isinstance(v, str) and v == "")


def _natural(text: str) -> tuple:
    """Sort key: numbers by value, text alphabetically (``'2' < '10'``, ``'I' < 'II' < 'IV-B'``)."""
    try:
        return (0, float(text), "")
    except ValueError:
        return (1, 0.0, text)
