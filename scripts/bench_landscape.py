"""Benchmark: Hessian top eigenvalue and trace of a population, vectorised vs one model at a time.

For each width, P MLPs (depth 2) are trained briefly on MNIST-1D (not timed). Then the top Hessian
eigenvalue (power iteration) and trace (Hutchinson) of every model are computed on a fixed set of
training samples and of test samples with the same settings (``landscape.hessian`` defaults:
512 samples each, at most 100 iterations / vectors, tolerance 1e-3) four ways, in the same run:

* ``vectorised``: :func:`generators.landscape.hessian.hessian_metrics` as ``weightzoo metrics`` runs it:
  one ``torch.func`` Hessian-vector product for a group of members, groups sized to a CPU cache
  (``landscape.group_bytes``, 512 KiB);
* ``whole``: the same with the whole population in one group (``group_bytes: 0``, what a GPU wants);
* ``loop``: the same function called for one model at a time;
* ``pyhessian``: a PyHessian-style loop (what the PTMZ code does): an ``nn.Module``, ``autograd.grad``
  with ``create_graph`` once, then one double-backward product per iteration, model by model.

All four use each model's own start vector and Rademacher vectors and the same stopping rule, so
they must give the same numbers; the largest relative differences are recorded. The loops run over
all P models by default (``--baseline-models k`` times k of them and scales the time to P).

    python scripts/bench_landscape.py            # P=32, widths 16, 64 and 256 (a few minutes on 2 CPU cores)
    python scripts/bench_landscape.py --quick    # P=8, smoke test

Writes ``benchmarks/results/landscape.json`` and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from generators.landscape.hessian import group_size, hessian_metrics
from generators.landscape.population_data import STREAM_POWER, STREAM_TRACE, fixed_batch, member_generator
from generators.landscape.settings import HessianSettings, LandscapeSettings
from generators.population import Member, PopulationConfig, PopulationModel, init_model, train_population
from zoo.architectures import load_flat_weights
from zoo.tasks import build_task


def pyhessian_style(module: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, model_id: int,
                    s: HessianSettings) -> tuple[float, float]:
    """Top eigenvalue and trace of one model, the way PyHessian computes them (graph kept once,
    one double-backward per product), with this package's per-model random vectors and stopping rule."""
    params = [p for p in module.parameters()]
    loss = F.cross_entropy(module(x), y)
    grads = torch.autograd.grad(loss, params, create_graph=True)

    def hvp(v: torch.Tensor) -> torch.Tensor:
        parts, offset = [], 0
        for p in params:
            parts.append(v[offset:offset + p.numel()].view_as(p))
            offset += p.numel()
        hv = torch.autograd.grad(grads, params, grad_outputs=parts, retain_graph=True)
        return torch.cat([h.reshape(-1) for h in hv])

    n = sum(p.numel() for p in params)
    v = torch.randn(n, generator=member_generator(s.seed, model_id, STREAM_POWER))
    v /= v.norm()
    eig = float("nan")
    for it in range(s.iters):
        hv = hvp(v)
        new = float((v.double() * hv.double()).sum())
        stop = it > 0 and abs(new - eig) / (abs(eig) + 1e-6) < s.tol
        eig = new
        v = hv / hv.norm()
        if stop:
            break
    gen = member_generator(s.seed, model_id, STREAM_TRACE)
    total, mean = 0.0, 0.0
    for k in range(s.trace_vectors):
        r = torch.randint(0, 2, (n,), generator=gen).float() * 2 - 1
        total += float((r.double() * hvp(r).double()).sum())
        new_mean = total / (k + 1)
        stop = abs(new_mean - mean) / (abs(mean) + 1e-6) < s.trace_tol
        mean = new_mean
        if stop:
            break
    return eig, mean


def _relative(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(a - b) / np.maximum(np.abs(b), 1e-12)))


