"""``weightzoo compose STORE --base ID (--tasks IDS | --family NAME) --method NAME [--shots k] --out OUT.zarr``:
compose task vectors of a model tree (:mod:`weightnets.compose`, ``docs/COMPOSE.md``).

Writes the composed model into a new zoo store (parent = a copy of the base) and prints the accuracy
on every task, absolute and normalised by each child's own accuracy.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any


def _ids(text: str) -> list[int]:
    try:
        return [int(t) for t in text.replace(",", " ").split()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--tasks: expected model ids like '3,5,7', got {text!r}") from None


def _option(text: str) -> tuple[str, Any]:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"--option: expected KEY=VALUE, got {text!r}")
    key, value = text.split("=", 1)
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError:
        parsed = value
    return key.strip(), parsed


def run_compose(args: argparse.Namespace) -> int:
    import torch
    from rich.console import Console
    from rich.table import Table

    import zoo
    from weightnets.compose import (
        ComposeOptions,
        evaluate_composition,
        get_composer,
        load_problem,
        run_composition,
    )
    from weightnets.compose.output import write_composition

    if args.threads < 1:
        raise zoo.ZooError(f"--threads must be >= 1, got {args.threads}")
    if Path(args.out).exists():  # before any work
        raise zoo.ZooError(f"--out {args.out} already exists; choose another path")
    torch.set_num_threads(args.threads)
    get_composer(args.method)  # an unknown name fails before any loading
    z = zoo.open(args.store)
    problem = load_problem(z, args.base, args.tasks, args.family)
    options = ComposeOptions(shots=args.shots, seed=args.seed, steps=args.steps, lr=args.lr,
                             method_options=dict(args.option or []))
    composition = run_composition(problem, args.method, options)
    report = evaluate_composition(problem, composition.flat)
    write_composition(args.out, z, problem, composition, report, shots=args.shots, seed=args.seed)

    console = Console(width=120 if not Console().is_terminal else None)
    table = Table(title=f"{args.method}: base {args.base} + {len(problem.child_ids)} task vectors (test accuracy)")
    for col in ("child", "task", "derivation", "base", "child alone", "composed", "normalised"):
        table.add_column(col, justify="right" if col not in ("task", "derivation") else "left")
    for t, cid in enumerate(problem.child_ids):
        table.add_row(str(cid), problem.task_keys[t], problem.derivations[t], f"{report.base_acc[t]:.3f}",
                      f"{report.child_acc[t]:.3f}", f"{report.acc[t]:.3f}", f"{report.normalized[t]:.3f}")
    s = report.summary()
    table.add_row("mean", "", "", f"{s['mean_base_acc']:.3f}", f"{s['mean_child_acc']:.3f}", f"{s['mean_acc']:.3f}",
                  f"{s['mean_normalized_acc']:.3f}")
    console.print(table)
    if report.source_acc is not None:
        composed, base = report.source_acc
        console.print(f"the base's own task ({problem.base_task_key}): base {base:.3f}, composed {composed:.3f} "
                      f"({composed / base:.1%} kept)")
    console.print(f"fitted on: {composition.data}")
    chosen = composition.selection.get("chosen") or {k: composition.selection[k] for k in ("selected_step",)
                                                       if k in composition.selection}
    if chosen:
        console.print(f"selected: {chosen}")
    console.print(f"wrote {args.out} (model 1 = composed, parent 0 = base {args.base})")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("compose", help="compose task vectors of a model tree (task arithmetic, TIES, DARE, "
                                       "AdaMerging, aTLAS, ...) into one model; write it to a new store")
    p.add_argument("store", help="a model-tree zoo store")
    p.add_argument("--base", type=int, required=True, help="model id of the base (the children's parent)")
    group = p.add_mutually_exclusive_group(required=True)
    group.add_argument("--tasks", type=_ids, help="child ids whose task vectors to compose, e.g. 3,5,7")
    group.add_argument("--family", help="compose every child of the base in this derivation family "
                                        "(class_subset, label_permutation, corruption)")
    p.add_argument("--method", required=True, help="composition method (an unknown name lists them all)")
    p.add_argument("--shots", type=int, default=None,
                   help="labelled examples per class per task: aTLAS fits on them, merge methods select λ on "
                        "them (default: the validation split)")
    p.add_argument("--out", required=True, help="new store to write (OUT.zarr)")
    p.add_argument("--seed", type=int, default=0, help="few-shot draw, DARE mask, CMA-ES, shuffling")
    p.add_argument("--steps", type=int, default=300, help="optimiser steps of learned coefficients")
    p.add_argument("--lr", type=float, default=None, help="learning rate of learned coefficients")
    p.add_argument("--option", type=_option, action="append",
                   help="override a merge method's option, e.g. --option aggregation=sum --option density=0.2")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    p.set_defaults(func=run_compose, interrupted="nothing was written to --out; rerun the same command to start again")
