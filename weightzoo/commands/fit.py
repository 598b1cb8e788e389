"""``weightzoo fit --config CFG ...``: train a weight-space model with LightningCLI (:mod:`weightnets.cli`).

Every flag after ``fit`` goes to LightningCLI unparsed (``weightzoo.cli.main`` routes it), so dotted
overrides and ``--help`` work as in any LightningCLI program.
"""

from __future__ import annotations

import argparse
from typing import Sequence


def run_fit(argv: Sequence[str]) -> int:
    from weightnets.cli import fit_and_test

    fit_and_test(list(argv))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    sub.add_parser("fit", add_help=False,
                   help="train a weight-space model on a zoo (LightningCLI: --config CFG, dotted overrides; "
                        "'weightzoo fit --help' lists every field)")
