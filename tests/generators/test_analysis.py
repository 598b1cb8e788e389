"""Landscape metrics and phase labels as part of ``weightzoo generate`` (spec fields ``landscape`` and
``phases``), their validation, and why they never block resuming a zoo."""

import json
import subprocess
import sys

import numpy as np
import pytest
import yaml
from helpers.specs import TINY_SPEC

from generators.driver import generate
from generators.landscape import QUICK
from generators.spec import load_spec, resolve_spec_path
from zoo.errors import SpecError

ANALYSED = dict(TINY_SPEC, landscape=QUICK)


def test_analysis_fields_are_stored_but_not_hashed():
    plain = load_spec(dict(TINY_SPEC, landscape=None))
    quick = load_spec(ANALYSED)
    off = load_spec(dict(TINY_SPEC, landscape=False, phases=False))
    assert plain.spec_hash == quick.spec_hash == off.spec_hash
    assert quick.raw["landscape"]["hessian"]["n_train"] == 64 and off.raw["landscape"]["enabled"] is False
    assert off.raw["phases"] is False and quick.raw["phases"]["cka_high"] == 0.9
    # the canonical record parses back to the same spec
    again = load_spec(quick.raw)
    assert again.raw == quick.raw and again.analysis.landscape == quick.analysis.landscape


def test_analysis_fields_are_validated_with_their_field_names():
    with pytest.raises(SpecError, match=r"field 'landscape.hessian.iters': must be > 0"):
        load_spec(dict(TINY_SPEC, landscape={"hessian": {"iters": 0}}))
    with pytest.raises(SpecError, match=r"field 'phases.cka_high': must be >= 0"):
        load_spec(dict(TINY_SPEC, phases={"cka_high": -1}))
    with pytest.raises(SpecError, match=r"field 'phases': expected true/false or a mapping"):
        load_spec(dict(TINY_SPEC, phases="yes"))


@pytest.mark.slow
def test_generate_computes_landscape_metrics_and_labels_phases(tmp_path):
    z = generate(ANALYSED, tmp_path / "z.zarr", progress=False)
    assert {"hessian_trace_train", "hessian_top_eig_test", "cka", "mc_loss", "mc_error", "alpha"} <= set(z.landscape_names)
    models = z.models
    assert np.isfinite(models["hessian_trace_train"]).all() and np.isfinite(models["cka"]).all()
    info = json.loads(subprocess.run([sys.executable, "-m", "weightzoo.cli", "info", str(z.path), "--json"],
                                     capture_output=True, text=True, check=True).stdout)
    assert sum(info["phase_counts"].values()) == 8 and info["phase_rule"] == {"name": "yang2021", "version": 1}
    assert set(z.meta["spec"]) >= {"landscape", "phases"}

    # rerunning with other analysis settings resumes the same zoo: nothing retrains, the phases are relabelled
    before = [z.weights([i]) for i in range(8)]
    z2 = generate(dict(ANALYSED, phases={"train_loss_high": 0.0}), tmp_path / "z.zarr", progress=False)
    assert all((z2.weights([i]) == w).all() for i, w in enumerate(before))
    assert set(z2.meta["phase_counts"]) >= {"I", "II"} and z2.meta["phases"]["resolved"]["train_loss_high"] == 0.0
    assert z2.meta["phase_counts"]["III"] == z2.meta["phase_counts"]["IV-A"] == z2.meta["phase_counts"]["IV-B"] == 0
    assert z2.meta["spec"]["phases"]["train_loss_high"] == 0.0


def test_landscape_off_leaves_no_metrics(tiny_zoo):
    assert tiny_zoo.landscape_names == [] and "phases" not in tiny_zoo.meta


@pytest.mark.slow
def test_tree_zoos_get_per_model_metrics_but_no_pairs_or_phases(tmp_path):
    spec = yaml.safe_load(resolve_spec_path("tree_quick").read_text())
    spec["landscape"] = dict(QUICK, metrics=["hessian", "alpha", "cka", "mc"])
    z = generate(spec, tmp_path / "t.zarr", progress=False)
    assert "hessian_trace_train" in z.landscape_names and "mc_loss" not in z.landscape_names
    assert np.isfinite(z.landscape("hessian_trace_train")[z.status_codes() == 1]).all()
    assert "phases" not in z.meta
