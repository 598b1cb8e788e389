"""``weightzoo metrics STORE``: loss-landscape metrics of an existing store."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    """Filled in by the landscape-metrics work (issue 3)."""
