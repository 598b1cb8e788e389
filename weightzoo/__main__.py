"""``python -m weightzoo``: the same as the ``weightzoo`` console script."""

import sys

from weightzoo.cli import main

sys.exit(main())
