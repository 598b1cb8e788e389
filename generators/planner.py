"""Which models of a zoo train together: populations across the grid, chosen by a cost model.

Every cell of a phase grid differs in width (load) or batch size (temperature), so grouping by
architecture instance and batch size gives a population per cell (2-3 models). The planner forms few,
large populations instead:

1. **Families.** Models that can share a population at all: the same architecture name, input shape and
   label space, optimiser, and -- when the architecture can be zero-padded
   (:func:`zoo.architectures.supports_unit_masks`) -- the same parameter :func:`skeleton
   <generators.padding.skeleton>` (widths may differ); otherwise the same architecture instance (the
   plan says so in its notes). Batch sizes and tasks (``train_fraction`` subsets) may always differ.
2. **Width buckets.** Inside a family the architecture instances are sorted by width and start as one
   bucket each; the planner repeatedly merges the two neighbouring buckets whose merge saves the most
   estimated time (:class:`generators.cost.CostModel`: fewer calls, each padded to the bucket's widest
   member) as long as the bucket's padded training FLOPs stay within ``max_padding`` times its real
   ones and its populations fit ``max_memory_mb``.
3. **Populations.** A bucket's models, ordered by batch size and training-set size, are cut into
   populations of at most ``max_size`` models and ``max_memory_mb``, at batch-size boundaries where
   possible (members with equal batch sizes share calls) and between grid cells (a cell's seeds
   stay together, as the landscape pair metrics want them).

The plan never changes a model's result (every member trains exactly as alone; the tests train one grid
under two plans and compare); it is stored with the zoo and resumed from (``generators.driver``).
``grouping: shape`` switches the planner off: one population per architecture instance, task, batch
size and optimiser, as before.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from generators.cost import DEFAULT_COST, CostModel, forward_flops
from generators.member_data import tick_calls
from generators.padding import envelope_of, skeleton
from generators.spec_fields import PopulationSettings
from kernels.layout import ParamLayout
from zoo.architectures import build_architecture, supports_unit_masks
from zoo.errors import ArchitectureMismatchError
from zoo.tasks import build_task

#: Optimiser states per parameter (momentum buffer; Adam's two moments).
OPTIMIZER_STATES = {"sgd": 1, "adam": 2, "adamw": 2}


@dataclass
class PlannedPopulation:
    """One population of a plan: its models (id order), the architecture instances it mixes (narrow
    to wide) and the one every member is padded to, its batch sizes, tasks, padded training FLOPs per
    real FLOP, memory and estimated training seconds (:class:`generators.cost.CostModel`)."""

    model_ids: list[int]
    arch_keys: list[str]
    envelope: str
    batch_sizes: list[int]
    n_tasks: int
    padding: float
    memory_bytes: int
    seconds: float
    n_calls: int


@dataclass
class Plan:
    """The populations of one stage, the settings that made them, and notes (e.g. architectures that
    cannot be padded and are grouped by shape)."""

    populations: list[PlannedPopulation]
    settings: PopulationSettings
    notes: list[str] = field(default_factory=list)

    @property
    def seconds(self) -> float:
        return float(sum(p.seconds for p in self.populations))

    def record(self) -> dict[str, Any]:
        """What the store keeps (``attrs["plan"]``): the settings and each population's ids and estimate."""
        return {"settings": self.settings.plan_record(), "notes": list(self.notes),
                "populations": [{"model_ids": [int(i) for i in p.model_ids], "seconds": round(p.seconds, 3)}
                                for p in self.populations]}


