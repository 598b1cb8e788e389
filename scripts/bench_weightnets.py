"""Benchmark of the weight-space learners: ProbeX (tree experts / one across trees), Dense, StatNN (GBM and
MLP) and NFN (NP and HNP) on the same zoos, data module, splits, metrics and seeds.

Tasks (columns):

* class-set prediction on ``tree_probex`` (class-subset children; multi-hot target ``classes``): for the
  MLP trees and the 1-D CNN trees separately, on the hidden layers (``layer: auto`` sweeps them and keeps
  the best on validation; StatNN reads the hidden layers' tensors) and on the output layer reported
  apart (its bias leaks the class set): ``label_acc``, ``subset_acc``, and the router's ``route_acc``;
* test-accuracy prediction on ``hparam_mnist1d`` (Kendall τ, R²): from the final checkpoint (one example
  per model), and from every checkpoint (``accuracy_all``: each model-checkpoint pair is an example, the
  initialisation and early epochs included, so the accuracies spread far wider);
* phase classification on ``phase_mnist1d`` (accuracy; every width at once, so only the learners that
  take several architectures: StatNN and NFN).

Each (learner, task) runs ``weightzoo fit`` with the shipped config (``weightnets/configs``) in a
subprocess, one fit per seed (``--seed_everything`` and the data module's shuffle seed), with one torch
thread. Everything is selected on validation (best epoch, best layer); test metrics are only reported.
Trained parameters and train time come from ``RUN/test_metrics.json``; peak memory is the subprocess's
maximum resident set size (``os.wait4``), which includes the interpreter and the libraries (the JSON
records that baseline, measured by a subprocess that only imports them).

The zoos are generated into ``--cache`` (default ``runs/bench_weightnets``) with ``generators.generate``
(resumable: a complete store is reused). Results: ``benchmarks/results/weightnets.json``, the table
printed, and with ``--docs`` written into ``docs/WEIGHTNETS.md`` between its benchmark markers.

    python scripts/bench_weightnets.py [--seeds 0 1 2] [--only ROW ...] [--tasks TASK ...] [--docs]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "weightnets" / "configs"
RESULTS = ROOT / "benchmarks" / "results" / "weightnets.json"
DOC = ROOT / "docs" / "WEIGHTNETS.md"
MARK_START, MARK_END = "<!-- bench_weightnets:start -->", "<!-- bench_weightnets:end -->"

ZOOS = {"tree_probex": "tree_probex", "hparam": "hparam_mnist1d", "phase": "phase_mnist1d"}


def _sel(arch: str) -> str:
    return f"derivation == 'class_subset' and architecture == '{arch}'"


# task -> (zoo, data overrides, layer override for layer probes, tensors override for StatNN)
TASKS = {
    "mlp_hidden": ("tree_probex", ["--data.select", _sel("mlp")], "auto", "hidden"),
    "mlp_output": ("tree_probex", ["--data.select", _sel("mlp")], "output", "output"),
    "cnn_hidden": ("tree_probex", ["--data.select", _sel("cnn1d")], "auto", "hidden"),
    "cnn_output": ("tree_probex", ["--data.select", _sel("cnn1d")], "output", "output"),
    "accuracy": ("hparam", [], None, None),
    "accuracy_all": ("hparam", ["--data.checkpoint", "all"], None, None),
    "phase": ("phase", [], None, None),
}
CLASS_TASKS = ["mlp_hidden", "mlp_output", "cnn_hidden", "cnn_output"]

# row -> {task: config}; the task's overrides are added (layer for LayerProbe, tensors for StatNN)
ROWS = {
    "ProbeX (tree experts, routed)": {**{t: "probex_classes.yaml" for t in CLASS_TASKS},
                                      "accuracy": "probex_accuracy.yaml", "accuracy_all": "probex_accuracy.yaml"},
    "ProbeX (one across trees)": {t: "probex_single_classes.yaml" for t in CLASS_TASKS},
    "Dense (linear probe)": {**{t: "dense_classes.yaml" for t in CLASS_TASKS},
                             "accuracy": "dense_accuracy.yaml", "accuracy_all": "dense_accuracy.yaml"},
    "StatNN, GBM": {**{t: "statnn_classes.yaml" for t in CLASS_TASKS}, "accuracy": "statnn_accuracy.yaml",
                    "accuracy_all": "statnn_accuracy.yaml", "phase": "statnn_phase.yaml"},
    "StatNN, MLP": {**{t: "statnn_mlp_classes.yaml" for t in CLASS_TASKS}, "accuracy": "statnn_mlp_accuracy.yaml",
                    "accuracy_all": "statnn_mlp_accuracy.yaml", "phase": "statnn_mlp_phase.yaml"},
    "NFN, NP": {"accuracy": "nfn_accuracy.yaml", "accuracy_all": "nfn_accuracy.yaml", "phase": "nfn_phase.yaml"},
    "NFN, HNP": {"accuracy": "nfn_hnp_accuracy.yaml", "accuracy_all": "nfn_hnp_accuracy.yaml",
                 "phase": "nfn_hnp_phase.yaml"},
}
METRICS = {"classes": ["label_acc", "subset_acc", "map", "route_acc"], "accuracy": ["kendall_tau", "r2", "mae"],
           "accuracy_all": ["kendall_tau", "r2", "mae"], "phase": ["acc", "balanced_acc"]}


def metric_names(task: str) -> list[str]:
    return METRICS["classes"] if task in CLASS_TASKS else METRICS[task]


def load() -> str:
    try:
        return Path("/proc/loadavg").read_text().split()[:3].__str__()
    except OSError:
        return "n/a"


# ---------------------------------------------------------------------------- zoos
def ensure_zoos(cache: Path, needed: set[str]) -> dict[str, str]:
    import zoo
    from generators import generate

    paths = {}
    for key in sorted(needed):
        name = ZOOS[key]
        path = cache / f"{name}.zarr"
        start = time.perf_counter()
        generate(name, path, progress=True)
        z = zoo.open(path)
        print(f"zoo {name}: {z.n_models} models, {z.status_counts()} ({time.perf_counter() - start:.0f} s)", flush=True)
        paths[key] = str(path)
    return paths


# ---------------------------------------------------------------------------- one (row, task) in a subprocess
def worker(args: argparse.Namespace) -> None:
    """Fit one config for every seed (inside the subprocess whose peak memory the parent reads)."""
    import logging
    import warnings

    import torch

    warnings.filterwarnings("ignore")
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    torch.set_num_threads(1)
    from weightnets.cli import fit_and_test

    spec = json.loads(args.worker)
    out = []
    for seed in spec["seeds"]:
        run = Path(spec["run"]) / f"seed{seed}"
        argv = ["--config", spec["config"], "--data.store", spec["store"], "--trainer.default_root_dir", str(run),
                "--seed_everything", str(seed), "--data.seed", str(seed), "--trainer.enable_progress_bar", "false",
                "--trainer.enable_model_summary", "false", *spec["overrides"]]
        metrics = fit_and_test(argv)
        out.append({"seed": seed, **metrics})
    Path(spec["result"]).write_text(json.dumps(out, indent=1))


def run_cell(row: str, task: str, config: str, store: str, seeds: list[int], runs: Path) -> dict:
    zoo_key, data_overrides, layer, tensors = TASKS[task]
    overrides = list(data_overrides)
    text = (CONFIGS / config).read_text()
    if layer is not None and "weightnets.LayerProbe" in text:
        overrides += ["--model.layer", layer]
    if tensors is not None and "weightnets.StatNN" in text:
        overrides += ["--model.tensors", tensors]
    slug = "".join(c if c.isalnum() else "_" for c in f"{row}_{task}").strip("_")
    result = runs / f"{slug}.json"
    spec = {"config": str(CONFIGS / config), "store": store, "seeds": seeds, "run": str(runs / slug),
            "overrides": overrides, "result": str(result)}
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, __file__, "--worker", json.dumps(spec)], env=env, cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    stderr = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        tail = "\n".join(stderr.strip().splitlines()[-15:])
        print(f"  FAILED {row} / {task}:\n{tail}", flush=True)
        return {"config": config, "overrides": overrides, "error": tail}
    per_seed = json.loads(result.read_text())
    cell = {"config": config, "overrides": overrides, "seeds": seeds, "wall_s": wall,
            "peak_rss_mib": usage.ru_maxrss / 1024.0, "per_seed": per_seed}
    for name in metric_names(task) + ["fit_time_s", "trained_params"]:
        key = name if name in ("fit_time_s", "trained_params") else f"test/{name}"
        values = [s.get(key) for s in per_seed]
        values = [float(v) for v in values if v is not None]
        if values:
            cell[name] = {"mean": sum(values) / len(values), "std": _std(values), "values": values}
    layers = {}
    for s in per_seed:
        for k, v in s.items():
            if k.startswith("test/layer/") and v is not None:
                _, _, layer_name, metric = k.split("/", 3)
                layers.setdefault(layer_name, {}).setdefault(metric, []).append(float(v))
            if k.startswith("selection/") and v is not None:
                layer_name = k.split("/")[1]
                layers.setdefault(layer_name, {}).setdefault("val_score", []).append(float(v))
    if layers:
        cell["per_layer"] = {name: {m: {"mean": sum(v) / len(v), "std": _std(v)} for m, v in ms.items()}
                             for name, ms in layers.items()}
        cell["selected_layers"] = [int(s["test/selected_layer_index"]) for s in per_seed
                                   if s.get("test/selected_layer_index") is not None]
    return cell


def _std(values: list[float]) -> float:
    if len(values) < 2:
        return 0.0
    m = sum(values) / len(values)
    return math.sqrt(sum((v - m) ** 2 for v in values) / (len(values) - 1))


def baseline_rss() -> float:
    code = "import lightning, sklearn, nfn, torch, weightnets, zoo"
    proc = subprocess.Popen([sys.executable, "-c", code], env=dict(os.environ, OMP_NUM_THREADS="1"))
    _, _, usage = os.wait4(proc.pid, 0)
    return usage.ru_maxrss / 1024.0


# ---------------------------------------------------------------------------- table and goals
def fmt(cell: dict | None, name: str, digits: int = 3) -> str:
    if not cell or name not in cell:
        return "—"
    m = cell[name]
    return f"{m['mean']:.{digits}f} ± {m['std']:.{digits}f}"


def table(results: dict) -> str:
    head = ["learner", "MLP hidden: label / subset", "MLP output: label / subset", "CNN hidden: label / subset",
            "CNN output: label / subset", "route acc (MLP / CNN)", "hparam τ", "hparam R²",
            "hparam τ, all checkpoints", "phase acc",
            "trained params", "train s", "peak MiB"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row, cells in results["rows"].items():
        def pair(task):
            c = cells.get(task)
            return "—" if not c or "label_acc" not in c else f"{fmt(c, 'label_acc')} / {fmt(c, 'subset_acc')}"

        route = [fmt(cells.get(t), "route_acc") for t in ("mlp_hidden", "cnn_hidden")]
        route_text = "—" if route == ["—", "—"] else " / ".join(route)
        cost_task = next((t for t in ("mlp_hidden", "accuracy", "phase") if t in cells and "fit_time_s" in cells[t]), None)
        cost = cells.get(cost_task, {}) if cost_task else {}
        params = f"{cost['trained_params']['mean']:,.0f}" if "trained_params" in cost else "—"
        if cost_task and cost_task != "mlp_hidden" and params != "—":
            params += f" ({cost_task})"
        train = f"{cost['fit_time_s']['mean']:.1f}" if "fit_time_s" in cost else "—"
        peak = f"{cost['peak_rss_mib']:.0f}" if "peak_rss_mib" in cost else "—"
        lines.append("| " + " | ".join([row, pair("mlp_hidden"), pair("mlp_output"), pair("cnn_hidden"),
                                        pair("cnn_output"), route_text, fmt(cells.get("accuracy"), "kendall_tau"),
                                        fmt(cells.get("accuracy"), "r2"), fmt(cells.get("accuracy_all"), "kendall_tau"),
                                        fmt(cells.get("phase"), "acc"), params,
                                        train, peak]) + " |")
    return "\n".join(lines)


def cost_table(results: dict) -> str:
    tasks = list(TASKS)
    lines = ["| learner | " + " | ".join(tasks) + " |", "|" + "---|" * (len(tasks) + 1)]
    for row, cells in results["rows"].items():
        out = []
        for t in tasks:
            c = cells.get(t)
            if not c or "fit_time_s" not in c:
                out.append("—")
                continue
            out.append(f"{c['trained_params']['mean']:,.0f} p, {c['fit_time_s']['mean']:.1f} s, "
                       f"{c['peak_rss_mib']:.0f} MiB")
        lines.append(f"| {row} | " + " | ".join(out) + " |")
    return "\n".join(lines)


def layer_table(results: dict) -> str:
    lines = ["| learner | task | layer | val label_acc (selection) | test label_acc | test subset_acc | chosen (seeds) |",
             "|---|---|---|---|---|---|---|"]
    for row, cells in results["rows"].items():
        for task in ("mlp_hidden", "cnn_hidden"):
            c = cells.get(task, {})
            for i, (name, ms) in enumerate(c.get("per_layer", {}).items()):
                chosen = sum(1 for s in c.get("selected_layers", []) if s == i)
                lines.append(f"| {row} | {task} | {name} | {ms.get('val_score', {}).get('mean', float('nan')):.3f} | "
                             f"{ms.get('label_acc', {}).get('mean', float('nan')):.3f} | "
                             f"{ms.get('subset_acc', {}).get('mean', float('nan')):.3f} | {chosen}/{len(c['per_seed'])} |")
    return "\n".join(lines)


def goals(results: dict) -> list[dict]:
    rows = results["rows"]
    px, dense = rows.get("ProbeX (tree experts, routed)", {}), rows.get("Dense (linear probe)", {})
    stat = [rows.get("StatNN, GBM", {}), rows.get("StatNN, MLP", {})]
    out = []

    def mean(cell, name):
        return cell.get(name, {}).get("mean") if cell else None

    for task in ("mlp_hidden", "cnn_hidden"):
        p = mean(px.get(task), "label_acc")
        others = [mean(c.get(task), "label_acc") for c in [dense, *stat]]
        p_params = mean(px.get(task), "trained_params")
        d_params = mean(dense.get(task), "trained_params")
        if p is None:
            continue
        out.append({"goal": f"ProbeX ({task}) label_acc >= 0.95", "value": p, "met": p >= 0.95})
        known = [o for o in others if o is not None]
        out.append({"goal": f"ProbeX ({task}) label_acc above Dense and StatNN", "value": p,
                    "others": known, "met": bool(known) and all(p > o for o in known)})
        if p_params is not None and d_params is not None:
            out.append({"goal": f"ProbeX ({task}) fewer trained parameters than Dense", "value": p_params,
                        "dense": d_params, "met": p_params < d_params})
        r = mean(px.get(task), "route_acc")
        if r is not None:
            out.append({"goal": f"routing accuracy ({task}) >= 0.99", "value": r, "met": r >= 0.99})
    for task, what in (("accuracy", "final checkpoint"), ("accuracy_all", "all checkpoints")):
        taus = {row: mean(c.get(task), "kendall_tau") for row, c in rows.items()
                if mean(c.get(task), "kendall_tau") is not None}
        if taus:
            best = max(taus, key=taus.get)
            out.append({"goal": f"best accuracy predictor Kendall tau >= 0.9 on hparam_mnist1d ({what})",
                        "learner": best, "value": taus[best], "met": taus[best] >= 0.9})
    return out


def render(results: dict) -> str:
    g = "\n".join(f"- {'met' if x['met'] else 'MISSED'}: {x['goal']} — {x['value']:.3f}"
                  + (f" (learner: {x['learner']})" if "learner" in x else "")
                  + (f" (Dense {x['dense']:,.0f})" if "dense" in x else "")
                  + (f" (others {', '.join(f'{o:.3f}' for o in x['others'])})" if x.get("others") else "")
                  for x in results["goals"])
    m = results["machine"]
    return (f"Measured {m['date']} on {m['cpus']} CPUs ({m['platform']}), torch {m['torch']}, one torch thread per fit; "
            f"load average before {m['load_before']}, after {m['load_after']}; seeds {results['seeds']}; "
            f"{results['wall_s']:.0f} s in all. Command: `{results['command']}`.\n\n"
            f"{table(results)}\n\nCells are mean ± std over seeds on the test split (models never seen in training or "
            f"selection). Trained parameters, train time and peak memory are those of the first task the row has "
            f"(MLP hidden, else accuracy); peak memory includes about {results['baseline_rss_mib']:.0f} MiB for "
            f"the interpreter and libraries. Per task:\n\n{cost_table(results)}\n\nThe layer sweeps (`layer: auto`):\n\n"
            f"{layer_table(results)}\n\nGoals:\n\n{g}\n")


def write_docs(text: str) -> None:
    doc = DOC.read_text()
    if MARK_START not in doc or MARK_END not in doc:
        raise SystemExit(f"{DOC} lacks the markers {MARK_START} / {MARK_END}")
    head, rest = doc.split(MARK_START, 1)
    _, tail = rest.split(MARK_END, 1)
    DOC.write_text(f"{head}{MARK_START}\n{text}\n{MARK_END}{tail}")


# ---------------------------------------------------------------------------- main
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cache", default=str(ROOT / "runs" / "bench_weightnets"), help="zoos and runs")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--only", nargs="*", default=None, help="rows (substrings of the learner names)")
    parser.add_argument("--tasks", nargs="*", default=None, choices=list(TASKS))
    parser.add_argument("--docs", action="store_true", help="write the tables into docs/WEIGHTNETS.md")
    parser.add_argument("--merge", action="store_true", help="keep cells of an earlier results file not rerun")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    import torch

    cache = Path(args.cache)
    runs = cache / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    tasks = args.tasks or list(TASKS)
    rows = {r: {t: c for t, c in tasks_of.items() if t in tasks} for r, tasks_of in ROWS.items()
            if args.only is None or any(o.lower() in r.lower() for o in args.only)}
    stores = ensure_zoos(cache, {TASKS[t][0] for cells in rows.values() for t in cells})
    results = json.loads(RESULTS.read_text()) if args.merge and RESULTS.exists() else {"rows": {}}
    start = time.perf_counter()
    results["machine"] = {"date": time.strftime("%Y-%m-%d"), "cpus": os.cpu_count(), "platform": platform.platform(),
                          "torch": torch.__version__, "load_before": load()}
    results["baseline_rss_mib"] = baseline_rss()
    for row, cells in rows.items():
        for task, config in cells.items():
            print(f"{row} / {task} ({config}) ...", flush=True)
            cell = run_cell(row, task, config, stores[TASKS[task][0]], args.seeds, runs)
            results["rows"].setdefault(row, {})[task] = cell
            shown = ", ".join(f"{n} {fmt(cell, n)}" for n in metric_names(task) if n in cell)
            print(f"  {shown}; {cell.get('wall_s', 0):.0f} s", flush=True)
            RESULTS.parent.mkdir(parents=True, exist_ok=True)
            RESULTS.write_text(json.dumps(results, indent=1))
    results["rows"] = {r: results["rows"][r] for r in ROWS if r in results["rows"]}
    results["machine"]["load_after"] = load()
    results["seeds"] = args.seeds
    results["wall_s"] = time.perf_counter() - start
    results["command"] = "python scripts/bench_weightnets.py " + " ".join(sys.argv[1:])
    results["zoos"] = stores
    results["goals"] = goals(results)
    RESULTS.write_text(json.dumps(results, indent=1))
    text = render(results)
    print(text)
    if args.docs:
        write_docs(text)


if __name__ == "__main__":
    main()
