"""The shipped phase-zoo spec is as wide as docs/PHASES.md says (its phase map is measured there; the
full zoo takes ~20 minutes, too long for the test suite)."""

import math

from generators.spec import load_spec


def test_phase_mnist1d_spans_very_narrow_to_wide_and_very_small_to_very_large():
    spec = load_spec("phase_mnist1d")
    assert spec.task["source"] == "mnist1d" and spec.load.param == "width" and spec.temperature.param == "batch_size"
    widths, batches = spec.load.values, spec.temperature.values
    assert min(widths) <= 2 and max(widths) >= 512 and math.log2(max(widths) / min(widths)) >= 8
    assert min(batches) <= 8 and max(batches) >= 1024
    assert len(spec.seeds) >= 3  # three seed pairs per cell for mc and CKA
    assert spec.analysis.landscape.enabled and spec.analysis.landscape.mc.epochs == spec.epochs
    assert spec.analysis.phases is not None and spec.analysis.phases.mc_metric == "mc_error"
