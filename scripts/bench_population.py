"""Benchmark: vectorised population training vs a plain per-model PyTorch training loop.

For each width, P MLPs (depth 2) train on MNIST-1D with the same seeds, data order and SGD settings,
once with :func:`generators.population.train_population` and once model by model with
:func:`generators.population.train_single` (an ordinary ``nn.Module`` + ``torch.optim.SGD`` loop). Both
are timed in the same run; the ratio is the speedup. Checkpoint evaluation is switched off (only the
initial and final weights are kept) so the timing is the training itself.

    python scripts/bench_population.py                 # widths 16, 64, 256; batch 32 and 64; P=64
    python scripts/bench_population.py --quick         # smaller, for a smoke test

Writes ``benchmarks/results/population.json`` and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import torch

from generators.population import Member, PopulationConfig, train_population, train_single
from zoo.tasks import build_task

GOALS = {16: 10.0, 64: 10.0, 256: 2.0}


def run(widths: list[int], population: int, epochs: int, baseline_models: int, batch_sizes: list[int]) -> list[dict]:
    task = build_task({"source": "mnist1d"})
    results = []
    for batch_size, width in [(b, w) for b in batch_sizes for w in widths]:
        config = PopulationConfig("mlp", {"width": width, "depth": 2}, optimizer="sgd", batch_size=batch_size,
                                  epochs=epochs, checkpoint_epochs=(0, epochs))
        members = [Member(i, 1000 + i, lr=0.01 * (1 + i % 4), momentum=0.9) for i in range(population)]
        # warm-up both paths (allocator, lazy init), not timed
        train_population(config, members[:2], task)
        train_single(config, members[0], task)

        t0 = time.perf_counter()
        pop = train_population(config, members, task)
        t_pop = time.perf_counter() - t0

        # the loop baseline is linear in the number of models: time a subset and scale
        n_base = min(baseline_models, population)
        t0 = time.perf_counter()
        singles = [train_single(config, m, task) for m in members[:n_base]]
        t_loop = (time.perf_counter() - t0) * population / n_base

        max_diff = max(float((pop.weights[i, -1] - s.weights[0, -1]).abs().max()) for i, s in enumerate(singles))
        model_epochs = population * epochs
        rec = {
            "width": width,
            "population": population,
            "epochs": epochs,
            "batch_size": batch_size,
            "n_params": int(pop.weights.shape[-1]),
            "vectorised_s": t_pop,
            "loop_s": t_loop,
            "loop_models_timed": n_base,
            "vectorised_model_epochs_per_s": model_epochs / t_pop,
            "loop_model_epochs_per_s": model_epochs / t_loop,
            "speedup": t_loop / t_pop,
            "goal": GOALS.get(width, 2.0 if width > 64 else 10.0),
            "max_abs_weight_diff_vs_loop": max_diff,
        }
        rec["meets_goal"] = rec["speedup"] >= rec["goal"]
        results.append(rec)
        print(f"batch {batch_size:4d} width {width:4d}: vectorised {rec['vectorised_model_epochs_per_s']:8.1f} model-epochs/s, "
              f"loop {rec['loop_model_epochs_per_s']:7.1f}, speedup {rec['speedup']:5.1f}x", flush=True)
    return results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--widths", type=int, nargs="+", default=[16, 64, 256])
    ap.add_argument("--population", type=int, default=64)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--batch-sizes", type=int, nargs="+", default=[32, 64])
    ap.add_argument("--baseline-models", type=int, default=4, help="models the loop baseline times (then scaled)")
    ap.add_argument("--quick", action="store_true", help="P=16, 1 epoch, widths 16 and 64")
    ap.add_argument("--out", default="benchmarks/results/population.json")
    args = ap.parse_args()
    if args.quick:
        args.widths, args.population, args.epochs, args.baseline_models = [16, 64], 16, 1, 2
        args.batch_sizes = [64]
    results = run(args.widths, args.population, args.epochs, args.baseline_models, args.batch_sizes)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    doc = {
        "benchmark": "population",
        "description": "MLP (depth 2) on MNIST-1D, SGD+momentum; vectorised population vs per-model torch loop",
        "machine": {"platform": platform.platform(), "processor": platform.processor(), "cpus": os.cpu_count(),
                    "torch_threads": torch.get_num_threads(), "torch": torch.__version__},
        "command": "python scripts/bench_population.py" + (" --quick" if args.quick else ""),
        "results": results,
    }
    out.write_text(json.dumps(doc, indent=2))
    print()
    print(f"{'batch':>6} {'width':>6} {'P':>4} {'params':>8} {'vec me/s':>10} {'loop me/s':>10} {'speedup':>8} {'goal':>6} ok")
    for r in results:
        print(f"{r['batch_size']:>6} {r['width']:>6} {r['population']:>4} {r['n_params']:>8} {r['vectorised_model_epochs_per_s']:>10.1f} "
              f"{r['loop_model_epochs_per_s']:>10.1f} {r['speedup']:>7.1f}x {r['goal']:>5.0f}x "
              f"{'yes' if r['meets_goal'] else 'NO'}")
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