class _Facts:
    """Per architecture instance and per task: what the cost model needs, computed once."""

    def __init__(self, architectures: Mapping[str, Mapping], tasks: Mapping[str, Any], cost: CostModel) -> None:
        self.architectures, self.tasks, self.cost = architectures, tasks, cost
        self._layout: dict[str, ParamLayout] = {}
        self._flops: dict[str, float] = {}
        self._paddable: dict[str, bool] = {}
        self._sizes: dict[str, tuple[int, int]] = {}

    def layout(self, key: str) -> ParamLayout:
        if key not in self._layout:
            self._layout[key] = ParamLayout.from_record(self.architectures[key]["layout"])
        return self._layout[key]

    def flops(self, key: str) -> float:
        if key not in self._flops:
            a = self.architectures[key]
            self._flops[key] = forward_flops(a["name"], a["input_shape"], a["n_classes"], a["config"])
        return self._flops[key]

    def paddable(self, key: str) -> bool:
        name = self.architectures[key]["name"]
        if name not in self._paddable:
            a = self.architectures[key]
            self._paddable[name] = supports_unit_masks(
                build_architecture(name, a["input_shape"], a["n_classes"], a["config"]))
        return self._paddable[name]

    def sizes(self, task_key: str) -> tuple[int, int]:
        """``(n_train, n_train + n_test)`` of a task."""
        if task_key not in self._sizes:
            data = build_task(self.tasks[task_key])
            self._sizes[task_key] = (len(data.y_train), len(data.y_train) + len(data.y_test))
        return self._sizes[task_key]

    def family(self, key: str) -> tuple:
        a = self.architectures[key]
        shape = skeleton(self.layout(key)) if self.paddable(key) else key
        return a["name"], tuple(a["input_shape"]), int(a["n_classes"]), shape


class _Estimator:
    """Estimated seconds, padding and memory of a set of models trained as one population."""

    def __init__(self, models: pd.DataFrame, facts: _Facts, epochs: int, n_checkpoints: int, n_states: int) -> None:
        self.models, self.facts = models, facts
        self.epochs, self.n_checkpoints, self.n_states = epochs, n_checkpoints, n_states

    def envelope(self, arch_keys: Sequence[str]) -> str:
        keys = list(arch_keys)
        if len(keys) == 1:
            return keys[0]
        return keys[envelope_of([self.facts.layout(k) for k in keys])]

    def padding(self, rows: pd.DataFrame, env: str) -> float:
        n_train = np.array([self.facts.sizes(t)[0] for t in rows["task"]], dtype=np.float64)
        real = float((n_train * np.array([self.facts.flops(k) for k in rows["arch_key"]])).sum())
        return float(n_train.sum() * self.facts.flops(env) / max(real, 1.0))

    def memory(self, n_members: int, env: str, max_batch: int) -> int:
        cost, layout = self.facts.cost, self.facts.layout(env)
        activations = n_members * max_batch * max(sum(layout.group_sizes), 1) * 4 * 3
        return cost.memory_bytes(n_members, layout.n_params, self.n_states, self.n_checkpoints) + activations

    def population(self, rows: pd.DataFrame, env: str) -> PlannedPopulation:
        """The estimate of one population (``rows`` of the models table)."""
        facts, cost = self.facts, self.facts.cost
        order = rows.assign(_n=[-facts.sizes(t)[0] for t in rows["task"]]).sort_values(
            ["batch_size", "_n", "model_id"])
        sizes = [-int(n) for n in order["_n"]]
        batches = [int(b) for b in order["batch_size"]]
        flops, n_params = facts.flops(env), facts.layout(env).n_params
        overhead = cost.overhead_in_samples(flops)
        per_epoch, n_calls = 0.0, 0
        for groups in tick_calls(sizes, batches, overhead):
            for group in groups:
                per_epoch += cost.call_seconds(group[-1][1] - group[0][0], max(r[2] for r in group), flops, n_params)
                n_calls += 1
        evaluation = sum(cost.eval_seconds(int(n), facts.sizes(t)[1], flops)
                         for t, n in rows.groupby("task").size().items())
        seconds = self.epochs * per_epoch + self.n_checkpoints * evaluation
        keys = sorted(set(rows["arch_key"]), key=lambda k: (facts.flops(k), k))
        return PlannedPopulation(
            model_ids=sorted(int(i) for i in rows["model_id"]), arch_keys=keys, envelope=env,
            batch_sizes=sorted({int(b) for b in rows["batch_size"]}), n_tasks=int(rows["task"].nunique()),
            padding=self.padding(rows, env), memory_bytes=self.memory(len(rows), env, max(batches)),
            seconds=float(seconds), n_calls=n_calls * self.epochs)


