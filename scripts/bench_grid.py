"""Benchmark: a phase grid trained one population per cell (the grouping before the planner) vs the
planner's populations across the grid, in one run, with the same seeds.

For each spec the grid's models are planned (``generators.phase_grid.plan_models``) and grouped twice:
``shape`` (one population per architecture instance, task, batch size and optimiser: a population per
cell) and ``planner`` (``generators.planner``: widths padded together, batch sizes and tasks mixed). Each
grouping's populations are trained with ``generators.population.train_population`` exactly as
``weightzoo generate`` trains them (same members, seeds and tasks), without the store. The arms run
interleaved, ``--repeats`` times each; the table gives wall and CPU seconds, models x epochs per second
and the speedup of the planner over one population per cell, and checks that both groupings give every
model the same final weights (largest absolute difference).

    python scripts/bench_grid.py                                  # demo (all epochs), phase_mnist1d (4 epochs)
    python scripts/bench_grid.py --specs demo --threads 1 2       # also the thread count
    python scripts/bench_grid.py --quick                          # demo_quick, for a smoke test

``--epochs`` trains a fixed number of epochs of the full grid (every population, every call of those
epochs) instead of the spec's: phase_mnist1d's 40 epochs take minutes per arm. Checkpoints: the
initial weights and the last epoch (their evaluation is part of the time).

Writes ``benchmarks/results/grid.json`` and prints a table. The machine's load average (``uptime``) is
recorded before and after every arm.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import time
from pathlib import Path

import torch

from generators.phase_grid import grid_plan, plan_models
from generators.population import Member, PopulationConfig, train_population
from generators.spec import load_spec
from zoo.tasks import build_task

GOALS = {"phase_mnist1d": 4.0, "demo": 3.0}


def load() -> float:
    return round(os.getloadavg()[0], 2)


def grouped(spec, grouping: str):
    """``(models, architectures, task data, [model ids per population], plan)`` of ``spec`` under ``grouping``."""
    models, archs, tasks = plan_models(spec)
    spec = dataclasses.replace(spec, population=spec.population.model_copy(update={"grouping": grouping}))
    plan = grid_plan(spec, models, archs, tasks)
    data = {k: build_task(v) for k, v in tasks.items()}
    return models.set_index("model_id"), archs, data, [p.model_ids for p in plan.populations], plan


def train_grid(spec, grouping: str, epochs: int) -> dict:
    """Train every population of ``spec`` under ``grouping`` for ``epochs`` epochs; timings and final weights."""
    models, archs, data, pops, plan = grouped(spec, grouping)
    estimate = plan.seconds * epochs / spec.epochs  # the cost model's seconds for these epochs (one thread)
    finals: dict[int, torch.Tensor] = {}
    accs: list[float] = []
    before = load()
    wall, cpu = time.perf_counter(), time.process_time()
    for ids in pops:
        rows = [models.loc[i] for i in ids]
        config = PopulationConfig(
            architecture=spec.architecture, arch_config=archs[rows[0]["arch_key"]]["config"],
            optimizer=spec.optimizer["name"], batch_size=int(rows[0]["batch_size"]), epochs=epochs,
            checkpoint_epochs=(0, epochs), schedule=spec.schedule["name"], step_size=spec.schedule["step_size"],
            gamma=spec.schedule["gamma"], betas=tuple(spec.optimizer["betas"]), eps=spec.optimizer["eps"])
        members = [Member(int(r["init_seed"]), int(r["data_seed"]), float(r["lr"]), float(r["weight_decay"]),
                          float(r["momentum"]), batch_size=int(r["batch_size"]),
                          arch_config=archs[r["arch_key"]]["config"]) for r in rows]
        result = train_population(config, members, [data[r["task"]] for r in rows])
        for j, i in enumerate(ids):
            finals[int(i)] = result.weights[j][-1].clone()
            accs.append(float(result.metrics["test_acc"][j, -1]))
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    n = len(models)
    return {"grouping": grouping, "populations": len(pops), "models": n, "epochs": epochs,
            "wall_s": round(wall, 3), "cpu_s": round(cpu, 3), "model_epochs_per_s": round(n * epochs / wall, 2),
            "estimated_s": round(estimate, 3), "mean_final_test_acc": round(sum(accs) / len(accs), 4),
            "load_before": before, "load_after": load(), "_finals": finals}


def run(spec_names: list[str], epochs: dict[str, int | None], threads: list[int], repeats: int) -> list[dict]:
    out = []
    for name in spec_names:
        spec = load_spec(name)
        n_epochs = epochs.get(name) or spec.epochs
        for t in threads:
            torch.set_num_threads(t)
            train_grid(load_spec("demo_quick"), "planner", 1)  # warm-up (allocator, lazy imports), not timed
            arms: dict[str, list[dict]] = {"shape": [], "planner": []}
            for _ in range(repeats):
                for grouping in ("shape", "planner"):
                    arms[grouping].append(train_grid(spec, grouping, n_epochs))
            diff = max(float((arms["shape"][0]["_finals"][i] - arms["planner"][0]["_finals"][i]).abs().max())
                       for i in arms["shape"][0]["_finals"])
            for r in range(repeats):
                base, cand = arms["shape"][r], arms["planner"][r]
                rec = {"spec": name, "threads": t, "repeat": r, "epochs": n_epochs, "spec_epochs": spec.epochs,
                       "models": base["models"], "shape": {k: v for k, v in base.items() if k != "_finals"},
                       "planner": {k: v for k, v in cand.items() if k != "_finals"},
                       "speedup_wall": round(base["wall_s"] / cand["wall_s"], 2),
                       "speedup_cpu": round(base["cpu_s"] / cand["cpu_s"], 2),
                       "max_abs_weight_diff": diff, "goal": GOALS.get(name)}
                out.append(rec)
    return out


def print_table(records: list[dict]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="phase grids: one population per cell (shape) vs the planner, same seeds")
    for col in ("spec", "threads", "run", "epochs", "populations", "shape wall s", "planner wall s", "speedup (wall)",
                "shape cpu s", "planner cpu s", "speedup (cpu)", "est. speedup", "planner model-epochs/s", "load",
                "max |dw|"):
        table.add_column(col, justify="right")
    for r in records:
        s, p = r["shape"], r["planner"]
        table.add_row(r["spec"], str(r["threads"]), str(r["repeat"]), f"{r['epochs']}/{r['spec_epochs']}",
                      f"{s['populations']} -> {p['populations']}", f"{s['wall_s']:.1f}", f"{p['wall_s']:.1f}",
                      f"{r['speedup_wall']:.2f}x", f"{s['cpu_s']:.1f}", f"{p['cpu_s']:.1f}", f"{r['speedup_cpu']:.2f}x",
                      f"{s['estimated_s'] / p['estimated_s']:.2f}x", f"{p['model_epochs_per_s']:.1f}",
                      f"{s['load_before']:.1f}-{p['load_after']:.1f}", f"{r['max_abs_weight_diff']:.1e}")
    Console(width=200).print(table)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--specs", nargs="+", default=["demo", "phase_mnist1d"])
    ap.add_argument("--epochs", nargs="*", default=["phase_mnist1d=4"],
                    help="NAME=EPOCHS: train that many epochs of the full grid (default: phase_mnist1d=4)")
    ap.add_argument("--threads", nargs="+", type=int, default=[1])
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--quick", action="store_true", help="demo_quick, one repeat (smoke test)")
    ap.add_argument("--out", default="benchmarks/results/grid.json")
    args = ap.parse_args()
    specs, repeats = (["demo_quick"], 1) if args.quick else (args.specs, args.repeats)
    epochs = {k: int(v) for k, v in (e.split("=") for e in args.epochs)}
    records = run(specs, epochs, args.threads, repeats)
    print_table(records)
    meta = {"machine": platform.platform(), "cpus": os.cpu_count(), "torch": torch.__version__,
            "note": "times of training only (no store, no landscape metrics); load = 1-min load average"}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    if not args.quick:
        Path(args.out).write_text(json.dumps({"meta": meta, "results": records}, indent=1) + "\n")
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
