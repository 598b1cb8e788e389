"""``weightzoo phases`` and ``weightzoo plot``: phase labels and phase diagrams of a store."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    """Filled in by the phase-label work (issue 3)."""
