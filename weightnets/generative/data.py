"""What weight generation trains on: models of one architecture, their task descriptors, support sets.

:class:`GenerationData` (a ``LightningDataModule``) reads, from a zoo store, the models of one
architecture (model-tree zoos: the children of chosen derivation families), the vector each model is
learned as — its **task vector** (weights minus its base's final weights, ``target: delta``; the default
for model trees, since a child lives in its base's basin) or its **weights** (``target: weights``; the
default for other zoos) — the task descriptor of every model's task, the base it belongs to and, if
asked, a pool of labelled training examples of every task to draw support sets from.

Splits are the store's (``split_name``; model trees default to ``ood_tasks``, which holds out whole
derived tasks, so the test part holds class sets never seen in training). What a trained generator
needs to know about its data travels with its checkpoint as a :class:`GenerationContext`.

Function-space evaluation uses :mod:`weightnets.evaluate`: validation examples are
:func:`weightnets.evaluate.task_examples` ``(task, "val")``, a held-out part of each task's *training*
split, so checkpoint selection never sees a test example.
"""

from __future__ import annotations

import zlib
from dataclasses import asdict, dataclass, field
from typing import Any, Iterator, Mapping, Sequence

import numpy as np
import torch
from lightning.pytorch import LightningDataModule
from torch.utils.data import DataLoader, Dataset, Sampler

from weightnets.evaluate import evaluate_weights, task_examples, validation_split
from weightnets.generative.conditioning import task_descriptor
from zoo import ZooError, build_architecture, open_zoo
from zoo.tasks import DERIVED_OPTIONS, build_task

#: Derivation families a generator can be trained on (the descriptor cannot express label permutations).
GENERATED_FAMILIES = ("class_subset", "corruption")
TARGETS = ("delta", "weights")
PARTS = {"train": 0, "val": 1, "test": 2}


@dataclass
class GenerationContext:
    """Everything a trained generator needs about the data it was trained on (saved in checkpoints).

    ``base_weights [n_bases, n_params]`` float32 are the bases' final weights (empty without bases);
    ``tasks`` maps every task key of the data to its task spec; ``train_tasks`` / ``val_tasks`` /
    ``test_tasks`` are the task keys of each part of ``split_name``; ``source_task`` is the source task
    spec of a model tree (``None`` otherwise), which every generated class-subset task derives from.
    """

    store: str
    arch_key: str
    arch: dict
    split_name: str
    families: list[str]
    target: str
    checkpoints: list[int]
    task_filter: str | None
    class_ids: list[int]
    source_task: dict | None
    base_ids: list[int]
    base_epoch: int
    tasks: dict[str, dict]
    train_tasks: list[str]
    val_tasks: list[str]
    test_tasks: list[str]
    base_weights: torch.Tensor = field(default_factory=lambda: torch.zeros(0, 0))

    @property
    def n_params(self) -> int:
        return int(self.arch["layout"]["n_params"])

    @property
    def n_classes(self) -> int:
        return int(self.arch["n_classes"])

    @property
    def in_features(self) -> int:
        return int(np.prod(self.arch["input_shape"]))

    def architecture(self) -> torch.nn.Module:
        """The architecture as an ``nn.Module`` (its own weights unused)."""
        a = self.arch
        return build_architecture(a["name"], a["input_shape"], a["n_classes"], a["config"])

    def to_weights(self, vectors: torch.Tensor, base: torch.Tensor | None) -> torch.Tensor:
        """Flat model weights ``[R, n_params]`` from learned vectors ``[R, n_params]`` (task vectors are
        added to their base's final weights; ``base [R]`` long positions in ``base_ids``)."""
        if self.target == "weights":
            return vectors
        if base is None:
            raise ZooError("task vectors need the base of every row")
        return vectors + self.base_weights.to(vectors)[base]

    def to_record(self) -> dict:
        rec = asdict(self)
        rec["base_weights"] = self.base_weights.clone()
        return rec

    @classmethod
    def from_record(cls, rec: Mapping[str, Any]) -> "GenerationContext":
        return cls(**dict(rec))

    def same_data(self, other: "GenerationContext") -> list[str]:
        """Fields that differ from ``other`` among those that define the data (empty when equal)."""
        keys = ("arch_key", "split_name", "families", "target", "checkpoints", "task_filter", "class_ids",
                "base_ids", "train_tasks")
        return [k for k in keys if getattr(self, k) != getattr(other, k)]


