"""``weightzoo export``, ``weightzoo import`` and ``weightzoo pack-weights``: other formats in and out of a
store, and complete stores rechunked for fast loading."""

from __future__ import annotations

import argparse

ROUND_TRIP_FORMATS = ("hdf5", "hf", "safetensors")
PUBLIC_FORMATS = ("modelzoos", "smallcnnzoo", "safetensors-dir")


def _print_store(z, title: str) -> None:
    from rich.console import Console

    from weightzoo.commands.info import architecture_table

    info = z.info()
    console = Console()
    console.print(architecture_table(info, title))
    console.print(f"{info['path']}: {info['n_models']} models, checkpoints at epochs {info['checkpoints']}, "
                  f"status {info['status_counts']}")


def _cmd_export(args: argparse.Namespace) -> int:
    from zoo.interchange import export_zoo
    from zoo.store import open_zoo

    out = export_zoo(open_zoo(args.store), args.format, args.out, progress=not args.quiet)
    print(f"wrote {out} ({args.format})")
    return 0


def _cmd_import(args: argparse.Namespace) -> int:
    from zoo.lock import store_lock

    with store_lock(args.out, wait=args.wait):
        return _import(args)


def _import(args: argparse.Namespace) -> int:
    if args.source_format in ROUND_TRIP_FORMATS:
        from zoo.interchange import import_zoo

        z = import_zoo(args.src, args.source_format, args.out, progress=not args.quiet)
    else:
        from zoo.importers import import_public

        z = import_public(args.src, args.source_format, args.out, progress=not args.quiet)
    if args.pack:
        from zoo.rechunk import pack_weights

        z = pack_weights(args.out, args.pack, progress=not args.quiet)
    _print_store(z, f"imported from {args.source_format}")
    return 0


def _cmd_pack(args: argparse.Namespace) -> int:
    from zoo.lock import store_lock
    from zoo.rechunk import pack_weights

    with store_lock(args.store, wait=args.wait):
        z = pack_weights(args.store, args.models_per_chunk, progress=not args.quiet)
    _print_store(z, f"packed: {args.models_per_chunk} models per weights chunk")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="write a store as HDF5, a Hugging Face dataset or per-model safetensors")
    p.add_argument("store")
    p.add_argument("--format", required=True, choices=ROUND_TRIP_FORMATS)
    p.add_argument("--out", required=True, help="output file (hdf5) or directory (hf, safetensors); must not exist")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_export, interrupted="nothing was written to --out; rerun the same command to start again")

    p = sub.add_parser("import", help="build a store from an export or a public zoo format")
    p.add_argument("--from", dest="source_format", required=True, choices=ROUND_TRIP_FORMATS + PUBLIC_FORMATS,
                   help="hdf5/hf/safetensors: a weightzoo export; modelzoos: Ray Tune trial directories (Model "
                        "Zoos, Phase-Transition Model Zoo); smallcnnzoo: weights.npy + metrics.csv + layout.csv; "
                        "safetensors-dir: a tree of per-model safetensors files (Model-J)")
    p.add_argument("src", help="the file or directory to import")
    p.add_argument("--out", required=True, help="the new store (a directory ending in .zarr); must not exist")
    p.add_argument("--pack", type=int, default=0, metavar="M",
                   help="afterwards, chunk the weights by M models for fast batch loading (complete stores only)")
    p.add_argument("--wait", action="store_true",
                   help="if another command is writing the store, wait for it to finish instead of exiting (code 2)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_import)

    p = sub.add_parser("pack-weights", help="rechunk a complete store's weights by many models for fast loading")
    p.add_argument("store")
    p.add_argument("--models-per-chunk", type=int, default=256)
    p.add_argument("--wait", action="store_true",
                   help="if another command is writing the store, wait for it to finish instead of exiting (code 2)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_pack, interrupted="each weights array is packed or untouched, never half; rerun the same "
                              "command to finish")
