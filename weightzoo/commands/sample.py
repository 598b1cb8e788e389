"""``weightzoo sample CKPT --store STORE --tasks unseen|seen|IDS|classes:... --n N --out GEN.zarr``:
generate weights for tasks with a trained generator (:mod:`weightnets.generative.sample`)."""

from __future__ import annotations

import argparse


def _cmd_sample(args: argparse.Namespace) -> int:
    from weightnets.generative.sample import print_table, sample_to_store

    gz, table = sample_to_store(args.checkpoint, args.store, args.tasks, args.n, args.out, guidance=args.guidance,
                                support=args.support, seed=args.seed, steps=args.steps, progress=not args.quiet)
    print_table(table, f"{args.tasks} tasks: test accuracy of {args.n} samples per task (best of N chosen on "
                       "validation accuracy)")
    if gz is not None:
        print(f"wrote {gz.n_models} models to {args.out}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sample", help="generate weights for tasks with a trained generator, evaluate them and write "
                                      "them into a zoo store")
    p.add_argument("checkpoint", help="generator checkpoint (LatentDiffusion .ckpt) or its 'weightzoo fit' run folder")
    p.add_argument("--store", required=True, help="the zoo whose tasks (and bases) to generate for")
    p.add_argument("--tasks", default="unseen",
                   help="unseen (held-out tasks of the generator's split), seen (its training tasks), comma-separated "
                        "model ids of children, or classes:C1,C2,...[;C1,...] (new class subsets, for every base)")
    p.add_argument("--n", type=int, default=50, help="samples per task (default 50)")
    p.add_argument("--out", default=None, help="store to write the generated models into (must not exist)")
    p.add_argument("--guidance", type=float, default=None,
                   help="classifier-free guidance scale w (0: unconditional, 1: conditional; default: the model's)")
    p.add_argument("--support", type=int, default=None,
                   help="support-set generators: k labelled training examples per task (default: k of training)")
    p.add_argument("--seed", type=int, default=0, help="seed of the samples and support sets")
    p.add_argument("--steps", type=int, default=None, help="DDIM steps (default: the model's sample_steps)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_sample, interrupted="nothing was written to --out; rerun the same command to start again")
