"""Landscape settings: defaults, parsing with errors that name the field, records."""

import json

import pytest

from generators.landscape.names import default_metric_families
from generators.landscape.settings import QUICK, LandscapeSettings, load_settings
from zoo.errors import SpecError


def test_defaults_and_records_are_json():
    s = LandscapeSettings()
    assert s.enabled and s.metrics == default_metric_families() == ("hessian", "alpha", "cka", "mc") and s.checkpoint == -1
    assert s.hessian.iters == 100 and s.hessian.tol == 1e-3
    json.dumps(s.to_record())
    for family in ("hessian", "alpha", "cka", "mc", "barrier"):
        rec = s.record(family)
        json.dumps(rec)
        assert ("pairs" in rec) == (family in ("cka", "mc", "barrier"))
    assert s.record("hessian")["n_train"] == 512 and s.record("mc")["epochs"] == 10
    assert s.record("barrier")["n_points"] == s.mc.n_points


def test_parsing_a_mapping():
    s = LandscapeSettings.from_mapping({"metrics": ["hessian", "mode_connectivity", "barrier"], "checkpoint": 0,
                                        "hessian": {"iters": 7, "sample_rule": "first"},
                                        "alpha": {"farms": True, "farms_q": 2}, "pairs": {"max_per_cell": 1}})
    assert s.metrics == ("hessian", "mc", "barrier") and s.checkpoint == 0
    assert s.hessian.iters == 7 and s.hessian.sample_rule == "first" and s.hessian.n_train == 512
    assert s.alpha.farms and s.alpha.farms_q == 2.0 and s.pairs.max_per_cell == 1
    assert LandscapeSettings.from_mapping(False).enabled is False
    assert LandscapeSettings.from_mapping(None) == LandscapeSettings()
    assert LandscapeSettings.from_mapping(QUICK).mc.epochs == 1
    assert LandscapeSettings().only("alpha, cka").metrics == ("alpha", "cka")


@pytest.mark.parametrize("mapping, message", [
    ({"hessian": {"iters": 0}}, "field 'landscape.hessian.iters': must be > 0, got 0"),
    ({"hessian": {"tol": -1}}, "field 'landscape.hessian.tol': must be >= 0"),
    ({"hessian": {"nope": 1}}, "field 'landscape.hessian.nope': unknown field"),
    ({"mc": {"lr": "fast"}}, "field 'landscape.mc.lr': expected a number"),
    ({"mc": {"momentum": 1.5}}, "field 'landscape.mc.momentum': must be <= 1"),
    ({"cka": {"split": "val"}}, "field 'landscape.cka.split': expected one of"),
    ({"alpha": {"farms": "yes"}}, "field 'landscape.alpha.farms': expected true or false"),
    ({"metrics": ["hessian", "curvature"]}, "field 'landscape.metrics[1]': unknown metric 'curvature'"),
    ({"checkpoint": 1.5}, "field 'landscape.checkpoint': expected an integer"),
    ({"threads": -1}, "field 'landscape.threads': must be >= 0"),
    ({"bogus": 1}, "field 'landscape.bogus': unknown field"),
    ([1, 2], "field 'landscape': expected a mapping"),
])
def test_errors_name_the_field(mapping, message):
    with pytest.raises(SpecError, match=message.replace("[", r"\[").replace("]", r"\]")):
        LandscapeSettings.from_mapping(mapping)


def test_load_settings_from_yaml(tmp_path):
    spec = tmp_path / "spec.yaml"
    spec.write_text("name: x\nlandscape:\n  metrics: [alpha]\n  alpha: {min_tail: 3}\n")
    assert load_settings(spec).alpha.min_tail == 3
    bare = tmp_path / "bare.yaml"
    bare.write_text("hessian: {n_test: 0}\n")
    assert load_settings(bare).hessian.n_test == 0
    bad = tmp_path / "bad.yaml"
    bad.write_text("hessian: {iters: -2}\n")
    with pytest.raises(SpecError, match=r"bad.yaml: field 'landscape.hessian.iters'"):
        load_settings(bad)
    with pytest.raises(SpecError, match="no such settings file"):
        load_settings(tmp_path / "missing.yaml")


def test_metric_families_are_a_registry_in_run_order():
    from generators.landscape import get_metric_family, metric_family_names
    from zoo.errors import UnknownNameError

    assert metric_family_names() == ["hessian", "alpha", "cka", "mc", "barrier"]
    assert get_metric_family("mc").on_pairs and not get_metric_family("alpha").on_pairs
    with pytest.raises(UnknownNameError, match="unknown landscape metric family 'curvature'; choose from"):
        get_metric_family("curvature")