def _chunks(rows: pd.DataFrame, est: _Estimator, env: str, settings: PopulationSettings) -> list[pd.DataFrame]:
    """A bucket's models cut into populations of at most ``max_size`` models and ``max_memory_mb``,
    whole blocks of equal batch size and training-set size where possible."""
    n_train = [est.facts.sizes(t)[0] for t in rows["task"]]
    rows = rows.assign(_n=[-n for n in n_train]).sort_values(["batch_size", "_n", "model_id"])
    limit = settings.max_memory_mb * 2 ** 20
    out: list[list[pd.DataFrame]] = [[]]

    def fits(parts: list[pd.DataFrame], extra: int, batch: int) -> bool:
        n = sum(len(p) for p in parts) + extra
        return n <= settings.max_size and (n <= 1 or est.memory(n, env, batch) <= limit)

    cells = "grid_cell" in rows.columns
    for _, block in rows.groupby(["batch_size", "_n"], sort=False):
        batch = int(block["batch_size"].max())
        while len(block):
            if not fits(out[-1], len(block), batch):
                room = 0
                while room < len(block) and fits(out[-1], room + 1, batch):
                    room += 1
                if cells and 0 < room < len(block):  # cut between grid cells (their seeds stay together)
                    cell = block["grid_cell"].to_numpy()
                    cut = room
                    while cut > 0 and cell[cut - 1] == cell[cut]:
                        cut -= 1
                    if cut == 0 and out[-1]:  # the cell starts a population of its own
                        out.append([])
                        continue
                    room = cut or room  # a cell larger than a population is cut
                if room == 0:
                    out.append([])
                    continue
                out[-1].append(block.iloc[:room])
                block = block.iloc[room:]
                out.append([])
                continue
            out[-1].append(block)
            block = block.iloc[:0]
    return [pd.concat(parts).drop(columns="_n") for parts in out if parts]


def _bucket_estimate(rows: pd.DataFrame, est: _Estimator, settings: PopulationSettings
                     ) -> tuple[float, list[PlannedPopulation]] | None:
    """Estimated seconds and populations of one width bucket, or None when it breaks a bound."""
    try:
        env = est.envelope(sorted(set(rows["arch_key"])))
    except ArchitectureMismatchError:
        return None
    if est.padding(rows, env) > settings.max_padding + 1e-9:
        return None
    pops = [est.population(part, env) for part in _chunks(rows, est, env, settings)]
    return sum(p.seconds for p in pops), pops


def plan_populations(models: pd.DataFrame, architectures: Mapping[str, Mapping], tasks: Mapping[str, Any],
                     settings: PopulationSettings, *, epochs: int, n_checkpoints: int, optimizer: str = "sgd",
                     cost: CostModel = DEFAULT_COST, compat: Sequence[str] = ("optimizer",)) -> Plan:
    """The populations of ``models`` (rows of a models table with ``model_id``, ``arch_key``, ``task``,
    ``batch_size`` and the ``compat`` columns; ``architectures`` and ``tasks`` are the store's records)
    under ``settings``; see the module docstring. Deterministic for the same inputs."""
    facts = _Facts(architectures, tasks, cost)
    est = _Estimator(models, facts, epochs, n_checkpoints, OPTIMIZER_STATES.get(optimizer, 2))
    if settings.grouping == "shape":
        return shape_plan(models, est, settings, compat)
    notes: list[str] = []
    models = models.sort_values("model_id")
    for key in dict.fromkeys(models["arch_key"]):
        if not facts.paddable(key):
            note = (f"architecture {architectures[key]['name']!r} cannot be zero-padded (its forward takes no "
                    "unit_masks): its instances are grouped by shape")
            if note not in notes:
                notes.append(note)
    compat = list(compat)
    populations: list[PlannedPopulation] = []
    for _, part in (models.groupby(compat, sort=False) if compat else [((), models)]):
        families: dict[tuple, list[str]] = {}
        for key in dict.fromkeys(part["arch_key"]):
            families.setdefault(facts.family(key), []).append(key)
        for fam_keys in families.values():
            rows_of = {k: part[part["arch_key"] == k] for k in fam_keys}
            buckets = sorted(([k] for k in fam_keys),
                             key=lambda b: (sum(facts.layout(b[0]).group_sizes), facts.layout(b[0]).n_params, b[0]))
            estimates = [_bucket_estimate(rows_of[b[0]], est, settings) for b in buckets]
            while len(buckets) > 1:  # merge the neighbours that save the most, while any merge saves
                best, best_saving = None, 0.0
                for i in range(len(buckets) - 1):
                    merged = _bucket_estimate(pd.concat([rows_of[k] for k in buckets[i] + buckets[i + 1]]),
                                              est, settings)
                    if merged is None:
                        continue
                    saving = estimates[i][0] + estimates[i + 1][0] - merged[0]
                    if saving > best_saving:
                        best, best_saving = (i, merged), saving
                if best is None:
                    break
                i, merged = best
                buckets[i:i + 2] = [buckets[i] + buckets[i + 1]]
                estimates[i:i + 2] = [merged]
            for _, pops in estimates:
                populations.extend(pops)
    populations.sort(key=lambda p: p.model_ids[0])
    return Plan(populations, settings, notes)


