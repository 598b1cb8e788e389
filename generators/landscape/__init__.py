"""Loss-landscape metrics of whole populations: Hessian top eigenvalue and trace, CKA, mode
connectivity, straight-line barrier and heavy-tail exponents (``docs/LANDSCAPE.md``)."""

from generators.landscape.names import (
    MetricFamily,
    default_metric_families,
    get_metric_family,
    metric_family_names,
    register_metric_family,
)
from generators.landscape.runner import compute_landscape
from generators.landscape.settings import QUICK, LandscapeSettings, load_settings

__all__ = ["compute_landscape", "LandscapeSettings", "load_settings", "QUICK", "MetricFamily",
           "register_metric_family", "get_metric_family", "metric_family_names", "default_metric_families"]
