"""Benchmark task-vector composition on a model-tree zoo; writes benchmarks/results/compose.json.

1. **Accuracy.** For every task set of ``benchmarks/compose_tasksets.yaml`` (fixed before any method was
   compared) and every seed (= one base of the ``tree_compose`` tree with its children), the rows: the
   base, each child alone (the upper bound), every merge method (λ — and TIES' density or DARE's drop
   probability — chosen on the validation split), AdaMerging task- and layer-wise, aTLAS with
   k ∈ {1, 2, 4, 8, 16} labelled examples per class, aTLAS test-time adaptation (entropy; confident
   pseudo-labels), CMA-ES over task-wise coefficients, and a model fine-tuned from the base on the
   union of the tasks' training splits (the reference; trained with ``generators.train_single``).
   Learned rows run ``--steps`` Adam steps and keep the step with the best validation accuracy (checked
   every 20 steps, including step 0); every row's hyperparameters therefore come from the same labelled
   validation split, never from the test split. The ``@last`` rows repeat the learned rows keeping the last
   step instead (no selection: aTLAS then sees only its ``k`` shots, AdaMerging no labels at all). Reported: mean test accuracy over the set's tasks, absolute and normalised
   by each child's own accuracy, mean ± std over the seeds.
2. **Coefficient step.** Time and peak extra memory of one coefficient-learning step (compose, forward,
   cross-entropy, backward, Adam) of the fused path (``kernels.compose`` + ``functional_call``) against
   an aTLAS-style per-tensor Python loop with every task vector resident as per-tensor tensors, at the
   tree zoo's size and at N = 10⁷ parameters. Each arm runs in its own subprocess; memory is the growth of
   ``ru_maxrss`` during the first step (inputs already allocated, after a warm-up on a tiny problem).
3. **Weight matching and robust weight signatures** on the same tree.

    python scripts/bench_compose.py                 # everything (about 30 min on 2 loaded cores)
    python scripts/bench_compose.py --only step     # only the step timing
    python scripts/bench_compose.py --seeds 0 --tasksets corruption --steps 100   # a quick look
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
TASKSETS = ROOT / "benchmarks" / "compose_tasksets.yaml"
OUT = ROOT / "benchmarks" / "results" / "compose.json"

MERGE_ROWS = ["task_arithmetic", "ties", "dare_ties", "dare_linear", "average"]
LEARNED_ROWS = ["adamerging_task", "adamerging_layer", "atlas_k1", "atlas_k2", "atlas_k4", "atlas_k8", "atlas_k16",
                "atlas_tta", "atlas_pseudo", "cma_task"]
# the same learned rows without validation stopping: the last of the --steps steps is kept
LAST_STEP_ROWS = [f"{r}@last" for r in LEARNED_ROWS if r != "cma_task"]


def _load() -> str:
    try:
        return Path("/proc/loadavg").read_text().strip()
    except OSError:
        return "unknown"


# ---------------------------------------------------------------------------------------------- accuracy
def tree_store(path: Path) -> Path:
    from generators import generate
    from generators.spec import resolve_spec_path

    if not (path / "zarr.json").exists():
        generate(resolve_spec_path("tree_compose"), path, progress=False)
    return path


def children_for(z, base: int, spec: dict[str, list[int]]) -> list[int]:
    m = z.models
    kids = m[m["parent_id"] == base]
    out = []
    for family, indices in spec.items():
        for i in indices:
            row = kids[(kids["derivation"] == family) & (kids["derived_index"] == i)]
            if len(row) != 1:
                raise SystemExit(f"task set: base {base} has no {family} child with derived_index {i}")
            out.append(int(row["model_id"].iloc[0]))
    return out


def finetune_union(z, problem, seed: int) -> Any:
    """The reference: the base fine-tuned on the union of the tasks' training splits with the children's
    optimiser (SGD, lr 0.02, momentum 0.9, batch 64, 10 epochs; ``generators.train_single``)."""
    import torch

    from generators import Member, PopulationConfig, train_single
    from zoo import TaskData

    tasks = problem.tasks
    union = TaskData(torch.cat([t.x_train for t in tasks]), torch.cat([t.y_train for t in tasks]),
                     tasks[0].x_test, tasks[0].y_test, tasks[0].n_classes, tasks[0].input_shape, tasks[0].classes)
    arch = z.architectures[z.arch_of([problem.base_id])]
    config = PopulationConfig(architecture=arch["name"], arch_config=arch["config"], optimizer="sgd", batch_size=64,
                              epochs=10, checkpoint_epochs=(10,))
    result = train_single(config, Member(0, 30000 + seed, 0.02, 0.0, 0.9), union,
                          start_weights=problem.vectors.base)
    return result.weights[0, -1]


def run_accuracy(z, tasksets: dict, seeds: list[int], steps: int, rows: list[str]) -> dict:
    import numpy as np
    import torch

    from weightnets.compose import (
        ComposeOptions,
        evaluate_composition,
        load_problem,
        run_composition,
    )

    bases = sorted(z.models.loc[z.models["tree_role"] == "base", "model_id"].tolist())
    results: dict[str, Any] = {}
    for name, spec in tasksets.items():
        per_row: dict[str, dict[str, list]] = {}
        tasks_meta = []
        for seed in seeds:
            base = bases[seed]
            kids = children_for(z, base, spec)
            problem = load_problem(z, base, tasks=kids)
            tasks_meta.append({"base": base, "children": kids, "derivations": problem.derivations})
            if name == "class_cover":
                covered = set()
                for k in kids:
                    covered |= {int(c) for c in str(z.models.loc[k, "class_subset"]).split(",")}
                if covered != set(range(problem.tasks[0].n_classes)):
                    raise SystemExit(f"task set class_cover does not cover every class (covers {sorted(covered)})")

            def record(row: str, acc, norm, extra: dict | None = None) -> None:
                r = per_row.setdefault(row, {"acc": [], "normalized": [], "per_task_acc": [], "extra": []})
                r["acc"].append(float(np.mean(acc)))
                r["normalized"].append(float(np.mean(norm)))
                r["per_task_acc"].append([float(a) for a in acc])
                r["extra"].append(extra or {})

            ref = evaluate_composition(problem, problem.vectors.base)
            record("base", ref.base_acc, ref.base_acc / ref.child_acc)
            record("children", ref.child_acc, np.ones_like(ref.child_acc))
            for row in rows:
                t0 = time.perf_counter()
                if row == "finetuned_union":
                    flat = finetune_union(z, problem, seed)
                    rep = evaluate_composition(problem, flat)
                    record(row, rep.acc, rep.normalized, {"seconds": time.perf_counter() - t0})
                    continue
                method, shots = row.removesuffix("@last"), None
                if method.startswith("atlas_k"):
                    method, shots = "atlas", int(method[len("atlas_k"):])
                options = ComposeOptions(shots=shots, seed=seed, steps=steps,
                                         select_every=None if row.endswith("@last") else 20)
                torch.manual_seed(seed)
                comp = run_composition(problem, method, options)
                rep = evaluate_composition(problem, comp.flat)
                sel = {k: v for k, v in comp.selection.items() if k not in ("grid", "history")}
                record(row, rep.acc, rep.normalized, {"seconds": time.perf_counter() - t0, "selection": sel})
                print(f"  {name} seed {seed} {row:18s} acc {np.mean(rep.acc):.3f} norm {np.mean(rep.normalized):.3f} "
                      f"({time.perf_counter() - t0:.1f}s)", flush=True)
        for r in per_row.values():
            for key in ("acc", "normalized"):
                r[f"{key}_mean"] = float(np.mean(r[key]))
                r[f"{key}_std"] = float(np.std(r[key], ddof=1)) if len(r[key]) > 1 else 0.0
        results[name] = {"spec": spec, "seeds": tasks_meta, "rows": per_row}
    return results


# ---------------------------------------------------------------------------------------------- step timing
def _maxrss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _profiled_peak(fn) -> int:
    """Peak extra bytes torch allocates on the CPU while ``fn()`` runs: allocations and frees in time
    order (``torch.profiler`` with ``profile_memory``; each attributed once, to the innermost op)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    current = peak = 0
    for e in sorted(prof.events(), key=lambda ev: ev.time_range.start):
        if e.self_cpu_memory_usage:
            current += e.self_cpu_memory_usage
            peak = max(peak, current)
    return int(peak)


