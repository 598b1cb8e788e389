"""Benchmark: generating weights for held-out tasks with latent diffusion, against honest baselines.

Data: the class-subset children of ``tree_probex`` (4 bases on MNIST-1D, 300 children per base with
distinct class subsets). The split ``ood_tasks`` holds out 25 % of the derived tasks (class sets) across
all trees: every request is a (base, held-out class set) pair whose real fine-tuned child exists in the
store but was never seen in training (nor was any child with that class set).

Per architecture and seed (3 seeds): train the weight autoencoder and the descriptor-conditioned latent
diffusion with ``weightzoo fit`` (``weightnets/configs/autoencoder_probex.yaml``,
``diffusion_probex.yaml``), optionally a support-set-conditioned one (``diffusion_probex_support.yaml``),
then draw N samples per request (:func:`weightnets.generative.sample.generate_requests`). Every method
answers the same requests; test accuracy on the requested task is summarised per request (mean, median,
max over samples; the sample with the best *validation* accuracy — a held-out part of the task's training
split — in its own row) and averaged over requests, then mean ± std over seeds.

Baselines (all per base, from the same training children): the base without fine-tuning; the mean of
the children; the child of the nearest seen task (Hamming distance of class sets); that child plus
Gaussian noise at the children's per-coordinate standard deviation (×1, and scaled to the generator's
novelty); a per-coordinate Gaussian fitted to the children; SANE-style KDE in the autoencoder's latent
space (anchors: the 5 nearest seen tasks' children); a ridge regressor from the task descriptor to the
task vector; the real fine-tuned child (reference).

Also: novelty (L2 distance of each sample to its nearest training model against the leave-one-out
distances among training children; agreement of wrong predictions with that nearest model), condition
fidelity (accuracy on the requested task vs a swapped held-out task), head start (epochs of fine-tuning,
with the child's own recipe, to reach 95 % of the child's test accuracy from a sample vs from the base).

    python scripts/bench_generate.py [--archs mlp,cnn1d] [--seeds 0,1,2] [--n 50] [--support-k 16]

Writes ``benchmarks/results/generate.json`` and ``docs/img/generate_novelty.png``; prints the tables.
Runs resume: finished ``weightzoo fit`` runs under ``--runs`` are reused.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

import zoo
from generators.population import Member, PopulationConfig, train_population
from weightnets.cli import fit_and_test
from weightnets.evaluate import evaluate_weights, predict_weights, task_examples
from weightnets.generative import GenerationData, load_generator
from weightnets.generative.baselines import (
    LatentKDE,
    PerCoordinateGaussian,
    TaskRegressor,
    leave_one_out_distances,
    nearest_distances,
    nearest_seen,
    noisy_copies,
)
from weightnets.generative.data import descriptor_of
from weightnets.generative.sample import generate_requests, resolve_requests
from zoo.tasks import build_task

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = ROOT / "weightnets" / "configs"
KDE_ANCHORS = 5
HEAD_START_GOAL = 0.95

# rows of the main table, in order; "samples" = N draws per request, else one model per request
METHODS = {
    "diffusion": ("latent diffusion (task descriptor, w=1)", True),
    "diffusion_support": ("latent diffusion (k support examples, w=1)", True),
    "diffusion_w2": ("latent diffusion (task descriptor, w=2)", True),
    "diffusion_uncond": ("latent diffusion, unconditional (w=0)", True),
    "base": ("base, no fine-tuning", False),
    "zoo_mean": ("mean of the base's training children", False),
    "nearest": ("child of the nearest seen task", False),
    "nearest_noise": ("nearest child + noise (1x zoo std)", True),
    "nearest_noise_matched": ("nearest child + noise (matched novelty)", True),
    "gaussian": ("per-coordinate Gaussian of the children", True),
    "kde": ("SANE-style KDE in latent space", True),
    "regressor": ("ridge regressor (descriptor -> task vector)", False),
    "reference": ("real fine-tuned child (reference)", False),
}


def uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    except OSError:
        return "unknown"


# ---------------------------------------------------------------------------------------------- training
def fit(config: str, run: Path, overrides: list[str]) -> dict[str, Any]:
    """``weightzoo fit --config CONFIG ...`` into ``run`` (reused when it finished before)."""
    metrics = run / "test_metrics.json"
    if metrics.is_file():
        return json.loads(metrics.read_text())
    start = time.perf_counter()
    out = fit_and_test(["--config", str(CONFIGS / config), "--trainer.default_root_dir", str(run),
                        "--trainer.enable_progress_bar", "false", *overrides])
    out["wall_time_s"] = time.perf_counter() - start
    metrics.write_text(json.dumps(out, indent=2, sort_keys=True) + "\n")
    return out


# ---------------------------------------------------------------------------------------------- tasks
class Tasks:
    """Test, validation and training examples of the requested tasks, built once."""

    def __init__(self) -> None:
        self.cache: dict[str, dict[str, Any]] = {}

    def __call__(self, key: str, spec: dict) -> dict[str, Any]:
        if key not in self.cache:
            task = build_task(spec)
            self.cache[key] = {"task": task, "test": task.split("test"), "val": task_examples(task, "val")}
        return self.cache[key]


def evaluate(weights: torch.Tensor, arch: torch.nn.Module, t: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """Test and validation accuracy ``[k]`` of ``weights [k, P]`` on one task."""
    return (evaluate_weights(weights, arch, *t["test"]).acc, evaluate_weights(weights, arch, *t["val"]).acc)


def summarize(test: list[np.ndarray], val: list[np.ndarray]) -> dict[str, float]:
    """Mean over requests of the per-request mean, median, max and best-of-N (chosen on validation)."""
    best = [te[int(np.nanargmax(va))] if np.isfinite(va).any() else np.nan for te, va in zip(test, val)]
    return {"mean": float(np.nanmean([np.nanmean(a) for a in test])),
            "median": float(np.nanmean([np.nanmedian(a) for a in test])),
            "max": float(np.nanmean([np.nanmax(a) for a in test])),
            "best_of_n_val": float(np.nanmean(best)),
            "failed": int(sum(np.isnan(a).sum() for a in test))}


# ---------------------------------------------------------------------------------------------- one seed
def run_seed(args: argparse.Namespace, arch: str, seed: int, z: zoo.Zoo, tasks: Tasks) -> dict[str, Any]:
    runs = Path(args.runs)
    data = ["--data.store", str(args.store), "--data.arch", arch, "--seed_everything", str(seed)]
    quick = ["--trainer.max_epochs", "2", "--trainer.check_val_every_n_epoch", "1"] if args.quick else []
    timings: dict[str, float] = {}
    ae_run = runs / f"ae_{arch}_s{seed}"
    ae = fit("autoencoder_probex.yaml", ae_run, data + quick)
    diff_run = runs / f"diffusion_{arch}_s{seed}"
    diff = fit("diffusion_probex.yaml", diff_run, data + quick + ["--model.autoencoder", str(ae_run)])
    timings.update(autoencoder_fit_s=ae.get("wall_time_s"), diffusion_fit_s=diff.get("wall_time_s"))
    gen = load_generator(diff_run)
    ctx = gen.context
    requests = resolve_requests(gen, z, "unseen")
    if args.max_requests:
        pick = np.random.default_rng(0).permutation(len(requests))[:args.max_requests]
        requests = [requests[i] for i in sorted(pick)]
    arch_module = ctx.architecture()
    n = args.n

    results: dict[str, dict[str, list]] = {m: {"test": [], "val": [], "weights": []} for m in METHODS}

    def add(method: str, i: int, weights: torch.Tensor, test: np.ndarray | None = None,
            val: np.ndarray | None = None) -> None:
        if test is None:
            test, val = evaluate(weights, arch_module, tasks(requests[i].task_key, requests[i].spec))
        results[method]["test"].append(np.asarray(test, dtype=float))
        results[method]["val"].append(np.asarray(val, dtype=float))
        results[method]["weights"].append(weights)

    # ---- the generator, several guidance scales, and the support-set generator
    for method, kwargs in (("diffusion", {}), ("diffusion_w2", {"guidance": 2.0}), ("diffusion_uncond", {"guidance": 0.0})):
        start = time.perf_counter()
        for i, res in enumerate(generate_requests(gen, z, requests, n, seed=seed, **kwargs)):
            add(method, i, res.weights, res.metrics["test_acc"], res.metrics["val_acc"])
        timings[f"{method}_sample_s"] = time.perf_counter() - start
    if args.support_k:
        sup_run = runs / f"diffusion_support_{arch}_s{seed}"
        sup = fit("diffusion_probex_support.yaml", sup_run, data + quick + ["--model.autoencoder", str(ae_run),
                                                                           "--data.support_k", str(args.support_k)])
        timings["diffusion_support_fit_s"] = sup.get("wall_time_s")
        sgen = load_generator(sup_run)
        start = time.perf_counter()
        for i, res in enumerate(generate_requests(sgen, z, requests, n, seed=seed, support=args.support_k)):
            add("diffusion_support", i, res.weights, res.metrics["test_acc"], res.metrics["val_acc"])
        timings["diffusion_support_sample_s"] = time.perf_counter() - start
    else:
        del results["diffusion_support"]

    # ---- baselines from the same training children
    dm = GenerationData(str(args.store), arch, families=["class_subset"], split_name="ood_tasks")
    dm.setup()
    assert dm.context.train_tasks == ctx.train_tasks, "baselines must see exactly the generator's training tasks"
    train, val_rows = dm.rows("train"), dm.rows("val")
    t_idx, v_idx = torch.from_numpy(train), torch.from_numpy(val_rows)
    vectors, bases = dm.targets[t_idx], dm.base_pos[t_idx]
    classes = dm.descriptors[t_idx][:, :ctx.n_classes] > 0.5
    train_weights = ctx.to_weights(vectors, bases)
    regressor = TaskRegressor(len(ctx.base_ids)).fit(dm.descriptors[t_idx], bases, vectors, dm.descriptors[v_idx],
                                                     dm.base_pos[v_idx], dm.targets[v_idx])
    latents = gen.autoencoder.latent(vectors)
    per_base = {}
    for b in range(len(ctx.base_ids)):
        mine = (bases == b).numpy()
        per_base[b] = {"rows": np.flatnonzero(mine), "gauss": PerCoordinateGaussian(vectors[mine]),
                       "mean": vectors[mine].mean(0)}
    gen_d, _ = nearest_distances(torch.cat(results["diffusion"]["weights"]), train_weights)
    std_norm = {b: float(per_base[b]["gauss"].std.norm()) for b in per_base}
    matched = float(np.median(gen_d)) / float(np.mean(list(std_norm.values())))
    rng = torch.Generator().manual_seed(10_000 + seed)
    start = time.perf_counter()
    for i, r in enumerate(requests):
        b, pb = r.base, per_base[r.base]
        base_t = torch.tensor([b])
        desc = descriptor_of(ctx, r.spec)
        query = (desc[:ctx.n_classes] > 0.5).numpy()
        near = pb["rows"][nearest_seen(classes[pb["rows"]].numpy(), query, k=KDE_ANCHORS)]
        nearest_vec = vectors[near[0]]
        to_w = lambda v: ctx.to_weights(v, torch.full((len(v),), b, dtype=torch.long))  # noqa: E731
        add("base", i, ctx.base_weights[b][None])
        add("zoo_mean", i, to_w(pb["mean"][None]))
        add("nearest", i, to_w(nearest_vec[None]))
        add("nearest_noise", i, to_w(noisy_copies(nearest_vec, pb["gauss"].std, n, 1.0, rng)))
        add("nearest_noise_matched", i, to_w(noisy_copies(nearest_vec, pb["gauss"].std, n, matched, rng)))
        add("gaussian", i, to_w(pb["gauss"].sample(n, rng)))
        kde = LatentKDE(latents[near], fallback_std=latents.std(0))
        add("kde", i, to_w(gen.autoencoder.decode_raw(kde.sample(n, rng))))
        add("regressor", i, to_w(regressor.predict(desc[None], base_t)))
        ref = z.weights([r.reference_id], -1)
        add("reference", i, ref)
    timings["baselines_s"] = time.perf_counter() - start

    # ---- summaries, novelty, condition fidelity
    loo = leave_one_out_distances(train_weights)
    loo_median = float(np.median(loo))
    table, novelty, scatter = {}, {}, {}
    for method, res in results.items():
        table[method] = summarize(res["test"], res["val"])
        samples = torch.cat(res["weights"])
        d, nearest_row = nearest_distances(samples, train_weights)
        agreement = _wrong_agreement(res["weights"], nearest_row, train_weights, requests, tasks, arch_module)
        novelty[method] = {"median_nn_distance": float(np.median(d)), "mean_nn_distance": float(np.mean(d)),
                           "fraction_beyond_loo_median": float(np.mean(d > loo_median)),
                           "verdict": "novel" if np.median(d) > loo_median else "memorised",
                           "wrong_prediction_agreement": agreement}
        accs = np.concatenate(res["test"])
        scatter[method] = {"distance": (d / loo_median).tolist(), "acc": accs.tolist()}
    fidelity = _fidelity(results, requests, tasks, arch_module)
    head = _head_start(args, z, ctx, requests, results, tasks, seed)
    ref_mean = table["reference"]["mean"]
    for method in table:
        table[method]["ratio_to_reference"] = table[method]["mean"] / ref_mean
    return {"arch": arch, "arch_key": ctx.arch_key, "seed": seed, "n_requests": len(requests), "n": n,
            "n_train_children": int(len(train)), "n_val_children": int(len(val_rows)),
            "reconstruction": {"test_acc_ratio": ae.get("test/acc_ratio"), "test_acc": ae.get("test/acc"),
                               "test_acc_original": ae.get("test/acc_original"), "val_loss": ae.get("best_score")},
            "diffusion_test_acc_ratio": diff.get("test/acc_ratio"), "regressor_alpha": regressor.alpha,
            "noise_scale_matched": matched, "loo_median_distance": loo_median, "table": table, "novelty": novelty,
            "fidelity": fidelity, "head_start": head, "timings_s": timings, "scatter": scatter}


def _wrong_agreement(weights: list[torch.Tensor], nearest_row: np.ndarray, train_weights: torch.Tensor,
                     requests: list, tasks: Tasks, arch: torch.nn.Module) -> float:
    """Pooled over requests: among the test examples a sample gets wrong, the fraction where its nearest
    training model predicts the same wrong label."""
    agree, total, offset = 0.0, 0, 0
    for i, w in enumerate(weights):
        x, y = tasks(requests[i].task_key, requests[i].spec)["test"]
        rows = nearest_row[offset:offset + len(w)]
        offset += len(w)
        pred = predict_weights(w, arch, x).numpy()
        near = predict_weights(train_weights[torch.from_numpy(rows)], arch, x).numpy()
        wrong = pred != y.numpy()[None]
        agree += float((pred[wrong] == near[wrong]).sum())
        total += int(wrong.sum())
    return agree / total if total else float("nan")


def _fidelity(results: dict, requests: list, tasks: Tasks, arch: torch.nn.Module) -> dict[str, dict[str, float]]:
    """Mean test accuracy of each method's models on the requested task and on a swapped one: the held-out
    request of the same base half-way round the list, with a different class set."""
    by_base: dict[int, list[int]] = {}
    for i, r in enumerate(requests):
        by_base.setdefault(r.base, []).append(i)
    swap = {}
    for idx in by_base.values():
        for j, i in enumerate(idx):
            k = idx[(j + len(idx) // 2) % len(idx)]
            swap[i] = k if requests[k].task_key != requests[i].task_key else None
    out = {}
    for method in ("diffusion", "diffusion_support", "diffusion_uncond", "regressor", "reference"):
        if method not in results:
            continue
        own, other = [], []
        for i, w in enumerate(results[method]["weights"]):
            if swap[i] is None:
                continue
            own.append(np.nanmean(results[method]["test"][i]))
            r = requests[swap[i]]
            other.append(np.nanmean(evaluate_weights(w, arch, *tasks(r.task_key, r.spec)["test"]).acc))
        out[method] = {"requested": float(np.mean(own)), "swapped": float(np.mean(other))}
        out[method]["gap"] = out[method]["requested"] - out[method]["swapped"]
    return out


def _head_start(args: argparse.Namespace, z: zoo.Zoo, ctx: Any, requests: list, results: dict, tasks: Tasks,
                seed: int) -> dict[str, Any]:
    """Fine-tune from the best-of-N (validation) sample, from the nearest seen child and from the base with
    the reference child's own recipe (optimiser, learning rate, batch size, data order); epochs until the
    test accuracy reaches 95 % of the child's (0: the start already does; NaN: not within the child's
    epochs)."""
    if not args.head_start:
        return {}
    pick = sorted(np.random.default_rng(100 + seed).permutation(len(requests))[:args.head_start].tolist())
    models = z.models.set_index("model_id")
    starts, members, member_tasks, goals, labels = [], [], [], [], []
    for i in pick:
        r = requests[i]
        child = models.loc[r.reference_id]
        val = results["diffusion"]["val"][i]
        best = int(np.nanargmax(val))
        member = Member(0, int(child["data_seed"]), float(child["lr"]), float(child["weight_decay"]),
                        float(child["momentum"]))
        for label, w in (("sample", results["diffusion"]["weights"][i][best]),
                         ("nearest", results["nearest"]["weights"][i][0]), ("base", ctx.base_weights[r.base])):
            starts.append(w)
            members.append(member)
            member_tasks.append(tasks(r.task_key, r.spec)["task"])
            goals.append(HEAD_START_GOAL * float(results["reference"]["test"][i][0]))
            labels.append(label)
    child = models.loc[requests[pick[0]].reference_id]
    epochs = int(child["epochs"])
    config = PopulationConfig(architecture=ctx.arch["name"], arch_config=ctx.arch["config"],
                              optimizer=str(child["optimizer"]), batch_size=int(child["batch_size"]), epochs=epochs,
                              checkpoint_epochs=list(range(epochs + 1)))
    res = train_population(config, members, member_tasks, start_weights=torch.stack(starts))
    acc = res.metrics["test_acc"]  # [members, epochs + 1]
    out: dict[str, Any] = {"n_tasks": len(pick), "max_epochs": epochs}
    for label in ("sample", "nearest", "base"):
        sel = [j for j, lab in enumerate(labels) if lab == label]
        reached = []
        for j in sel:
            hit = np.flatnonzero(acc[j] >= goals[j])
            reached.append(float(hit[0]) if len(hit) else np.nan)
        reached = np.asarray(reached)
        out[label] = {"epochs_to_95pct_mean": float(np.nanmean(reached)) if np.isfinite(reached).any() else None,
                      "reached_fraction": float(np.isfinite(reached).mean()),
                      "acc_by_epoch": acc[sel].mean(0).tolist()}
    return out


# ---------------------------------------------------------------------------------------------- report
def aggregate(per_seed: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean and std over seeds of every number in the tables."""
    def ms(values: list[float]) -> dict[str, float]:
        v = np.asarray([np.nan if x is None else x for x in values], dtype=float)
        return {"mean": float(np.nanmean(v)), "std": float(np.nanstd(v))} if np.isfinite(v).any() else \
            {"mean": None, "std": None}

    first = per_seed[0]
    out: dict[str, Any] = {"table": {}, "novelty": {}, "fidelity": {}, "head_start": {}}
    for method, row in first["table"].items():
        out["table"][method] = {k: ms([s["table"][method][k] for s in per_seed]) for k in row}
    for method, row in first["novelty"].items():
        out["novelty"][method] = {k: ms([s["novelty"][method][k] for s in per_seed]) for k in row if k != "verdict"}
        verdicts = [s["novelty"][method]["verdict"] for s in per_seed]
        out["novelty"][method]["verdict"] = "memorised" if "memorised" in verdicts else "novel"
    for method, row in first["fidelity"].items():
        out["fidelity"][method] = {k: ms([s["fidelity"][method][k] for s in per_seed]) for k in row}
    for label in ("sample", "nearest", "base"):
        if label in first["head_start"]:
            out["head_start"][label] = {k: ms([s["head_start"][label][k] for s in per_seed])
                                        for k in ("epochs_to_95pct_mean", "reached_fraction")}
    out["reconstruction_test_acc_ratio"] = ms([s["reconstruction"]["test_acc_ratio"] for s in per_seed])
    out["loo_median_distance"] = ms([s["loo_median_distance"] for s in per_seed])
    return out