def resolve_arch(z: Any, candidates: Any, arch: str) -> str:
    """The architecture key ``arch`` names: a key of the store, or an architecture name (``mlp``) that
    exactly one architecture of ``candidates`` (a models-table slice) has."""
    archs = z.architectures
    if arch in archs:
        return arch
    keys = sorted(k for k in set(candidates["arch_key"]) if archs[k]["name"] == arch)
    if len(keys) == 1:
        return keys[0]
    choices = sorted(archs)
    if not keys:
        raise ZooError(f"{z.path}: no architecture {arch!r}; give a key or a name of one of {choices}")
    raise ZooError(f"{z.path}: several architectures are called {arch!r} ({keys}); give the key")


class _Rows(Dataset):
    """Items of some rows of a :class:`GenerationData`."""

    def __init__(self, data: "GenerationData", rows: np.ndarray, random_support: bool) -> None:
        self.data, self.rows, self.random_support = data, rows, random_support

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict[str, Any]:
        r = int(self.rows[i])
        d = self.data
        item = {"target": d.targets[r], "descriptor": d.descriptors[r], "base": int(d.base_pos[r]), "row": r}
        if d.support_k > 0:
            gen = None if self.random_support else torch.Generator().manual_seed(d.seed * 1_000_003 + r)
            item["support_x"], item["support_y"] = d.support(d.task_keys[r], d.support_k, gen)
        return item


class _Repeated(Sampler[int]):
    """``repeats`` shuffled passes over ``n`` items per epoch (fewer, longer epochs for tiny datasets)."""

    def __init__(self, n: int, repeats: int, seed: int) -> None:
        self.n, self.repeats, self.seed, self.epoch = n, repeats, seed, 0

    def __len__(self) -> int:
        return self.n * self.repeats

    def __iter__(self) -> Iterator[int]:
        gen = torch.Generator().manual_seed(self.seed + 7919 * self.epoch)
        self.epoch += 1
        for _ in range(self.repeats):
            yield from torch.randperm(self.n, generator=gen).tolist()


