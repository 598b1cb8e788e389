"""The ``weightzoo`` command line: a thin layer over the Python APIs of :mod:`zoo`, :mod:`generators`
and :mod:`weightnets` (``weightzoo ...`` or ``python -m weightzoo ...``).

Nothing imports this package; it imports the others, each command only when it runs.
"""

from __future__ import annotations

from zoo import __version__

__all__ = ["__version__"]