def goals(agg: dict[str, Any]) -> dict[str, Any]:
    t = agg["table"]
    gen = t["diffusion"]["mean"]["mean"]
    ref = t["reference"]["mean"]["mean"]
    rivals = {m: t[m]["mean"]["mean"] for m in t if m not in ("reference",) and not m.startswith("diffusion")}
    beaten = {m: gen > v for m, v in rivals.items()}
    return {"reconstruction_ge_0.99": agg["reconstruction_test_acc_ratio"]["mean"] >= 0.99,
            "mean_acc_ge_95pct_of_children": gen >= 0.95 * ref, "ratio_to_children": gen / ref,
            "beats_every_baseline_but_reference": all(beaten.values()),
            "baselines_not_beaten": sorted(m for m, ok in beaten.items() if not ok),
            "samples_farther_than_median_loo": agg["novelty"]["diffusion"]["verdict"] == "novel"}


def print_report(arch: str, agg: dict[str, Any], per_seed: list[dict[str, Any]]) -> None:
    from rich.console import Console
    from rich.table import Table

    con = Console(width=200)

    def pm(d: dict[str, float], digits: int = 3) -> str:
        return "—" if d["mean"] is None else f"{d['mean']:.{digits}f} ± {d['std']:.{digits}f}"

    t = Table(title=f"{arch}: test accuracy on held-out class sets ({per_seed[0]['n_requests']} requests, "
                    f"N = {per_seed[0]['n']}, {len(per_seed)} seeds)")
    for c in ("method", "mean", "median", "max", "best of N (val)", "/ reference", "NN dist / LOO med", "novelty",
              "wrong-pred. agreement"):
        t.add_column(c)
    loo = agg["loo_median_distance"]["mean"]
    for method, row in agg["table"].items():
        nov = agg["novelty"][method]
        label, many = METHODS[method]
        dist = nov["median_nn_distance"]["mean"] / loo
        t.add_row(label, pm(row["mean"]), pm(row["median"]) if many else "", pm(row["max"]) if many else "",
                  pm(row["best_of_n_val"]) if many else "", pm(row["ratio_to_reference"]), f"{dist:.2f}",
                  nov["verdict"], pm(nov["wrong_prediction_agreement"], 2))
    con.print(t)
    f = Table(title=f"{arch}: condition fidelity (test accuracy on the requested vs a swapped held-out task)")
    for c in ("method", "requested", "swapped", "gap"):
        f.add_column(c)
    for method, row in agg["fidelity"].items():
        f.add_row(METHODS[method][0], pm(row["requested"]), pm(row["swapped"]), pm(row["gap"]))
    con.print(f)
    if agg["head_start"]:
        h = Table(title=f"{arch}: head start (epochs of the child's fine-tuning to reach 95 % of its test accuracy)")
        for c in ("start", "epochs (mean over tasks that reach it)", "fraction reaching it"):
            h.add_column(c)
        for label, row in agg["head_start"].items():
            h.add_row(label, pm(row["epochs_to_95pct_mean"], 2), pm(row["reached_fraction"], 2))
        con.print(h)
    con.print(f"reconstruction (decoded test acc / original): {pm(agg['reconstruction_test_acc_ratio'])}")