class GenerationData(LightningDataModule):
    """Models of one architecture of a zoo as training data for weight generators.

    Args:
        store: path of the zoo.
        arch: architecture key, or a name (``mlp``) that one architecture of the selection has.
        families: model trees: derivation families of the children used (default ``["class_subset"]``;
            any of :data:`GENERATED_FAMILIES`).
        split_name: stored split (``auto``: ``ood_tasks`` for model trees, else ``default``).
        target: ``delta`` (task vectors, model trees only), ``weights``, or ``auto`` (delta for trees).
        checkpoints: checkpoint indices whose weights are rows (default ``[-1]``; several give p-diff's
            many checkpoints of one task).
        task: keep only models of this task key (p-diff: one task's checkpoints).
        batch_size: rows per batch.
        support_k: examples per support set (0: no support sets).
        support_pool: training examples kept per task to draw support sets from.
        train_repeats: passes over the training rows per epoch.
        seed: seed of the support pools and of the evaluation support sets.

    Items are dicts: ``target [n_params]`` float32 (task vector or weights, not normalised: models
    normalise with their own train statistics), ``descriptor [d]``, ``base`` (position in
    ``context.base_ids``, 0 without bases), ``row`` and, with ``support_k``, ``support_x [k, *input_shape]``
    and ``support_y [k]``.
    """

    def __init__(self, store: str, arch: str, families: list[str] | None = None, split_name: str = "auto",
                 target: str = "auto", checkpoints: list[int] | None = None, task: str | None = None,
                 batch_size: int = 64, support_k: int = 0, support_pool: int = 256, train_repeats: int = 1,
                 seed: int = 0) -> None:
        super().__init__()
        if target not in (*TARGETS, "auto"):
            raise ZooError(f"data.target: unknown target {target!r}; choose from {[*TARGETS, 'auto']}")
        if support_k < 0 or support_pool < 1 or batch_size < 1 or train_repeats < 1:
            raise ZooError("data: support_k must be >= 0 and support_pool, batch_size, train_repeats >= 1")
        self.store, self.arch, self.families = str(store), str(arch), list(families or ["class_subset"])
        self.split_name, self.target, self.task = split_name, target, task
        self.checkpoints = list(checkpoints) if checkpoints is not None else [-1]
        self.batch_size, self.support_k, self.support_pool = int(batch_size), int(support_k), int(support_pool)
        self.train_repeats, self.seed = int(train_repeats), int(seed)
        self.context: GenerationContext | None = None
        self._examples: dict[tuple[str, str], tuple[torch.Tensor, torch.Tensor]] = {}
        self._pools: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        self._module: torch.nn.Module | None = None
        self._reference: dict[str, np.ndarray] = {}

    # ------------------------------------------------------------------ loading
    def setup(self, stage: str | None = None) -> None:
        if self.context is None:
            self._load()

    def _load(self) -> None:
        z = open_zoo(self.store)
        models = z.models
        tree = z.meta.get("tree")
        ok = models[models["status"] == "ok"]
        if tree is not None:
            bad = sorted(set(self.families) - set(GENERATED_FAMILIES))
            if bad:
                raise ZooError(f"data.families: {bad} cannot be generated; choose from {list(GENERATED_FAMILIES)}")
            ok = ok[(ok["tree_role"] == "child") & ok["derivation"].isin(self.families)]
        arch_key = resolve_arch(z, ok if len(ok) else models, self.arch)
        sel = ok[ok["arch_key"] == arch_key]
        if self.task is not None:
            if self.task not in z.tasks:
                raise ZooError(f"data.task: {z.path} has no task {self.task!r} (tasks: {sorted(z.tasks)[:8]} ...)")
            sel = sel[sel["task"] == self.task]
        if sel.empty:
            raise ZooError(f"{z.path}: no complete models of architecture {arch_key!r} in the selection "
                           f"(families {self.families if tree else 'n/a'}, task {self.task})")
        split_name = self.split_name if self.split_name != "auto" else ("ood_tasks" if tree else "default")
        codes_all = z.split(split_name)
        target = self.target if self.target != "auto" else ("delta" if tree else "weights")
        if target == "delta" and tree is None:
            raise ZooError(f"data.target: {z.path} is not a model tree, so its models have no task vectors; "
                           "use target: weights")
        ckpts = sorted({z.checkpoint_index(c) for c in self.checkpoints})
        ids = sel["model_id"].to_numpy(np.int64)
        weights = torch.stack([z.weights(ids.tolist(), c) for c in ckpts], dim=1).reshape(-1, z.layout(arch_key).n_params)
        model_ids = np.repeat(ids, len(ckpts))
        keys = np.repeat(sel["task"].astype(str).to_numpy(), len(ckpts))
        if tree is not None:
            parents = np.repeat(sel["parent_id"].to_numpy(np.int64), len(ckpts))
            base_ids = sorted({int(p) for p in parents})
            base_w = z.weights(base_ids, -1)
            base_pos = np.searchsorted(np.asarray(base_ids), parents)
            class_ids = [int(c) for c in tree["class_ids"]]
            source = dict(z.tasks[tree["source_task"]])
            base_epoch = int(tree["checkpoint_epochs"]["base"][-1])
        else:
            base_ids, base_w, base_pos = [], torch.zeros(0, weights.shape[1]), np.zeros(len(model_ids), np.int64)
            class_ids, source, base_epoch = list(range(int(z.architectures[arch_key]["n_classes"]))), None, -1
        targets = weights - base_w[torch.from_numpy(base_pos)] if target == "delta" else weights
        specs = {k: dict(z.tasks[k]) for k in sorted(set(keys))}
        descr = {k: task_descriptor(s, class_ids) for k, s in specs.items()}
        parts = codes_all[model_ids]
        self.targets = targets.float().contiguous()
        self.descriptors = torch.stack([descr[k] for k in keys])
        self.base_pos = torch.from_numpy(base_pos.astype(np.int64))
        self.model_ids, self.task_keys, self.parts = model_ids, list(keys), parts
        self.context = GenerationContext(
            store=str(z.path), arch_key=arch_key, arch=dict(z.architectures[arch_key]), split_name=split_name,
            families=list(self.families) if tree is not None else [], target=target, checkpoints=ckpts,
            task_filter=self.task, class_ids=class_ids, source_task=source, base_ids=base_ids, base_epoch=base_epoch,
            tasks=specs, **{f"{p}_tasks": sorted({k for k, c in zip(keys, parts) if c == code})
                            for p, code in PARTS.items()},
            base_weights=base_w.float())
        if self.support_k > 0:
            for k in specs:
                self._pool(k)

    # ------------------------------------------------------------------ rows and loaders
    def rows(self, part: str) -> np.ndarray:
        """Row indices ``[R]`` of ``part`` (``train``, ``val``, ``test``)."""
        self.setup()
        if part not in PARTS:
            raise ZooError(f"unknown part {part!r}; choose from {list(PARTS)}")
        return np.flatnonzero(self.parts == PARTS[part])

    def train_targets(self) -> torch.Tensor:
        """Targets ``[R_train, n_params]`` of the training rows (for normalisation statistics)."""
        return self.targets[torch.from_numpy(self.rows("train"))]

    def _loader(self, part: str, train: bool) -> DataLoader | list:
        rows = self.rows(part)
        if len(rows) == 0:
            if part == "val":
                return []  # Lightning then skips validation
            raise ZooError(f"{self.store}: split {self.context.split_name!r} has no {part} models in the selection")
        ds = _Rows(self, rows, random_support=train)
        if train:
            return DataLoader(ds, batch_size=self.batch_size, sampler=_Repeated(len(rows), self.train_repeats, self.seed))
        return DataLoader(ds, batch_size=self.batch_size, shuffle=False)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", True)

    def val_dataloader(self) -> DataLoader | list:
        return self._loader("val", False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", False)

    # ------------------------------------------------------------------ task data
    def _task(self, key: str) -> None:
        task = build_task(self.context.tasks[key])
        for part in ("val", "test"):
            self._examples[(key, part)] = task_examples(task, part)
        fit_x, fit_y = validation_split(task)[0]
        if self.support_k > len(fit_y):
            raise ZooError(f"data.support_k: {self.support_k} is larger than task {key}'s training set available "
                           f"for support ({len(fit_y)} examples)")
        gen = np.random.default_rng([self.seed, zlib.crc32(key.encode())])
        pick = np.sort(gen.choice(len(fit_y), size=min(self.support_pool, len(fit_y)), replace=False))
        self._pools[key] = (fit_x[pick].clone(), fit_y[pick].clone())

    def _pool(self, key: str) -> tuple[torch.Tensor, torch.Tensor]:
        if key not in self._pools:
            self._task(key)
        return self._pools[key]

    def examples(self, key: str, part: str) -> tuple[torch.Tensor, torch.Tensor]:
        """``(x, y)`` of task ``key``'s ``val`` or ``test`` examples (:func:`weightnets.evaluate.task_examples`)."""
        if (key, part) not in self._examples:
            self._task(key)
        return self._examples[(key, part)]

    def support(self, key: str, k: int, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``k`` labelled examples ``(x [k, *input_shape], y [k])`` of task ``key``, drawn without replacement
        from its support pool (a seeded subset of the task's training examples outside its validation split)."""
        x, y = self._pool(key)
        pick = torch.randperm(len(y), generator=generator)[:k]
        return x[pick], y[pick]

    # ------------------------------------------------------------------ function-space evaluation
    def architecture(self) -> torch.nn.Module:
        if self._module is None:
            self._module = self.context.architecture()
        return self._module

    def evaluate(self, weights: torch.Tensor, rows: Sequence[int], part: str) -> np.ndarray:
        """Accuracy ``[R]`` of flat model weights ``[R, n_params]`` on the ``val`` or ``test`` examples of
        rows ``rows``' tasks (one batched pass per task; NaN for non-finite weights)."""
        rows = np.asarray(rows, dtype=np.int64)
        acc = np.full(len(rows), np.nan)
        by_task: dict[str, list[int]] = {}
        for i, r in enumerate(rows):
            by_task.setdefault(self.task_keys[r], []).append(i)
        for key, idx in by_task.items():
            x, y = self.examples(key, part)
            acc[idx] = evaluate_weights(weights[idx].detach().float().cpu(), self.architecture(), x, y).acc
        return acc

    def reference_accuracy(self, rows: Sequence[int], part: str) -> np.ndarray:
        """Accuracy ``[R]`` of the stored models of ``rows`` on their tasks' ``val``/``test`` examples."""
        if part not in self._reference:
            all_rows = np.arange(len(self.model_ids))
            weights = self.context.to_weights(self.targets, self.base_pos)
            self._reference[part] = self.evaluate(weights, all_rows, part)
        return self._reference[part][np.asarray(rows, dtype=np.int64)]


def descriptor_of(context: GenerationContext, spec: Mapping) -> torch.Tensor:
    """The task descriptor of ``spec`` for a generator trained on ``context``'s data; raises
    :class:`zoo.ZooError` when the task does not derive from the generator's source task."""
    if context.source_task is not None:
        own = {k: v for k, v in spec.items() if k not in DERIVED_OPTIONS}
        if own != context.source_task:
            raise ZooError(f"task {dict(spec)} does not derive from the generator's source task {context.source_task}")
    return task_descriptor(spec, context.class_ids)