def _step_child(cfg: dict) -> dict:
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(int(cfg["threads"]))
    import kernels
    import zoo
    from weightnets.compose.coefficients import split_params

    def build(width: int, T: int, per_task: int):
        torch.manual_seed(0)
        arch = zoo.build_architecture("mlp", (40,), 10, {"width": width, "depth": 2})
        layout = zoo.layout_of(arch)
        base = torch.empty(layout.n_params).normal_(0.0, 0.02)  # in place: no temporaries raise ru_maxrss
        stack = torch.empty(T, layout.n_params).normal_(0.0, 0.002)
        x = torch.randn(T * per_task, 40)
        y = torch.randint(10, (T * per_task,))
        return arch, layout, base, stack, x, y

    def fused_setup(layout, base, stack, state):
        spec = kernels.BlockSpec.from_layout(layout)
        state["c"] = torch.zeros(stack.shape[0], spec.n_blocks, requires_grad=True)

        def compose():
            return split_params(layout, kernels.compose(base, stack, state["c"], spec, backend="torch"))
        return compose

    def loop_setup(layout, base, stack, state):
        # aTLAS reference style: every task vector resident as a dict of per-tensor tensors; each composed
        # parameter tensor built in a Python loop over tensors and tasks
        names = layout.names
        base_d = dict(layout.unflatten(base))
        tvs = [dict(layout.unflatten(stack[t])) for t in range(stack.shape[0])]
        state["c"] = torch.zeros(stack.shape[0], len(names), requires_grad=True)

        def compose():
            params = {}
            for k, n in enumerate(names):
                p = base_d[n]
                for t, tv in enumerate(tvs):
                    p = p + state["c"][t, k] * tv[n]
                params[n] = p
            return params
        return compose

    setup = fused_setup if cfg["method"] == "fused" else loop_setup

    def make(arch, layout, base, stack, x, y):
        state: dict = {}
        compose = setup(layout, base, stack, state)
        opt = torch.optim.Adam([state["c"]], lr=0.01)

        def step():
            loss = F.cross_entropy(torch.func.functional_call(arch, compose(), (x,)), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            return state["c"].grad

        upstream = {n: torch.randn(e.shape, generator=torch.Generator().manual_seed(1)) for n, e in
                    ((e.name, e) for e in layout)}

        def composition_only():  # compose forward + the coefficient gradient, no network
            params = compose()
            total = sum((params[n] * upstream[n]).sum() for n in params)
            return torch.autograd.grad(total, state["c"])[0]
        return step, composition_only

    warm_step, warm_comp = make(*build(8, 2, 4))  # pays the one-time dispatcher / library costs
    warm_step(), warm_comp()
    step, comp = make(*build(int(cfg["width"]), int(cfg["T"]), int(cfg["per_task"])))
    before = _maxrss()
    grad = step()
    rss_growth = _maxrss() - before
    timings = {}
    for name, fn in (("step", step), ("composition", comp)):
        times = []
        for _ in range(int(cfg["reps"])):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        timings[name] = {"best_s": min(times), "median_s": sorted(times)[len(times) // 2]}
    return {"n_params": int(sum(p.numel() for p in build(int(cfg["width"]), 1, 1)[0].parameters())),
            "step": {**timings["step"], "peak_extra_bytes": _profiled_peak(step), "rss_growth_first_step": rss_growth},
            "composition": {**timings["composition"], "peak_extra_bytes": _profiled_peak(comp)},
            "grad_norm": float(grad.norm())}


def run_step(threads: int, reps_small: int, reps_big: int) -> dict:
    configs = [
        {"label": "tree zoo size (tree_compose MLP, T = 8)", "width": 64, "T": 8, "per_task": 16, "reps": reps_small},
        {"label": "N = 1e7 (MLP 40-3150-3150-10, T = 8)", "width": 3150, "T": 8, "per_task": 16, "reps": reps_big},
    ]
    out = []
    for cfg in configs:
        row = {"label": cfg["label"], "T": cfg["T"], "examples_per_task": cfg["per_task"]}
        for method in ("fused", "loop"):
            run = subprocess.run([sys.executable, __file__, "--step-child",
                                  json.dumps({**cfg, "method": method, "threads": threads})],
                                 capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
            if run.returncode != 0:
                raise SystemExit(f"step child failed: {run.stderr[-2000:]}")
            row[method] = json.loads(run.stdout.strip().splitlines()[-1])
        for part in ("step", "composition"):
            f, lp = row["fused"][part], row["loop"][part]
            row[f"{part}_speedup"] = lp["best_s"] / f["best_s"]
            row[f"{part}_memory_ratio"] = lp["peak_extra_bytes"] / max(f["peak_extra_bytes"], 1)
            print(f"  {part} {row['label']}: fused {f['best_s'] * 1e3:.2f} ms {f['peak_extra_bytes'] / 2**20:.2f} MiB"
                  f" | loop {lp['best_s'] * 1e3:.2f} ms {lp['peak_extra_bytes'] / 2**20:.2f} MiB | "
                  f"x{row[f'{part}_speedup']:.2f} time, x{row[f'{part}_memory_ratio']:.2f} memory", flush=True)
        row["speedup"], row["memory_ratio"] = row["step_speedup"], row["step_memory_ratio"]
        row["same_gradient"] = abs(row["loop"]["grad_norm"] - row["fused"]["grad_norm"]) <= 1e-4 * max(
            1.0, row["fused"]["grad_norm"])
        out.append(row)
    return {"threads": threads, "rows": out}


# ---------------------------------------------------------------------------------------------- matching, signatures
def run_matching_and_signatures(z, seeds: list[int]) -> dict:
    import numpy as np

    from weightnets.compose import load_problem
    from weightnets.compose.matching import match_and_compare
    from weightnets.compose.signatures import (
        extract_signature,
        signature_report,
        transfer,
    )

    bases = sorted(z.models.loc[z.models["tree_role"] == "base", "model_id"].tolist())
    matching = []
    for s in seeds:
        a_id, b_id = bases[s], bases[(s + 1) % len(bases)]
        pa = load_problem(z, a_id, family="corruption")
        pb = load_problem(z, b_id, family="corruption")
        x, y = pa.base_task.split("test")
        rep = match_and_compare(pa.vectors.layout, pa.vectors.base, pb.vectors.base, pa.arch, x, y, seed=s)
        matching.append({"a": a_id, "b": b_id, **rep.as_dict()})
    sig_rows: dict[str, list] = {}
    for s in seeds:
        src = load_problem(z, bases[s], family="corruption")
        dst = load_problem(z, bases[(s + 1) % len(bases)], family="corruption")
        for t in range(src.vectors.n_tasks):
            for layers in (1, 2):
                for q in (None, "int8"):
                    sig = extract_signature(src.vectors.stack[t], src.vectors.layout, layers, q)
                    own = signature_report(src.vectors.base, sig, src.arch, src.tasks[t], src.base_task,
                                           child=src.vectors.children()[t])
                    moved = transfer(sig, src.vectors.base, dst.vectors.base, seed=s)
                    if q == "int8":
                        moved = extract_signature(moved.dense(), src.vectors.layout, layers, "int8")
                    tr = signature_report(dst.vectors.base, moved, src.arch, src.tasks[t], dst.base_task)
                    naive = signature_report(dst.vectors.base, sig, src.arch, src.tasks[t], dst.base_task)
                    key = f"layers{layers}_{q or 'float32'}"
                    sig_rows.setdefault(key, []).append({
                        "seed": s, "child": src.child_ids[t], "own_base": own.as_dict(),
                        "transfer_matched": tr.as_dict(), "transfer_naive": naive.as_dict()})
    summary = {}
    for key, items in sig_rows.items():
        def stat(path):
            vals = [it[path[0]][path[1]] for it in items]
            return {"mean": float(np.mean(vals)), "std": float(np.std(vals, ddof=1))}

        summary[key] = {"corrupted_gain": stat(("own_base", "corrupted_gain")),
                        "clean_kept": stat(("own_base", "clean_kept")),
                        "child_gain": {"mean": float(np.mean([it["own_base"]["child_corrupted"] - it["own_base"][
                            "corrupted_before"] for it in items]))},
                        "storage_ratio": stat(("own_base", "storage_ratio")),
                        "transfer_matched_gain": stat(("transfer_matched", "corrupted_gain")),
                        "transfer_matched_clean_kept": stat(("transfer_matched", "clean_kept")),
                        "transfer_naive_gain": stat(("transfer_naive", "corrupted_gain")),
                        "transfer_naive_clean_kept": stat(("transfer_naive", "clean_kept"))}
    return {"matching": matching, "signatures": {"summary": summary, "items": sig_rows}}


# ---------------------------------------------------------------------------------------------- task negation
def run_negation(z, seeds: list[int], steps: int, targets: list[int]) -> dict:
    """Task negation of the corruption children ``targets`` (derived indices) of every seed's base: aTLAS
    (``negation`` objective: the target's unlabelled training inputs to chance, 16 labelled examples per
    class of the base's own task as control) against task-arithmetic negation ``θ_base − λ τ`` with λ
    chosen on the validation splits (the lowest target accuracy whose control accuracy stays ≥ 95% of the
    base's; the largest λ in the grid keeps the most forgetting when several tie)."""
    import numpy as np
    import torch

    from weightnets.compose import ComposeOptions, load_problem, run_composition
    from weightnets.compose.methods import scaled_models
    from weightnets.evaluate import evaluate_on_tasks

    bases = sorted(z.models.loc[z.models["tree_role"] == "base", "model_id"].tolist())
    items = []
    for seed in seeds:
        base = bases[seed]
        for idx in targets:
            kid = children_for(z, base, {"corruption": [idx]})
            problem = load_problem(z, base, tasks=kid)
            both = [problem.tasks[0], problem.base_task]
            v = problem.vectors
            lams = [0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0]
            cands = scaled_models(v.base, v.stack[0], [-lam for lam in lams])
            val = evaluate_on_tasks(torch.cat([v.base[None], cands]), problem.arch, both, "val").acc
            ok = [i for i in range(len(lams)) if val[1 + i, 1] >= 0.95 * val[0, 1]]
            pick = min(ok, key=lambda i: (val[1 + i, 0], -lams[i])) if ok else None
            torch.manual_seed(seed)
            comp = run_composition(problem, "atlas_negation", ComposeOptions(shots=16, seed=seed, steps=steps))
            rows = [v.base, v.children()[0], comp.flat] + ([cands[pick]] if pick is not None else [])
            test = evaluate_on_tasks(torch.stack(rows), problem.arch, both, "test").acc
            item = {"seed": seed, "base": base, "child": kid[0], "derivation": str(z.models.loc[kid[0], "corruption"]),
                    "level": float(z.models.loc[kid[0], "corruption_level"]), "chance": 1.0 / problem.tasks[0].n_classes,
                    "base_target_acc": float(test[0, 0]), "base_control_acc": float(test[0, 1]),
                    "child_target_acc": float(test[1, 0]),
                    "atlas_target_acc": float(test[2, 0]), "atlas_control_retained": float(test[2, 1] / test[0, 1]),
                    "ta_lambda": None if pick is None else -lams[pick],
                    "ta_target_acc": None if pick is None else float(test[3, 0]),
                    "ta_control_retained": None if pick is None else float(test[3, 1] / test[0, 1])}
            items.append(item)
            print(f"  negation seed {seed} child {kid[0]}: target {item['base_target_acc']:.3f} -> aTLAS "
                  f"{item['atlas_target_acc']:.3f} (control kept {item['atlas_control_retained']:.1%}), TA "
                  f"{item['ta_target_acc']} (λ {item['ta_lambda']})", flush=True)

    def stat(key):
        vals = [it[key] for it in items if it[key] is not None]
        if not vals:
            return {"mean": None, "std": None, "n": 0}
        return {"mean": float(np.mean(vals)), "std": float(np.std(vals, ddof=1)) if len(vals) > 1 else 0.0,
                "n": len(vals)}

    summary = {k: stat(k) for k in ("base_target_acc", "atlas_target_acc", "atlas_control_retained",
                                     "ta_target_acc", "ta_control_retained")}
    summary["atlas_control_goal_met"] = sum(it["atlas_control_retained"] >= 0.95 for it in items)
    summary["n"] = len(items)
    return {"targets": targets, "items": items, "summary": summary}


# ---------------------------------------------------------------------------------------------- goals
def check_goals(acc: dict, step: dict | None, negation: dict | None = None) -> dict:
    """The issue's goals on the measured normalised accuracies (both protocols of the learned rows)."""
    goals: dict[str, Any] = {}
    if acc:
        per_set = {}
        for name, res in acc.items():
            rows = res["rows"]
            entry = {}
            for label, suffix in (("validation_stopped", ""), ("last_step", "@last")):
                order = ["base", "task_arithmetic", "ties", f"adamerging_layer{suffix}", f"atlas_k16{suffix}",
                         "finetuned_union"]
                if not all(r in rows for r in order):
                    continue
                m = {r: rows[r]["normalized_mean"] for r in order}
                b, ta, ties, ada, atlas, ft = (m[r] for r in order)
                atlas_rows = [r for r in rows if r.startswith("atlas_k") and r.endswith(suffix)
                              and (suffix or "@" not in r)]
                entry[label] = {
                    "normalized": m, "ordering_met": b < ta < ties < ada <= atlas < ft,
                    "pairs": {"base<TA": b < ta, "TA<TIES": ta < ties, "TIES<AdaMerging-layer": ties < ada,
                              "AdaMerging-layer<=aTLAS": ada <= atlas, "aTLAS<fine-tuned": atlas < ft},
                    "atlas_k16_minus_ta": atlas - ta,
                    "atlas_never_below_ta": {r: rows[r]["normalized_mean"] >= ta for r in atlas_rows}}
            per_set[name] = entry
        goals["per_taskset"] = per_set
        for label in ("validation_stopped", "last_step"):
            vals = [e[label] for e in per_set.values() if label in e]
            if vals:
                goals[f"{label}_atlas_ta_plus_10_on_some_set"] = any(v["atlas_k16_minus_ta"] >= 0.10 for v in vals)
                goals[f"{label}_atlas_never_below_ta"] = all(all(v["atlas_never_below_ta"].values()) for v in vals)
    if negation:
        s = negation["summary"]
        drop = s["base_target_acc"]["mean"] - s["atlas_target_acc"]["mean"]
        goals["negation"] = {"control_kept_95": [s["atlas_control_goal_met"], s["n"]],
                             "target_accuracy_drop": drop,
                             "met": drop > 0 and s["atlas_control_goal_met"] == s["n"]}
    if step:
        goals["step"] = [{"label": r["label"], "speedup": r["speedup"], "memory_ratio": r["memory_ratio"],
                          "faster_3x": r["speedup"] >= 3, "less_memory_3x": r["memory_ratio"] >= 3}
                         for r in step["rows"]]
    return goals


def print_tables(acc: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=140)
    for name, res in acc.items():
        table = Table(title=f"{name}: mean test accuracy over the set's tasks, mean ± std over "
                            f"{len(res['seeds'])} seeds (normalised = ÷ each child's own accuracy)")
        table.add_column("row")
        table.add_column("accuracy", justify="right")
        table.add_column("normalised", justify="right")
        for row, r in res["rows"].items():
            table.add_row(row, f"{r['acc_mean']:.3f} ± {r['acc_std']:.3f}",
                          f"{r['normalized_mean']:.3f} ± {r['normalized_std']:.3f}")
        console.print(table)


def markdown(result: dict) -> str:
    """The tables of docs/COMPOSE.md from a results file."""
    out = []
    acc = result.get("accuracy") or {}
    if acc:
        names = list(acc)
        rows = list(next(iter(acc.values()))["rows"])
        out.append("| row | " + " | ".join(names) + " |")
        out.append("|---|" + "---|" * len(names))
        for row in rows:
            cells = []
            for n in names:
                r = acc[n]["rows"].get(row)
                cells.append("—" if r is None else f"{r['acc_mean']:.3f} ± {r['acc_std']:.3f} / "
                                                    f"**{r['normalized_mean']:.3f} ± {r['normalized_std']:.3f}**")
            out.append(f"| {row} | " + " | ".join(cells) + " |")
    step = result.get("step")
    if step:
        out.append("")
        out.append("| size | part | fused (kernels.compose) | aTLAS-style loop | time ratio | memory ratio |")
        out.append("|---|---|---|---|---|---|")
        for r in step["rows"]:
            for part in ("step", "composition"):
                f, lp = r["fused"][part], r["loop"][part]
                out.append(f"| {r['label']} | {part} | {f['best_s'] * 1e3:.2f} ms, {f['peak_extra_bytes'] / 2**20:.2f} MiB"
                           f" | {lp['best_s'] * 1e3:.2f} ms, {lp['peak_extra_bytes'] / 2**20:.2f} MiB | "
                           f"{r[part + '_speedup']:.2f}x | {r[part + '_memory_ratio']:.2f}x |")
    ms = result.get("matching_signatures")
    if ms:
        out.append("")
        out.append("| models | loss barrier before → after | error barrier before → after | midpoint accuracy "
                   "before → after | endpoints |")
        out.append("|---|---|---|---|---|")
        for m in ms["matching"]:
            out.append(f"| base {m['a']} ↔ base {m['b']} | {m['loss_barrier_before']:.3f} → {m['loss_barrier_after']:.3f}"
                       f" | {m['error_barrier_before']:.3f} → {m['error_barrier_after']:.3f} | "
                       f"{m['average_acc_before']:.3f} → {m['average_acc_after']:.3f} | "
                       f"{m['endpoint_acc'][0]:.3f}, {m['endpoint_acc'][1]:.3f} |")
        out.append("")
        out.append("| signature | storage ratio | corrupted gain (own base) | clean kept | corrupted gain of the full "
                   "child | transferred, matched: gain / clean kept | transferred, not matched: gain / clean kept |")
        out.append("|---|---|---|---|---|---|---|")
        for k, v in ms["signatures"]["summary"].items():
            out.append(f"| {k} | {v['storage_ratio']['mean']:.3f} | {v['corrupted_gain']['mean']:+.3f} ± "
                       f"{v['corrupted_gain']['std']:.3f} | {v['clean_kept']['mean']:.3f} | "
                       f"{v['child_gain']['mean']:+.3f} | {v['transfer_matched_gain']['mean']:+.3f} / "
                       f"{v['transfer_matched_clean_kept']['mean']:.3f} | {v['transfer_naive_gain']['mean']:+.3f} / "
                       f"{v['transfer_naive_clean_kept']['mean']:.3f} |")
    neg = result.get("negation")
    if neg:
        s = neg["summary"]
        out.append("")
        out.append("| negation | target accuracy | control kept |")
        out.append("|---|---|---|")
        out.append(f"| base | {s['base_target_acc']['mean']:.3f} ± {s['base_target_acc']['std']:.3f} | 1 |")
        out.append(f"| aTLAS (negation objective, 16 shots of control) | {s['atlas_target_acc']['mean']:.3f} ± "
                   f"{s['atlas_target_acc']['std']:.3f} | {s['atlas_control_retained']['mean']:.3f} |")
        ta = s["ta_target_acc"]
        out.append("| task arithmetic θ − λτ (λ on validation, control ≥ 95%) | "
                   + (f"{ta['mean']:.3f} ({ta['n']} of {s['n']} with a feasible λ)" if ta.get("n") else
                      f"no λ kept the control ≥ 95% (0 of {s['n']})") + " | "
                   + (f"{s['ta_control_retained']['mean']:.3f}" if s["ta_control_retained"].get("n") else "—") + " |")
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--store", default="runs/bench_compose/tree_compose.zarr", help="tree store (generated if absent)")
    ap.add_argument("--seeds", type=int, nargs="*", default=None)
    ap.add_argument("--tasksets", nargs="*", default=None)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--rows", nargs="*", default=None, help="subset of rows")
    ap.add_argument("--only", choices=["accuracy", "step", "signatures", "negation"], default=None)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=str(OUT))
    ap.add_argument("--markdown", action="store_true", help="print the tables of docs/COMPOSE.md from --out")
    ap.add_argument("--step-child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.step_child:
        print(json.dumps(_step_child(json.loads(args.step_child))))
        return
    if args.markdown:
        print(markdown(json.loads(Path(args.out).read_text())))
        return

    import torch
    import yaml

    import zoo

    torch.set_num_threads(args.threads)
    spec = yaml.safe_load(TASKSETS.read_text())
    seeds = args.seeds if args.seeds is not None else list(spec["seeds"])
    tasksets = {k: v for k, v in spec["tasksets"].items() if args.tasksets is None or k in args.tasksets}
    rows = args.rows or (MERGE_ROWS + LEARNED_ROWS + LAST_STEP_ROWS + ["finetuned_union"])
    out_path = Path(args.out)
    previous = json.loads(out_path.read_text()) if out_path.exists() else {}
    result: dict[str, Any] = {
        "benchmark": "compose", "tasksets_file": str(TASKSETS.relative_to(ROOT)), "tasksets_spec": spec,
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "threads": args.threads,
                    "torch": torch.__version__, "loadavg_start": _load()},
        "protocol": {"steps": args.steps, "select_every": 20, "seeds": seeds, "rows": rows,
                     "selection": "validation split (20% of each task's training split) for every row's "
                                  "hyperparameters: λ/density/p of merge methods, the stopping step of learned "
                                  "coefficients (rows ending in @last keep the last step instead); the test split "
                                  "is only evaluated. The tree's models were trained on their whole training "
                                  "split, so the validation examples are examples they have seen."},
    }
    start = time.perf_counter()
    runs = dict(previous.get("runs", {}))
    if args.only in (None, "accuracy", "signatures", "negation"):
        z = zoo.open(tree_store(Path(args.store)))

    def part(name: str, fn, key: str | None = None):
        if args.only not in (None, name):
            return previous.get(key or name)
        t0, load0 = time.perf_counter(), _load()
        value = fn()
        runs[name] = {"loadavg_start": load0, "loadavg_end": _load(), "wall_s": time.perf_counter() - t0,
                      "steps": args.steps, "seeds": seeds, "threads": args.threads}
        return value

    result["accuracy"] = part("accuracy", lambda: run_accuracy(z, tasksets, seeds, args.steps, rows)) or {}
    if args.only in (None, "accuracy"):
        print_tables(result["accuracy"])
    result["step"] = part("step", lambda: run_step(args.threads, 50, 5))
    result["matching_signatures"] = part("signatures", lambda: run_matching_and_signatures(z, seeds), "matching_signatures")
    result["negation"] = part("negation", lambda: run_negation(z, seeds, args.steps, targets=[2, 5]))
    result["runs"] = runs
    result["goals"] = check_goals(result["accuracy"], result["step"], result.get("negation"))
    result["machine"]["loadavg_end"] = _load()
    result["wall_s"] = time.perf_counter() - start
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result["goals"], indent=1))
    print(f"wrote {out_path} in {result['wall_s']:.0f} s (load {result['machine']['loadavg_start']} -> "
          f"{result['machine']['loadavg_end']})")


if __name__ == "__main__":
    main()