def markdown(report: dict[str, Any]) -> str:
    """The tables of ``report`` as Markdown (what docs/GENERATE.md shows)."""
    def pm(d: dict[str, float], digits: int = 3) -> str:
        return "—" if d["mean"] is None else f"{d['mean']:.{digits}f} ± {d['std']:.{digits}f}"

    lines = []
    for arch, rec in report["archs"].items():
        agg, first = rec["aggregate"], rec["per_seed"][0]
        loo = agg["loo_median_distance"]["mean"]
        lines += [f"### {arch} ({first['n_requests']} held-out requests, N = {first['n']} samples each, "
                  f"{len(rec['per_seed'])} seeds, mean ± std over seeds)", "",
                  "| method | mean | median | max | best of N (val) | mean / reference | NN distance / LOO median | "
                  "novelty | wrong-prediction agreement |", "|---|---|---|---|---|---|---|---|---|"]
        for method, row in agg["table"].items():
            label, many = METHODS[method]
            nov = agg["novelty"][method]
            cells = [label, pm(row["mean"]), pm(row["median"]) if many else "", pm(row["max"]) if many else "",
                     pm(row["best_of_n_val"]) if many else "", pm(row["ratio_to_reference"]),
                     f"{nov['median_nn_distance']['mean'] / loo:.2f}", nov["verdict"],
                     pm(nov["wrong_prediction_agreement"], 2)]
            lines.append("| " + " | ".join(cells) + " |")
        lines += ["", "| condition fidelity | requested task | swapped task | gap |", "|---|---|---|---|"]
        for method, row in agg["fidelity"].items():
            lines.append(f"| {METHODS[method][0]} | {pm(row['requested'])} | {pm(row['swapped'])} | {pm(row['gap'])} |")
        if agg["head_start"]:
            lines += ["", "| head start: fine-tuning from | epochs to 95 % of the child's accuracy | share of tasks "
                      "reaching it |", "|---|---|---|"]
            for label, row in agg["head_start"].items():
                lines.append(f"| {label} | {pm(row['epochs_to_95pct_mean'], 2)} | {pm(row['reached_fraction'], 2)} |")
        lines += ["", f"Reconstruction (decoded test accuracy / original, held-out models): "
                      f"{pm(agg['reconstruction_test_acc_ratio'])}.", ""]
    return "\n".join(lines)


