"""Loss-landscape metrics of whole populations: Hessian top eigenvalue and trace, CKA, mode
connectivity, straight-line barrier and heavy-tail exponents (``docs/LANDSCAPE.md``)."""

from generators.landscape.names import PAIR_NAMES, PER_MODEL_NAMES
from generators.landscape.runner import compute_landscape
from generators.landscape.settings import METRIC_FAMILIES, QUICK, LandscapeSettings, load_settings

__all__ = ["compute_landscape", "LandscapeSettings", "load_settings", "METRIC_FAMILIES", "QUICK", "PER_MODEL_NAMES",
           "PAIR_NAMES"]
