"""Benchmark: models per second delivered as shuffled training batches, Zarr store vs legacy files vs RAM.

A synthetic zoo of N models of the Model Zoos CNN (``cnn2d`` on 28x28x1: 2,464 parameters, 2 checkpoints)
is written three ways, holding the same float32 bytes:

* a weightzoo store as generation writes it (one chunk per model and checkpoint), and the same store
  packed (:func:`zoo.rechunk.pack_weights`, 256 models per chunk);
* the legacy layout: one ``torch.save`` state dict per model, read with ``torch.load(weights_only=True)``
  and flattened, through a ``DataLoader(shuffle=True)``;
* an in-memory tensor ``[N, n_params]``, served (a) by ``DataLoader(TensorDataset, shuffle=True)`` and
  (b) by a bare ``index_select`` over a random permutation (the fastest possible delivery).

Every method delivers batches of 64 flat weight vectors of the train split (plus targets), shuffled by
model, for at least ``--seconds`` and one full epoch. Each method runs in its own process so its memory
is its own (Linux ``VmHWM``, reset at each phase): the peak above the state after imports, split into
the setup (models table, targets; the RAM copy for the in-memory methods) and serving batches (what
iterating needs on top of the setup); plus, in one extra untimed epoch, the tracemalloc peak; the zoo is
measured at two sizes to show whether memory grows with it. All timings come from one run: every method
runs ``--rounds`` times, interleaved, and its fastest run counts (other processes share the machine);
ratios are against the legacy layout and the in-memory copies at the same zoo size.

    python scripts/bench_loader.py                    # N = 2048 and 8192
    python scripts/bench_loader.py --sizes 512 1024   # quicker

Writes ``benchmarks/results/loader.json`` and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pandas as pd
import torch

METHODS = ("zarr_packed", "zarr_per_model", "zarr_dataset", "legacy_files", "memory_dataloader", "memory_gather")
DESCRIPTIONS = {
    "zarr_packed": "ZooBatchLoader, packed store (256 models/chunk), direct chunk reads",
    "zarr_per_model": "ZooBatchLoader, store as generated (1 model/chunk), direct chunk reads",
    "zarr_dataset": "DataLoader(ZooDataset, shuffle), store as generated",
    "legacy_files": "DataLoader over one torch.save file per model",
    "memory_dataloader": "DataLoader(TensorDataset) over a RAM copy",
    "memory_gather": "index_select over a RAM copy (no loader)",
}
GOAL_VS_LEGACY = 20.0
GOAL_VS_MEMORY = 0.5
BATCH = 64


# ---------------------------------------------------------------------------- building the zoo
def build(root: Path, n: int, seed: int = 0) -> dict:
    """The store, its packed copy and the legacy files for ``n`` models; returns their paths."""
    import zoo
    from kernels.layout import ParamLayout
    from zoo.architectures import architecture_record
    from zoo.format import STATUS_CODES
    from zoo.rechunk import pack_weights
    from zoo.splits import assign_split

    key, arch = architecture_record("cnn2d", (1, 28, 28), 10, {})
    layout = ParamLayout.from_record(arch["layout"])
    models = pd.DataFrame({"model_id": np.arange(n), "arch_key": key, "task": "t0",
                           "lr": np.random.default_rng(seed).uniform(1e-4, 1e-2, n)})
    store = root / f"zoo_{n}.zarr"
    z = zoo.create_zoo(store, models=models, architectures={key: arch}, tasks={"t0": {"source": "mnist1d"}},
                       checkpoint_epochs=[0, 50], metric_names=["test_acc"], n_epochs=50)
    rng = np.random.default_rng(seed)
    weights = z.group[f"weights/{key}"]
    for start in range(0, n, 512):
        stop = min(start + 512, n)
        weights[start:stop] = rng.standard_normal((stop - start, 2, layout.n_params), dtype=np.float32) * 0.1
    z.group["metrics/test_acc"][:] = rng.random((n, 2), dtype=np.float32)
    z.group["results/status"][:] = np.full(n, STATUS_CODES["ok"], dtype=np.int8)
    z = zoo.open(store, mode="r+")
    z.write_split("default", assign_split(z.models, seed=0, fractions=(0.7, 0.15, 0.15)), {"rule": "hash", "seed": 0})
    packed = root / f"zoo_{n}_packed.zarr"
    shutil.copytree(store, packed)
    pack_weights(packed, 256, progress=False)
    legacy = root / f"legacy_{n}"
    legacy.mkdir()
    final = weights[:, -1, :]
    for i in range(n):
        torch.save({k: v.clone() for k, v in layout.unflatten(torch.from_numpy(final[i])).items()},
                   legacy / f"model_{i:06d}.pt")
    return {"store": str(store), "packed": str(packed), "legacy": str(legacy)}


# ---------------------------------------------------------------------------- one method, in a child process
class LegacyFiles(torch.utils.data.Dataset):
    """The legacy layout: one state dict per model, loaded safely and flattened in layout order."""

    def __init__(self, directory: str, ids: np.ndarray, targets: torch.Tensor, names: list[str]) -> None:
        self.directory, self.ids, self.targets, self.names = directory, ids, targets, names

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int):
        state = torch.load(f"{self.directory}/model_{int(self.ids[i]):06d}.pt", weights_only=True)
        return torch.cat([state[k].reshape(-1) for k in self.names]), self.targets[i]


def _status_mb(field: str) -> float:
    """``VmRSS`` (resident now) or ``VmHWM`` (peak resident) of this process, in MB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"/proc/self/status has no {field}")


