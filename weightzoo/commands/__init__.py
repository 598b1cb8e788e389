"""Sub-commands of the ``weightzoo`` CLI, one module per group.

Each module has ``register(subparsers)``, which adds its sub-commands with ``set_defaults(func=...)``
(and ``interrupted=...``: what Ctrl-C leaves, when a rerun does not resume).
A command's function imports the heavy packages (``generators``, ``weightnets``) only when it runs,
so ``weightzoo info`` and ``import zoo`` stay light.
"""

from __future__ import annotations

import argparse
from typing import Callable

from weightzoo.commands import compose, download, fit, generate, info, interchange, landscape, phases, sample, schema

# Order of the groups in ``weightzoo --help``.
REGISTRARS: list[Callable[[argparse._SubParsersAction], None]] = [
    generate.register,    # demo, generate
    landscape.register,   # metrics
    phases.register,      # phases, plot
    info.register,        # info
    download.register,    # download
    interchange.register,  # import, export
    schema.register,       # schema
    fit.register,          # fit (weightnets, LightningCLI)
    compose.register,      # compose (weightnets.compose)
    sample.register,       # sample (weightnets.generative)
]
