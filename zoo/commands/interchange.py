"""``weightzoo import`` and ``weightzoo export``: other formats in and out of a store."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    """Filled in by the interchange and importer work (issue 4)."""