def _reset_peak() -> None:
    """Reset the peak-RSS mark (Linux >= 4.0), so VmHWM covers only what follows."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def _batches(method: str, paths: dict):
    """An epoch-iterable of ``(x, y)`` batches and the number of models per epoch."""
    import zoo
    from zoo.batch_loader import ZooBatchLoader
    from zoo.dataset import ZooDataset

    store = paths["packed"] if method == "zarr_packed" else paths["store"]
    z = zoo.open(store)
    ds = ZooDataset(z, split="train", checkpoint=-1, target="test_acc")
    if method in ("zarr_packed", "zarr_per_model"):
        return ZooBatchLoader(ds, batch_size=BATCH, shuffle=True, seed=0), len(ds)
    if method == "zarr_dataset":
        return torch.utils.data.DataLoader(ds, batch_size=BATCH, shuffle=True), len(ds)
    if method == "legacy_files":
        files = LegacyFiles(paths["legacy"], ds.model_ids, ds.targets, ds.layout.names)
        return torch.utils.data.DataLoader(files, batch_size=BATCH, shuffle=True), len(ds)
    memory = z.read_rows(ds.arch, ds.rows, ds.checkpoint).clone()  # the same bytes, in RAM
    if method == "memory_dataloader":
        data = torch.utils.data.TensorDataset(memory, ds.targets)
        return torch.utils.data.DataLoader(data, batch_size=BATCH, shuffle=True), len(ds)

    class Gather:
        def __iter__(self):
            perm = torch.randperm(len(memory))
            for i in range(0, len(perm), BATCH):
                idx = perm[i:i + BATCH]
                yield memory.index_select(0, idx), ds.targets[idx]

    return Gather(), len(ds)


def child(method: str, paths: dict, seconds: float) -> dict:
    import importlib

    for module in ("zarr", "zoo", "zoo.batch_loader", "zoo.dataset"):  # libraries loaded before the memory baseline
        importlib.import_module(module)

    torch.set_num_threads(1)
    _reset_peak()
    rss_start = _status_mb("VmRSS")
    batches, per_epoch = _batches(method, paths)
    setup_peak, rss_setup = _status_mb("VmHWM"), _status_mb("VmRSS")
    _reset_peak()  # from here on: what serving batches needs on top of the setup (table, RAM copy...)
    delivered, epochs, checksum = 0, 0, 0.0
    t0 = time.perf_counter()
    while epochs == 0 or time.perf_counter() - t0 < seconds:
        for x, y in batches:
            delivered += x.shape[0]
            checksum += float(x[0, 0])  # touch the data
        epochs += 1
    elapsed = time.perf_counter() - t0
    iteration_peak = _status_mb("VmHWM")
    # Python-level allocations of one more epoch (tracemalloc slows Python code, so it is off while timing)
    tracemalloc.start()
    for x, y in batches:
        pass
    _, traced_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {"models_per_s": delivered / elapsed, "models_delivered": delivered, "epochs": epochs,
            "models_per_epoch": per_epoch, "seconds": elapsed,
            "setup_peak_mb": setup_peak - rss_start, "resident_after_setup_mb": rss_setup - rss_start,
            "iteration_peak_mb": iteration_peak - rss_setup,
            "peak_rss_above_start_mb": max(setup_peak, iteration_peak) - rss_start,
            "tracemalloc_peak_mb": traced_peak / 2**20}


# ---------------------------------------------------------------------------- driver
def run_method(method: str, paths: dict, seconds: float) -> dict:
    cmd = [sys.executable, __file__, "--child", method, "--paths", json.dumps(paths), "--seconds", str(seconds)]
    r = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": os.getcwd()})
    if r.returncode != 0:
        raise RuntimeError(f"{method} failed:\n{r.stderr}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[2048, 8192], help="zoo sizes (models)")
    ap.add_argument("--seconds", type=float, default=2.0, help="minimum timed seconds per method (>= 1 epoch)")
    ap.add_argument("--rounds", type=int, default=3,
                    help="runs of every method, interleaved; the fastest counts (the machine is shared)")
    ap.add_argument("--out", default="benchmarks/results/loader.json")
    ap.add_argument("--workdir", default=None, help="where to build the zoos (default: a temporary directory)")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--paths", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.child, json.loads(args.paths), args.seconds)))
        return

    from rich.console import Console
    from rich.table import Table

    work = Path(args.workdir or tempfile.mkdtemp(prefix="bench_loader_"))
    results = []
    try:
        for n in args.sizes:
            t0 = time.perf_counter()
            paths = build(work, n)
            print(f"built zoo of {n} models in {time.perf_counter() - t0:.1f}s", flush=True)
            runs: dict[str, list[dict]] = {m: [] for m in METHODS}
            for _ in range(args.rounds):
                for method in METHODS:
                    runs[method].append(run_method(method, paths, args.seconds))
            for method in METHODS:
                best = max(runs[method], key=lambda r: r["models_per_s"])
                rec = {"n_models": n, "method": method, "description": DESCRIPTIONS[method], **best,
                       "models_per_s_all_rounds": [r["models_per_s"] for r in runs[method]],
                       **{k: max(r[k] for r in runs[method]) for k in
                          ("peak_rss_above_start_mb", "iteration_peak_mb", "setup_peak_mb", "tracemalloc_peak_mb")}}
                results.append(rec)
                print(f"  {method:18s} {rec['models_per_s']:12,.0f} models/s  peak +{rec['peak_rss_above_start_mb']:.0f} MB "
                      f"(serving batches: +{rec['iteration_peak_mb']:.0f} MB)", flush=True)
    finally:
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)

    by = {(r["n_models"], r["method"]): r for r in results}
    for r in results:
        n = r["n_models"]
        r["vs_legacy"] = r["models_per_s"] / by[(n, "legacy_files")]["models_per_s"]
        r["vs_memory_dataloader"] = r["models_per_s"] / by[(n, "memory_dataloader")]["models_per_s"]
        r["vs_memory_gather"] = r["models_per_s"] / by[(n, "memory_gather")]["models_per_s"]
    small, large = min(args.sizes), max(args.sizes)
    best = by[(large, "zarr_packed")]
    goals = {
        "vs_legacy": {"goal": GOAL_VS_LEGACY, "value": best["vs_legacy"], "met": best["vs_legacy"] >= GOAL_VS_LEGACY},
        "vs_memory_dataloader": {"goal": GOAL_VS_MEMORY, "value": best["vs_memory_dataloader"],
                                 "met": best["vs_memory_dataloader"] >= GOAL_VS_MEMORY},
        "vs_memory_gather": {"goal": GOAL_VS_MEMORY, "value": best["vs_memory_gather"],
                             "met": best["vs_memory_gather"] >= GOAL_VS_MEMORY},
        "peak_memory_growth_mb": {
            f"{m}_{k}": by[(large, m)][k] - by[(small, m)][k]
            for m in ("zarr_packed", "memory_dataloader", "legacy_files")
            for k in ("iteration_peak_mb", "peak_rss_above_start_mb")} | {"sizes": [small, large]},
    }
    doc = {"benchmark": "loader",
           "description": "shuffled batches of 64 flat weight vectors (cnn2d, 2,464 params, train split) per second",
           "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "torch": torch.__version__,
                       "torch_threads": 1},
           "command": "python scripts/bench_loader.py " + " ".join(sys.argv[1:]),
           "results": results, "goals": goals}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=2))

    table = Table(title="models/s delivered as shuffled batches of 64 (higher is better)")
    for col in ("N", "method", "models/s", "x legacy", "x RAM DataLoader", "x RAM gather", "peak MB", "serving MB",
                "traced MB"):
        table.add_column(col, justify="right" if col not in ("method",) else "left")
    for r in results:
        table.add_row(str(r["n_models"]), r["method"], f"{r['models_per_s']:,.0f}", f"{r['vs_legacy']:.1f}",
                      f"{r['vs_memory_dataloader']:.2f}", f"{r['vs_memory_gather']:.2f}",
                      f"{r['peak_rss_above_start_mb']:.0f}", f"{r['iteration_peak_mb']:.0f}",
                      f"{r['tracemalloc_peak_mb']:.0f}")
    console = Console()
    console.print(table)
    for name, g in goals.items():
        if "goal" in g:
            console.print(f"zarr_packed {name}: {g['value']:.2f} (goal {g['goal']}) -> {'met' if g['met'] else 'NOT met'}")
    growth = goals["peak_memory_growth_mb"]
    console.print(f"memory growth from N={small} to N={large}: serving batches zarr_packed "
                  f"{growth['zarr_packed_iteration_peak_mb']:+.0f} MB; whole process zarr_packed "
                  f"{growth['zarr_packed_peak_rss_above_start_mb']:+.0f} MB, in-memory "
                  f"{growth['memory_dataloader_peak_rss_above_start_mb']:+.0f} MB")
    console.print(f"wrote {out}")


if __name__ == "__main__":
    main()
