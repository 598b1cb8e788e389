"""The landscape metric families (a registry: ``register_metric_family`` / ``get_metric_family`` /
``metric_family_names``), the names under which they are stored, and their descriptions (``docs/FORMAT.md``)."""

from __future__ import annotations

from dataclasses import dataclass

from kernels.registry import Registry
from zoo.errors import UnknownNameError


@dataclass(frozen=True)
class MetricFamily:
    """One landscape metric family: what it stores and when it runs.

    ``model_names``: the per-model arrays (``landscape/<name>``) it writes; ``pair_names``: the pair tables
    (``pairs/<name>``) it writes, empty for a per-model family (a pair family's per-model values are the
    means over the model's pairs); ``order``: families run in increasing order; ``default``: whether it runs
    when a spec does not list ``landscape.metrics``. The computation is the landscape runner's
    (:mod:`generators.landscape.runner`)."""

    model_names: tuple[str, ...]
    pair_names: tuple[str, ...] = ()
    order: int = 0
    default: bool = True

    @property
    def on_pairs(self) -> bool:
        """Computed on pairs of seeds of one grid cell."""
        return bool(self.pair_names)


_FAMILIES: Registry[MetricFamily] = Registry("landscape metric family", error=UnknownNameError)
register_metric_family = _FAMILIES.register
get_metric_family = _FAMILIES.get


def metric_family_names() -> list[str]:
    """Registered metric families in the order they run (``hessian``, ``alpha``, ``cka``, ``mc``, ``barrier``)."""
    return sorted(_FAMILIES.names(), key=lambda n: _FAMILIES.get(n).order)


def default_metric_families() -> tuple[str, ...]:
    """The families that run when a spec does not choose (all but ``barrier``)."""
    return tuple(n for n in metric_family_names() if _FAMILIES.get(n).default)


register_metric_family("hessian")(MetricFamily(
    ("hessian_top_eig_train", "hessian_trace_train", "hessian_top_eig_test", "hessian_trace_test",
     "hessian_trace_train_se", "hessian_trace_test_se"), order=0))
register_metric_family("alpha")(MetricFamily(("alpha", "alpha_layers", "alpha_reason"), order=1))
register_metric_family("cka")(MetricFamily(("cka",), ("cka",), order=2))
register_metric_family("mc")(MetricFamily(("mc_loss", "mc_error"),
                                          ("mc_loss", "mc_error", "mc_loss_curve", "mc_error_curve"), order=3))
register_metric_family("barrier")(MetricFamily(
    ("barrier_loss", "barrier_error"), ("barrier_loss", "barrier_error", "barrier_loss_curve", "barrier_error_curve"),
    order=4, default=False))

DESCRIPTIONS = {
    "hessian_top_eig_train": "largest-magnitude Hessian eigenvalue of the mean train cross-entropy (power iteration)",
    "hessian_trace_train": "Hessian trace of the mean train cross-entropy (Hutchinson, Rademacher vectors)",
    "hessian_top_eig_test": "largest-magnitude Hessian eigenvalue of the mean test cross-entropy (power iteration)",
    "hessian_trace_test": "Hessian trace of the mean test cross-entropy (Hutchinson, Rademacher vectors)",
    "hessian_trace_train_se": "standard error of hessian_trace_train (std of v^T H v / sqrt(vectors))",
    "hessian_trace_test_se": "standard error of hessian_trace_test (std of v^T H v / sqrt(vectors))",
    "alpha": "mean over weight matrices of the power-law exponent of the ESD of W^T W (NaN if none has a fit)",
    "alpha_layers": "power-law exponent of the ESD of W^T W per weight matrix (layout order, NaN-padded)",
    "alpha_reason": "why alpha_layers is NaN, per weight matrix: an index into settings['nan_reasons'] (0 fitted, "
                    "1 non-finite weights, 2 too few eigenvalues, 3 no spread, 4 no tail); NaN-padded",
    "cka": "linear CKA of the logits of two seeds of a grid cell on a fixed held-out batch (NaN where a model's "
           "logits are constant over the batch, to float rounding: no similarity to measure)",
    "mc_loss": "mode connectivity of the train loss along a trained quadratic Bezier curve",
    "mc_error": "mode connectivity of the train error along a trained quadratic Bezier curve",
    "mc_loss_curve": "loss at the curve's evaluation points t = linspace(0, 1, n_points)",
    "mc_error_curve": "error at the curve's evaluation points t = linspace(0, 1, n_points)",
    "barrier_loss": "straight-line loss barrier: max_t L(t) - ((1 - t) L(0) + t L(1))",
    "barrier_error": "straight-line error barrier: max_t E(t) - ((1 - t) E(0) + t E(1))",
    "barrier_loss_curve": "loss along the straight line at t = linspace(0, 1, n_points)",
    "barrier_error_curve": "error along the straight line at t = linspace(0, 1, n_points)",
}