def run(widths: list[int], population: int, epochs: int, baseline_models: int,
        group_bytes: int = LandscapeSettings().group_bytes) -> list[dict]:
    task = build_task({"source": "mnist1d"})
    s = HessianSettings()
    sets = {split: fixed_batch(task, split, n, s.sample_rule, s.sample_seed)
            for split, n in (("train", s.n_train), ("test", s.n_test))}
    kwargs = dict(iters=s.iters, tol=s.tol, trace_vectors=s.trace_vectors, trace_tol=s.trace_tol, seed=s.seed,
                  batch_size=s.batch_size)
    results = []
    for width in widths:
        config = PopulationConfig("mlp", {"width": width, "depth": 2}, batch_size=64, epochs=epochs,
                                  checkpoint_epochs=(0, epochs))
        members = [Member(i, 1000 + i, lr=0.02 * (1 + i % 4)) for i in range(population)]
        trained = train_population(config, members, task)
        flat = trained.weights[:, -1].contiguous()
        template = init_model(config, task, 0)
        model = PopulationModel([template])
        layout = model.layout
        ids = list(range(population))
        n_base = min(baseline_models, population) if baseline_models > 0 else population
        hessian_metrics(model, layout, flat[:2], *sets["train"], ids[:2], **{**kwargs, "iters": 3, "trace_vectors": 3})

        timings, values = {"vectorised": 0.0, "whole": 0.0, "loop": 0.0, "pyhessian": 0.0}, {}
        for split, (x, y) in sets.items():
            t0 = time.perf_counter()
            vec = hessian_metrics(model, layout, flat, x, y, ids, **kwargs, group_bytes=group_bytes)
            timings["vectorised"] += time.perf_counter() - t0

            t0 = time.perf_counter()
            whole = hessian_metrics(model, layout, flat, x, y, ids, **kwargs, group_bytes=0)
            timings["whole"] += time.perf_counter() - t0

            t0 = time.perf_counter()
            loop = [hessian_metrics(model, layout, flat[i:i + 1], x, y, [i], **kwargs) for i in range(n_base)]
            timings["loop"] += (time.perf_counter() - t0) * population / n_base

            t0 = time.perf_counter()
            ref = []
            for i in range(n_base):
                module = load_flat_weights(init_model(config, task, 0), flat[i])
                ref.append(pyhessian_style(module, x, y, i, s))
            timings["pyhessian"] += (time.perf_counter() - t0) * population / n_base

            values[split] = {
                "top_eig_mean": float(np.mean(vec["top_eig"])), "trace_mean": float(np.mean(vec["trace"])),
                "power_iters_mean": float(np.mean(vec["power_iters"])),
                "trace_vectors_mean": float(np.mean(vec["trace_vectors"])),
                "max_rel_diff_whole_top_eig": _relative(whole["top_eig"], vec["top_eig"]),
                "max_rel_diff_loop_top_eig": _relative(np.concatenate([r["top_eig"] for r in loop]), vec["top_eig"][:n_base]),
                "max_rel_diff_loop_trace": _relative(np.concatenate([r["trace"] for r in loop]), vec["trace"][:n_base]),
                "max_rel_diff_pyhessian_top_eig": _relative(np.array([r[0] for r in ref]), vec["top_eig"][:n_base]),
                "max_rel_diff_pyhessian_trace": _relative(np.array([r[1] for r in ref]), vec["trace"][:n_base]),
            }
        rec = {"width": width, "population": population, "n_params": int(flat.shape[1]), "train_epochs": epochs,
               "n_train_samples": s.n_train, "n_test_samples": s.n_test, "loop_models_timed": n_base,
               "group_size": group_size(layout, min(s.n_train, s.batch_size), population, group_bytes),
               "vectorised_s": timings["vectorised"], "whole_s": timings["whole"], "loop_s": timings["loop"],
               "pyhessian_s": timings["pyhessian"],
               "speedup_vs_loop": timings["loop"] / timings["vectorised"],
               "whole_speedup_vs_loop": timings["loop"] / timings["whole"],
               "speedup_vs_pyhessian": timings["pyhessian"] / timings["vectorised"], "values": values}
        results.append(rec)
        print(f"width {width:4d}: vectorised {rec['vectorised_s']:6.2f} s (groups of {rec['group_size']}), "
              f"whole {rec['whole_s']:6.2f} s, loop {rec['loop_s']:6.2f} s "
              f"({rec['speedup_vs_loop']:.1f}x), pyhessian {rec['pyhessian_s']:6.2f} s "
              f"({rec['speedup_vs_pyhessian']:.1f}x)", flush=True)
    return results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--widths", type=int, nargs="+", default=[16, 64, 256])
    ap.add_argument("--population", type=int, default=32)
    ap.add_argument("--epochs", type=int, default=5, help="training epochs before the Hessian (not timed)")
    ap.add_argument("--baseline-models", type=int, default=0,
                    help="models the loops time, then scaled to P (0: all P)")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads (1: stable timings on a shared machine; 0: torch's default)")
    ap.add_argument("--quick", action="store_true", help="P=8, 1 training epoch, baselines on 2 models")
    ap.add_argument("--out", default="benchmarks/results/landscape.json")
    args = ap.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    if args.quick:
        args.population, args.epochs, args.baseline_models = 8, 1, 2
    results = run(args.widths, args.population, args.epochs, args.baseline_models)
    doc = {
        "benchmark": "landscape",
        "description": ("Hessian top eigenvalue (power iteration) and trace (Hutchinson) of P MLPs (depth 2) on "
                        "MNIST-1D, 512 train + 512 test samples, landscape.hessian defaults; vectorised in cache-sized "
                        "groups (the default) and as one whole population vs the same code one model at a time vs a "
                        "PyHessian-style per-model loop"),
        "machine": {"platform": platform.platform(), "processor": platform.processor(), "cpus": os.cpu_count(),
                    "torch_threads": torch.get_num_threads(), "torch": torch.__version__},
        "command": "python scripts/bench_landscape.py" + (" --quick" if args.quick else ""),
        "results": results,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=2))
    print()
    print(f"{'width':>6} {'P':>4} {'params':>7} {'group':>6} {'vectorised s':>13} {'whole s':>8} {'loop s':>8} "
          f"{'ratio':>6} {'whole':>6} {'pyhessian s':>12} {'ratio':>6} {'max rel diff':>13}")
    for r in results:
        diff = max(v for split in r["values"].values() for k, v in split.items() if k.startswith("max_rel"))
        print(f"{r['width']:>6} {r['population']:>4} {r['n_params']:>7} {r['group_size']:>6} {r['vectorised_s']:>13.2f} "
              f"{r['whole_s']:>8.2f} {r['loop_s']:>8.2f} {r['speedup_vs_loop']:>5.1f}x {r['whole_speedup_vs_loop']:>5.1f}x "
              f"{r['pyhessian_s']:>12.2f} {r['speedup_vs_pyhessian']:>5.1f}x {diff:>13.2e}")
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
