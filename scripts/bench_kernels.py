"""Benchmark the fused kernels against the usual Python formulations; writes benchmarks/results/kernels.json.

compose: the fused op (``kernels.compose``) vs an aTLAS-style per-tensor Python loop vs ``torch.stack`` +
einsum (mergekit / FusionBench style), for B ∈ {1, 8, 64}, T ∈ {2, 8, 22} and several N.
population_forward: the fused op vs a loop that loads every weight vector into an ``nn.Module``.

Every (configuration, method) runs in its own subprocess so that the peak resident memory it adds
(``ru_maxrss`` after the call minus before it, inputs already allocated) is its own. Times are the
best of ``--reps`` calls after the first. Effective bandwidth for compose is
``((T + 1) · N · in_bytes + B · N · out_bytes) / time``. The Triton backend is timed only when CUDA is
available (then the device name is recorded).

    python scripts/bench_kernels.py            # default sweep (about 10 minutes on 2 CPU cores)
    python scripts/bench_kernels.py --quick    # small sweep (about 5 minutes)
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

ROOT = Path(__file__).resolve().parents[1]
N_BLOCKS = 24  # ragged blocks, like the parameter tensors of a small network


def _blocks(n: int) -> list[int]:
    # ragged block sizes that sum to n: alternating large "weights" and small "biases"
    weights = [(n // (N_BLOCKS // 2)) - 37] * (N_BLOCKS // 2)
    sizes = []
    for w in weights:
        sizes += [w, 37]
    sizes[-2] += n - sum(sizes)
    return sizes


def _maxrss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


def _child(cfg: dict) -> dict:
    import torch

    from kernels import BlockSpec, compose, population_forward

    torch.manual_seed(0)
    device = torch.device(cfg.get("device", "cpu"))
    reps = int(cfg["reps"])
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    if cfg["op"] == "compose":
        B, T, N = cfg["B"], cfg["T"], cfg["N"]
        spec = BlockSpec.from_sizes(_blocks(N))
        base = torch.randn(N, device=device)
        stack = torch.randn(T, N, device=device)
        coeffs = torch.randn(B, T, spec.n_blocks, device=device)
        rows = list(stack.unbind(0))  # the task vectors as separate tensors (views, no copy)
        bounds = list(zip(spec.offsets, spec.sizes))
        method = cfg["method"]

        def run():
            if method in ("fused_torch", "fused_triton"):
                return compose(base, stack, coeffs, spec, backend=method.split("_")[1])
            if method == "loop":  # aTLAS: build every composed parameter tensor in a Python loop
                outs = []
                for b in range(B):
                    parts = []
                    for k, (off, size) in enumerate(bounds):
                        p = base[off:off + size].clone()
                        for t in range(T):
                            p = p + coeffs[b, t, k] * rows[t][off:off + size]
                        parts.append(p)
                    outs.append(torch.cat(parts))
                return torch.stack(outs)
            if method == "stack_einsum":  # stack all task vectors into one [T, N] tensor, then contract
                stacked = torch.stack(rows)
                out = torch.empty(B, N, device=device)
                for k, (off, size) in enumerate(bounds):
                    out[:, off:off + size] = base[off:off + size] + torch.einsum(
                        "bt,tn->bn", coeffs[:, :, k], stacked[:, off:off + size])
                return out
            raise ValueError(method)
    else:
        from zoo.architectures import build_architecture, layout_of, load_flat_weights

        module = build_architecture(cfg["arch"], cfg["input_shape"], 10, cfg["config"]).to(device)
        layout = layout_of(module)
        flat = torch.randn(cfg["P"], layout.n_params, device=device) * 0.1
        x = torch.randn(cfg["B"], *cfg["input_shape"], device=device)
        method = cfg["method"]

        def run():
            with torch.no_grad():
                if method in ("fused_torch", "fused_triton"):
                    return population_forward(flat, module, x, backend=method.split("_")[1])
                return torch.stack([load_flat_weights(module, f)(x) for f in flat])

    # warm-up: the first call of any torch.library op imports dispatch machinery (~140 MiB of RSS) that is not
    # the op's own memory; pay it before measuring, for every method alike
    compose(torch.zeros(8, device=device), torch.zeros(2, 8, device=device), torch.ones(2, device=device))
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
        base_mem = torch.cuda.memory_allocated()
    rss0 = _maxrss_bytes()
    sync()
    t0 = time.perf_counter()
    out = run()
    sync()
    first = time.perf_counter() - t0
    peak = (torch.cuda.max_memory_allocated() - base_mem) if device.type == "cuda" else _maxrss_bytes() - rss0
    del out
    times = [first]
    for _ in range(reps):
        sync()
        t0 = time.perf_counter()
        run()
        sync()
        times.append(time.perf_counter() - t0)
    return {"time_s": min(times[1:]) if reps else first, "first_call_s": first, "peak_extra_bytes": int(peak)}


def _run_child(cfg: dict) -> dict:
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    r = subprocess.run([sys.executable, __file__, "--child", json.dumps(cfg)], capture_output=True, text=True,
                       env=env, cwd=ROOT)
    if r.returncode != 0:
        return {"error": (r.stderr or r.stdout).strip().splitlines()[-1] if (r.stderr or r.stdout) else "failed"}
    return json.loads(r.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small sweep (N = 1e6, and 1e7 for B*T <= 16)")
    ap.add_argument("--reps", type=int, default=2, help="timed calls after the first (best is reported)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "kernels.json"))
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(_child(json.loads(args.child))))
        return

    import torch

    cuda = torch.cuda.is_available()
    device = "cuda" if cuda else "cpu"
    methods = ["fused_torch", "loop", "stack_einsum"] + (["fused_triton"] if cuda else [])
    Ns = [1_000_000, 10_000_000] if args.quick else [1_000_000, 10_000_000, 100_000_000]
    work_limit = 2e9  # skip configurations with B*T*N above this (they take minutes per call on 2 CPU cores)
    records, skipped = [], []
    print(f"{'op':8} {'B':>3} {'T':>3} {'N':>11} {'method':14} {'time ms':>10} {'GB/s':>7} {'peak extra MiB':>15}")
    for N in Ns:
        for B in (1, 8, 64):
            for T in (2, 8, 22):
                if (B * T * N > work_limit or (N >= 100_000_000 and (B > 1 or T > 8))
                        or (args.quick and N >= 10_000_000 and B * T > 16)):
                    skipped.append({"B": B, "T": T, "N": N, "reason": "time/memory budget of the CPU sweep"})
                    continue
                for m in methods:
                    cfg = {"op": "compose", "B": B, "T": T, "N": N, "method": m, "reps": args.reps, "device": device}
                    res = _run_child(cfg)
                    rec = {**cfg, **res}
                    if "time_s" in res:
                        rec["bandwidth_GBps"] = ((T + 1) * N * 4 + B * N * 4) / res["time_s"] / 1e9
                        print(f"{'compose':8} {B:>3} {T:>3} {N:>11,} {m:14} {res['time_s'] * 1e3:>10.1f} "
                              f"{rec['bandwidth_GBps']:>7.2f} {res['peak_extra_bytes'] / 2**20:>15.1f}", flush=True)
                    else:
                        print(f"{'compose':8} {B:>3} {T:>3} {N:>11,} {m:14} error: {res['error']}", flush=True)
                    records.append(rec)
    pop_methods = ["fused_torch", "module_loop"] + (["fused_triton"] if cuda else [])
    pop_cfgs = [("mlp", [784], {"width": 64, "depth": 2}, P) for P in ((16, 128) if args.quick else (16, 128, 1024))]
    pop_cfgs += [("cnn2d", [1, 28, 28], {}, P) for P in ((16,) if args.quick else (16, 128))]
    print(f"\n{'op':18} {'arch':6} {'P':>5} {'B':>4} {'method':14} {'time ms':>10} {'peak extra MiB':>15}")
    for arch, shape, conf, P in pop_cfgs:
        for m in pop_methods:
            cfg = {"op": "population_forward", "arch": arch, "input_shape": shape, "config": conf, "P": P, "B": 256,
                   "method": m, "reps": args.reps, "device": device}
            res = _run_child(cfg)
            records.append({**cfg, **res})
            if "time_s" in res:
                print(f"{'population_forward':18} {arch:6} {P:>5} {256:>4} {m:14} {res['time_s'] * 1e3:>10.1f} "
                      f"{res['peak_extra_bytes'] / 2**20:>15.1f}", flush=True)
            else:
                print(f"{'population_forward':18} {arch:6} {P:>5} {256:>4} {m:14} error: {res['error']}", flush=True)
    result = {
        "command": "python scripts/bench_kernels.py" + (" --quick" if args.quick else ""),
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "device": torch.cuda.get_device_name(0) if cuda else f"CPU ({platform.processor() or platform.machine()}, "
                                                            f"{os.cpu_count()} cores)",
        "torch": torch.__version__,
        "cuda": cuda,
        "triton_timed": cuda,
        "quick": bool(args.quick),
        "notes": ("peak_extra_bytes: CPU = growth of ru_maxrss during the first call (inputs already allocated; "
                  "includes the [B, N] output); CUDA = torch.cuda.max_memory_allocated growth. "
                  "bandwidth_GBps = ((T+1)*N*4 + B*N*4) / time. Configurations with B*T*N > 2e9, and N = 1e8 "
                  "beyond B=1, T<=8, are skipped on CPU for time; --quick also skips N >= 1e7 with B*T > 16 (all listed in 'skipped'); N = 1e8 runs only in the default sweep."),
        "records": records,
        "skipped": skipped,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1))
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
