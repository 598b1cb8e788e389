"""Phase rule (signatures, weights, thresholds), labelling a store, and the phases/plot commands."""

import itertools
import json
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

import zoo
from generators.phases import PHASES, SIGNATURES, PhaseRule, assign, indicators, label_phases, load_rule, otsu_threshold
from generators.plots import plot_phase_diagrams
from zoo.errors import SpecError, ZooError

WEIGHTS = PhaseRule().weights


def _frame(rows):
    return pd.DataFrame([{f"ind_{k}": v for k, v in zip(("train_loss", "hessian", "mc", "cka"), r)} for r in rows])


def test_each_signature_gets_its_phase_with_full_agreement():
    rows = [(s["train_loss"], s["hessian"], s["mc"], s.get("cka", "low")) for s in SIGNATURES.values()]
    labels, agreement = assign(_frame(rows), WEIGHTS)
    assert labels == list(PHASES)
    assert agreement == [1.0] * 5


def test_train_loss_decides_the_group_and_mc_the_barrier():
    combos = list(itertools.product(("high", "low"), ("large", "small"), ("neg", "zero", "pos"), ("low", "high")))
    labels, _ = assign(_frame(combos), WEIGHTS)
    for (loss, _hess, mc, cka), label in zip(combos, labels):
        if loss == "high":
            assert label == ("I" if mc == "neg" else "II")  # no barrier at high loss: II
        elif mc == "neg":
            assert label == "III"
        else:
            assert label == ("IV-B" if cka == "high" else "IV-A")


def test_missing_indicators_leave_cells_unlabelled():
    labels, agreement = assign(_frame([("low", "small", "zero", None), (None, "small", "zero", "high"),
                                       ("low", None, None, "high"), ("high", None, "neg", None)]), WEIGHTS)
    assert labels == [None, None, None, "I"]
    assert np.isnan(agreement[0]) and agreement[3] == 1.0


def test_inconsistent_hessian_lowers_agreement_not_the_label():
    labels, agreement = assign(_frame([("low", "large", "zero", "high")]), WEIGHTS)
    assert labels == ["IV-B"] and agreement[0] == pytest.approx(6.5 / 7.5)


def test_mc_tolerance_is_absolute_plus_relative_to_train_loss():
    cells = pd.DataFrame({"train_loss": [1.0, 1.0, 0.1], "hessian": [1.0] * 3, "mc": [-0.11, -0.13, -0.05],
                          "cka": [0.5] * 3})
    thr = {"train_loss_high": 0.5, "hessian_large": 2.0, "mc_tolerance_abs": 0.02, "mc_tolerance_rel": 0.1,
           "cka_high": 0.9}
    ind = indicators(cells, thr)
    assert list(ind["ind_mc"]) == ["zero", "neg", "neg"]
    assert list(ind["ind_train_loss"]) == ["high", "high", "low"] and set(ind["ind_hessian"]) == {"small"}


def test_otsu_threshold_separates_two_groups():
    assert 2.0 < otsu_threshold(np.array([1.0, 1.1, 0.9, 5.0, 5.2, np.nan])) < 5.0
    assert otsu_threshold(np.array([3.0, 3.0])) == 3.0
    assert np.isnan(otsu_threshold(np.array([np.nan])))


def test_rule_files_and_errors(tmp_path):
    f = tmp_path / "rule.yaml"
    f.write_text("cka_high: 0.8\nweights: {hessian: 3}\ntrain_loss_high: 0.4\n")
    rule = load_rule(f)
    assert rule.cka_high == 0.8 and rule.weights["hessian"] == 3.0 and rule.weights["train_loss"] == 4.0
    f.write_text("cka_hi: 0.8\n")
    with pytest.raises(SpecError, match=r"rule.yaml: field 'cka_hi': unknown"):
        load_rule(f)
    with pytest.raises(SpecError, match="field 'mc_tolerance_abs': must be >= 0"):
        load_rule({"mc_tolerance_abs": -1})
    with pytest.raises(SpecError, match="field 'weights'"):
        load_rule({"weights": {"loss": 1}})
    with pytest.raises(SpecError, match="does not exist"):
        load_rule(tmp_path / "none.yaml")