def figure(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    archs = list(report["archs"])
    fig, axes = plt.subplots(1, len(archs), figsize=(6.5 * len(archs), 5), squeeze=False)
    styles = {"diffusion": ("tab:blue", "latent diffusion (w=1)"), "nearest_noise": ("tab:orange", "nearest + noise 1x"),
              "nearest_noise_matched": ("tab:red", "nearest + noise (matched)"), "kde": ("tab:green", "latent KDE"),
              "gaussian": ("tab:gray", "per-coordinate Gaussian"), "reference": ("black", "real children (held out)"),
              "regressor": ("tab:purple", "ridge regressor"), "nearest": ("tab:brown", "nearest seen child")}
    for ax, arch in zip(axes[0], archs):
        seed0 = report["archs"][arch]["per_seed"][0]
        rng = np.random.default_rng(0)
        for method, (color, label) in styles.items():
            if method not in seed0["scatter"]:
                continue
            d = np.asarray(seed0["scatter"][method]["distance"])
            a = np.asarray(seed0["scatter"][method]["acc"])
            keep = rng.permutation(len(d))[:1500]
            big = method in ("reference", "regressor", "nearest")
            ax.scatter(d[keep], a[keep], s=14 if big else 4, alpha=0.8 if big else 0.25, color=color, label=label,
                       marker="x" if big else "o")
        ax.axvline(1.0, color="k", ls="--", lw=1)
        ax.text(1.02, 0.02, "median leave-one-out\ndistance of training children", transform=ax.get_xaxis_transform(),
                fontsize=8)
        ax.set_xlim(-0.05, None)
        ax.set_xlabel("L2 distance to the nearest training model / median leave-one-out distance")
        ax.set_ylabel("test accuracy on the requested (held-out) task")
        ax.set_title(f"{arch} (seed {seed0['seed']}): accuracy against novelty")
        ax.legend(fontsize=7, markerscale=2, loc="lower left")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--store", default="runs/tree_probex.zarr", help="tree_probex store (generated if missing)")
    p.add_argument("--archs", default="mlp,cnn1d")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--n", type=int, default=50, help="samples per request")
    p.add_argument("--support-k", type=int, default=16, help="support-set generator's k (0: skip it)")
    p.add_argument("--head-start", type=int, default=24, help="held-out requests fine-tuned per seed (0: skip)")
    p.add_argument("--max-requests", type=int, default=0, help="use a seeded subset of the requests (0: all)")
    p.add_argument("--runs", default="runs/bench_generate", help="folder of the weightzoo fit runs")
    p.add_argument("--out", default=str(ROOT / "benchmarks/results/generate.json"))
    p.add_argument("--figure", default=str(ROOT / "docs/img/generate_novelty.png"))
    p.add_argument("--quick", action="store_true", help="2 training epochs: a smoke test, not a result")
    p.add_argument("--markdown", default=None, help="only print the tables of this results JSON as Markdown")
    args = p.parse_args()
    if args.markdown:
        print(markdown(json.loads(Path(args.markdown).read_text())))
        return
    torch.set_num_threads(1)
    store = Path(args.store)
    if not store.exists():
        from generators import generate

        generate("tree_probex", store)
    z = zoo.open(store)
    tasks = Tasks()
    load_before = uptime()
    start = time.perf_counter()
    report: dict[str, Any] = {"benchmark": "generate", "store": str(store), "spec": "tree_probex",
                              "split": "ood_tasks (held-out class sets, test part)", "families": ["class_subset"],
                              "n_samples_per_request": args.n, "seeds": [int(s) for s in args.seeds.split(",")],
                              "support_k": args.support_k, "quick": bool(args.quick),
                              "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                                          "torch_threads": torch.get_num_threads(), "uptime_before": load_before},
                              "archs": {}}
    for arch in args.archs.split(","):
        per_seed = [run_seed(args, arch, int(s), z, tasks) for s in report["seeds"]]
        agg = aggregate(per_seed)
        report["archs"][arch] = {"aggregate": agg, "goals": goals(agg), "per_seed": per_seed}
        print_report(arch, agg, per_seed)
        print(json.dumps(report["archs"][arch]["goals"], indent=1))
    report["machine"]["uptime_after"] = uptime()
    report["wall_time_s"] = time.perf_counter() - start
    figure(report, Path(args.figure))
    scatter = {a: rec["per_seed"][0]["scatter"] for a, rec in report["archs"].items()}
    Path(args.runs).mkdir(parents=True, exist_ok=True)
    (Path(args.runs) / "scatter_seed0.json").write_text(json.dumps(scatter))  # the figure's points
    slim = json.loads(json.dumps(report))
    for arch in slim["archs"].values():
        for s in arch["per_seed"]:
            s.pop("scatter", None)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(slim, indent=1, sort_keys=False) + "\n")
    print(f"wrote {args.out} and {args.figure} ({report['wall_time_s'] / 60:.1f} min; load before: {load_before})")


if __name__ == "__main__":
    main()
