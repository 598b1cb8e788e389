"""``weightzoo download NAME``: named zoos from the catalog."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    """Filled in by the catalog and loader work (issue 4)."""
