"""Names under which the landscape metrics are stored, and their descriptions (``docs/FORMAT.md``)."""

from __future__ import annotations

#: Per-model arrays (``landscape/<name>``) written by each family.
PER_MODEL_NAMES: dict[str, tuple[str, ...]] = {
    "hessian": ("hessian_top_eig_train", "hessian_trace_train", "hessian_top_eig_test", "hessian_trace_test",
                "hessian_trace_train_se", "hessian_trace_test_se"),
    "alpha": ("alpha", "alpha_layers", "alpha_reason"),
    "cka": ("cka",),
    "mc": ("mc_loss", "mc_error"),
    "barrier": ("barrier_loss", "barrier_error"),
}
#: Pair tables (``pairs/<name>``) written by each pair family.
PAIR_NAMES: dict[str, tuple[str, ...]] = {
    "cka": ("cka",),
    "mc": ("mc_loss", "mc_error", "mc_loss_curve", "mc_error_curve"),
    "barrier": ("barrier_loss", "barrier_error", "barrier_loss_curve", "barrier_error_curve"),
}
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