@pytest.fixture()
def labelled_copy(tiny_zoo_path, tmp_path):
    """The tiny 2x2-grid zoo with landscape metrics written so each cell has a known phase."""
    path = tmp_path / "z.zarr"
    shutil.copytree(tiny_zoo_path, path)
    z = zoo.open(path, mode="r+")
    m = z.models
    # wanted phase per cell: 0 -> I, 1 -> II, 2 -> III, 3 -> IV-B
    hess = {0: 50.0, 1: 40.0, 2: 2.0, 3: 1.0}
    mc = {0: -1.0, 1: 0.5, 2: -1.0, 3: 0.0}
    cka = {0: 0.3, 1: 0.3, 2: 0.3, 3: 0.95}
    for name, values in (("hessian_trace_train", hess), ("mc_error", mc), ("cka", cka)):
        z.declare_landscape(name, {"synthetic": True})
        z.write_landscape(name, m["model_id"].tolist(), np.array([values[c] for c in m["grid_cell"]]))
    cell_loss = m.groupby("grid_cell")["train_loss"].mean()
    threshold = float((cell_loss[1] + cell_loss[2]) / 2)
    high_cells = set(cell_loss.index[cell_loss > threshold])
    return z, threshold, high_cells


def test_label_phases_stores_labels_rule_and_counts(labelled_copy):
    z, threshold, high_cells = labelled_copy
    table = label_phases(z, {"train_loss_high": threshold, "hessian_large": 10.0})
    expected = {0: "I", 1: "II", 2: "III", 3: "IV-B"}
    for _, row in table.iterrows():
        cell = int(row["grid_cell"])
        if (cell in high_cells) == (cell in (0, 1)):
            assert row["phase"] == expected[cell]
    again = zoo.open(z.path)
    assert list(again.models["phase"]) == [table.set_index("grid_cell").loc[c, "phase"] for c in again.models["grid_cell"]]
    rule = again.meta["phases"]
    assert rule["resolved"]["train_loss_high"] == threshold and rule["version"] == 1 and len(rule["cells"]) == 4
    assert sum(again.info()["phase_counts"].values()) == 8


def test_automatic_thresholds_are_resolved_and_recorded(labelled_copy):
    z, _, _ = labelled_copy
    label_phases(z)
    resolved = zoo.open(z.path).meta["phases"]["resolved"]
    assert 2.0 < resolved["hessian_large"] < 40.0  # Otsu between the two Hessian groups
    assert resolved["train_loss_high"] == pytest.approx(0.1 * np.log(10))


def test_phases_need_a_grid_and_mc(tiny_zoo_path, tmp_path):
    path = tmp_path / "z.zarr"
    shutil.copytree(tiny_zoo_path, path)
    z = zoo.open(path, mode="r+")
    table = label_phases(z)  # no landscape metrics: nothing can be labelled, but nothing breaks
    assert table["phase"].isna().all() and z.meta["phase_counts"]["unlabelled"] == 8


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "weightzoo.cli", *args], capture_output=True, text=True)


@pytest.mark.slow
def test_phases_and_plot_commands(labelled_copy, tmp_path):
    z, threshold, _ = labelled_copy
    rule = tmp_path / "rule.json"
    rule.write_text(json.dumps({"train_loss_high": threshold, "hessian_large": 10.0}))
    r = _cli("phases", str(z.path), "--rule", str(rule))
    assert r.returncode == 0, r.stderr
    assert "phases (rule yang2021 v1)" in r.stdout and "phase_counts" in r.stdout
    info = json.loads(_cli("info", str(z.path), "--json").stdout)
    assert sum(info["phase_counts"].values()) == 8
    r = _cli("plot", str(z.path), "--out", str(tmp_path / "plots"))
    assert r.returncode == 0, r.stderr
    names = {p.name for p in (tmp_path / "plots").iterdir()}
    assert {"test_acc.png", "train_loss.png", "hessian_trace.png", "mode_connectivity_error.png", "cka.png",
            "phases.png", "phase_diagram.png"} <= names
    assert "skipped alpha" in r.stdout and "skipped mc_loss" in r.stdout
    r = _cli("phases", str(z.path), "--rule", str(tmp_path / "missing.yaml"))
    assert r.returncode == 2 and "does not exist" in r.stderr


def test_plot_without_landscape_metrics_says_what_is_missing(tiny_zoo, tmp_path):
    written, skipped = plot_phase_diagrams(tiny_zoo, tmp_path)
    assert {p.name for p in written} == {"test_acc.png", "train_loss.png", "phase_diagram.png"}
    assert "weightzoo metrics" in skipped["hessian_trace_train"] and "weightzoo phases" in skipped["phase"]
    assert not list(tmp_path.glob(".*partial*"))


def test_phases_refuse_zoos_without_a_grid(tiny_zoo, monkeypatch):
    import generators.phases as ph

    monkeypatch.setattr(type(tiny_zoo), "models", property(lambda self: pd.DataFrame({"model_id": [0], "status": ["ok"], "train_loss": [1.0]})))
    with pytest.raises(ZooError, match="need a phase grid"):
        ph.cell_metrics(tiny_zoo, PhaseRule())