def shape_plan(models: pd.DataFrame, est: _Estimator, settings: PopulationSettings, compat: Sequence[str]) -> Plan:
    """One population per architecture instance, task, batch size and ``compat`` columns, in model-id
    order, chunked to ``max_size`` (the grouping before the planner; ``grouping: shape``)."""
    keys = ["arch_key", "task", "batch_size", *[c for c in compat if c not in ("arch_key", "task", "batch_size")]]
    pops = []
    for _, group in models.sort_values("model_id").groupby(keys, sort=False):
        for i in range(0, len(group), settings.max_size):
            part = group.iloc[i:i + settings.max_size]
            pops.append(est.population(part, str(part["arch_key"].iloc[0])))
    return Plan(pops, settings, [])


def plan_table(plan: Plan, architectures: Mapping[str, Mapping], baseline: Plan | None = None) -> Any:
    """A ``rich`` table of the plan: one row per population (models, the architecture options that differ
    between its members and the ones it is padded to, batch sizes, tasks, padded training FLOPs per real
    FLOP, memory, calls and estimated seconds), the totals, and the ``baseline`` plan's (e.g. ``shape``)."""
    from rich.table import Table

    varying = _varying_options([architectures[k] for p in plan.populations for k in p.arch_keys])
    table = Table(title=f"training plan: {len(plan.populations)} populations (grouping {plan.settings.grouping}, "
                        f"max_size {plan.settings.max_size}, max_padding {plan.settings.max_padding:g})")
    for col in ("#", "models", "architectures", "padded to", "batch sizes", "tasks", "FLOPs x", "MB", "calls",
                "est. s"):
        table.add_column(col, justify="left" if col in ("architectures", "padded to", "batch sizes") else "right")
    for i, p in enumerate(plan.populations):
        archs = _options([architectures[k] for k in p.arch_keys], varying)
        table.add_row(str(i), str(len(p.model_ids)), archs, _options([architectures[p.envelope]], varying),
                      ",".join(map(str, p.batch_sizes)), str(p.n_tasks), f"{p.padding:.2f}",
                      f"{p.memory_bytes / 2 ** 20:.0f}", str(p.n_calls), f"{p.seconds:.1f}")
    n_models = sum(len(p.model_ids) for p in plan.populations)
    table.add_section()
    table.add_row("all", str(n_models), "", "", "", "", "", "", str(sum(p.n_calls for p in plan.populations)),
                  f"{plan.seconds:.1f}")
    if baseline is not None:
        table.add_row("shape", str(n_models), f"{len(baseline.populations)} populations", "", "", "", "", "",
                      str(sum(p.n_calls for p in baseline.populations)), f"{baseline.seconds:.1f}")
    return table


def _varying_options(records: Sequence[Mapping]) -> list[str]:
    """Architecture options whose values differ between ``records``."""
    names = sorted({k for r in records for k in dict(r.get("config", {}))})
    return [k for k in names if len({repr(dict(r.get("config", {})).get(k)) for r in records}) > 1]


def _options(records: Sequence[Mapping], names: Sequence[str]) -> str:
    """``width 4,16`` : the values of options ``names`` over ``records`` (architecture name if none)."""
    parts = []
    for k in names:
        values = list(dict.fromkeys(str(dict(r.get("config", {})).get(k)) for r in records))
        parts.append(f"{k} {','.join(values)}")
    return " ".join(parts) or str(records[0]["name"])
