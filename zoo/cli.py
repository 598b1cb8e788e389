"""The ``weightzoo`` command line: a thin layer over the Python APIs.

Sub-commands live in :mod:`zoo.commands` (one module per group). Commands that train import
:mod:`generators` only when they run, so ``weightzoo info`` and ``import zoo`` stay light.
"""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from zoo.commands.fit import run_fit
from zoo.errors import user_error


def build_parser() -> argparse.ArgumentParser:
    from zoo.commands import REGISTRARS

    parser = argparse.ArgumentParser(prog="weightzoo", description="Model zoos for weight-space learning.")
    sub = parser.add_subparsers(dest="command", required=True)
    for register in REGISTRARS:
        register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    if argv[:1] == ["fit"]:  # every flag after 'fit' belongs to LightningCLI, parsed there
        args = argparse.Namespace(command="fit", func=lambda a: run_fit(argv[1:]))
    else:
        args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except Exception as exc:  # a ZooError may arrive wrapped by a library (datasets, Ray): find it
        cause = user_error(exc)
        if cause is None:
            raise
        print(f"weightzoo {args.command}: error: {cause}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"weightzoo {args.command}: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
