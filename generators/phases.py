"""Phase labels: an explicit, versioned rule from loss-landscape metrics to the phases of Yang et al. 2021.

The taxonomy (Yang et al. 2021, "Taxonomizing local versus global structure in neural network loss
landscapes"; as tabulated by the Phase-Transition Model Zoo, Schürholt et al. 2025):

=========  ==========  =========  ===============  ========
phase      train loss  Hessian    mode conn. (mc)  CKA
=========  ==========  =========  ===============  ========
I          high        large      < 0 (barrier)    --
II         high        large      > 0              --
III        low         small      < 0 (barrier)    --
IV-A       low         small      ~ 0              low
IV-B       low         small      ~ 0              high
=========  ==========  =========  ===============  ========

Every grid cell (the mean over its complete seeds) gets discrete *indicators*: train loss high/low,
Hessian large/small, mc neg/zero/pos, CKA low/high. Each phase is a *signature* over those indicators
(the table). A cell's label is the phase whose signature it matches best, each indicator weighted
(train loss 4, mc 2, Hessian 1, CKA 0.5 by default; the train-loss weight exceeds all others together,
so it always decides between the well-trained and the poorly-trained phases). mc ``zero`` and ``pos``
both mean "no barrier" and earn half credit against each other. A tie between the best phases, or a
missing train loss or mc, leaves the cell unlabelled. The matched fraction of the weight of the
indicators available is stored as each cell's ``agreement``: below 1 the cell does not fit the taxonomy exactly (e.g. a
well-trained cell with a large Hessian).

Thresholds, weights and signatures are stored in the zoo (``attrs["phases"]``); ``weightzoo phases
STORE --rule FILE`` relabels with other ones. Relies on numpy and pandas.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Literal, Mapping, Optional

import numpy as np
import pandas as pd
from pydantic import AfterValidator, Field
from typing_extensions import Annotated

from zoo.errors import SpecError, ZooError
from zoo.format import STATUS_CODES
from zoo.store import Zoo
from zoo.validation import Int, Number, SpecModel, Str, read_yaml, register_schema, validate

RULE_NAME = "yang2021"
RULE_VERSION = 1
PHASES = ("I", "II", "III", "IV-A", "IV-B")
SIGNATURES: dict[str, dict[str, str]] = {
    "I": {"train_loss": "high", "hessian": "large", "mc": "neg"},
    "II": {"train_loss": "high", "hessian": "large", "mc": "pos"},
    "III": {"train_loss": "low", "hessian": "small", "mc": "neg"},
    "IV-A": {"train_loss": "low", "hessian": "small", "mc": "zero", "cka": "low"},
    "IV-B": {"train_loss": "low", "hessian": "small", "mc": "zero", "cka": "high"},
}
INDICATORS = ("train_loss", "hessian", "mc", "cka")
DEFAULT_WEIGHTS = {"train_loss": 4.0, "mc": 2.0, "hessian": 1.0, "cka": 0.5}


class PhaseRule(SpecModel):
    """Thresholds and weights of the phase rule (every field is stored with the labels).

    ``train_loss_high``: a cell's mean final train loss above it is "high"; ``None`` means
    ``train_loss_fraction_of_chance * ln(n_classes)`` (chance-level cross-entropy), resolved per zoo.
    ``hessian_large``: a cell's mean ``hessian_metric`` above it is "large"; ``None`` means an Otsu
    split of the cells' log10 values (the threshold that best separates two groups), resolved per zoo.
    ``mc_metric``: mode connectivity of the error (default; a fraction of samples, bounded and blind to
    the logit scale of confident networks) or of the loss (``mc_loss``, where the barrier between two
    memorising networks grows with their logit scale; use a relative tolerance with it).
    ``mc``: |mc| <= ``mc_tolerance_abs + mc_tolerance_rel * train loss`` is "zero". ``cka_high``: a
    cell's mean CKA at or above it is "high".
    """

    train_loss_high: Optional[Number] = Field(default=None, ge=0, description="null: a fraction of chance-level "
                                              "cross-entropy")
    train_loss_fraction_of_chance: Number = Field(default=0.1, ge=0)
    hessian_metric: Str = "hessian_trace_train"
    hessian_large: Optional[Number] = Field(default=None, ge=0, description="null: an Otsu split of the cells' "
                                            "log10 values")
    mc_metric: Str = "mc_error"
    mc_tolerance_abs: Number = Field(default=0.03, ge=0)
    mc_tolerance_rel: Number = Field(default=0.0, ge=0)
    cka_metric: Str = "cka"
    cka_high: Number = Field(default=0.9, ge=0)
    weights: Annotated[dict[Literal["train_loss", "hessian", "mc", "cka"], Annotated[Number, Field(ge=0)]],
                       AfterValidator(lambda w: {**DEFAULT_WEIGHTS, **w})] = Field(
        default_factory=lambda: dict(DEFAULT_WEIGHTS), description="weight of each indicator when matching")
    name: Literal["yang2021"] = RULE_NAME
    version: Int = Field(default=RULE_VERSION, ge=1, le=RULE_VERSION)
    labels: Optional[list[str]] = Field(default=None, exclude=True, description="ignored (stored with the labels)")
    signatures: Optional[dict[str, dict[str, str]]] = Field(default=None, exclude=True,
                                                            description="ignored (stored with the labels)")

    def to_record(self) -> dict[str, Any]:
        return {**self.model_dump(), "labels": list(PHASES), "signatures": SIGNATURES}


register_schema("phase_rule")(PhaseRule)


def load_rule(rule: str | Path | Mapping[str, Any] | PhaseRule | None = None) -> PhaseRule:
    """A :class:`PhaseRule` from a YAML/JSON file, a mapping of the fields to change, or None (defaults).
    Errors (:class:`SpecError`) name the file and the field."""
    if rule is None or isinstance(rule, PhaseRule):
        return rule or PhaseRule()
    source = None
    if not isinstance(rule, Mapping):
        source = str(rule)
        if not Path(rule).exists():
            raise SpecError(f"phase rule file {source} does not exist")
        rule = read_yaml(rule) or {}
    return validate(PhaseRule, rule, source=source)


# ---------------------------------------------------------------------------- indicators
def otsu_threshold(values: np.ndarray) -> float:
    """The threshold between two sorted groups of ``values`` that maximises the between-group variance
    (Otsu's method on the values themselves); the midpoint of the two groups' nearest members."""
    v = np.sort(np.asarray(values, dtype=float)[np.isfinite(values)])
    if v.size == 0:
        return float("nan")
    if v.size == 1 or v[0] == v[-1]:
        return float(v[-1])
    best, best_gain = float(v[-1]), -1.0
    for i in range(1, v.size):
        a, b = v[:i], v[i:]
        gain = a.size * b.size * (a.mean() - b.mean()) ** 2
        if gain > best_gain and v[i - 1] < v[i]:
            best, best_gain = (v[i - 1] + v[i]) / 2, gain
    return float(best)


def cell_metrics(z: Zoo, rule: PhaseRule) -> pd.DataFrame:
    """Per grid cell: the mean over complete (``ok``) seeds of train loss, the Hessian metric, mc and
    CKA at the final checkpoint; one row per cell with its grid indices and model ids."""
    models = z.models
    if "grid_cell" not in models.columns:
        raise ZooError(f"{z.path}: phase labels need a phase grid (models table column 'grid_cell'); "
                       f"this is a {z.meta.get('kind', 'zoo')!r} zoo")
    ok = models["status"] == "ok"
    for name in (rule.hessian_metric, rule.mc_metric, rule.cka_metric):
        if name not in models.columns:
            models[name] = np.nan
    rows = []
    for cell, g in models.groupby("grid_cell", sort=True):
        good = g[ok.loc[g.index]]
        mean = lambda col: float(np.nanmean(good[col].to_numpy(float))) if np.isfinite(good[col].to_numpy(float)).any() else float("nan")  # noqa: E731
        rows.append({
            "grid_cell": int(cell), "grid_load_index": int(g["grid_load_index"].iloc[0]),
            "grid_temperature_index": int(g["grid_temperature_index"].iloc[0]),
            "grid_load": g["grid_load"].iloc[0], "grid_temperature": g["grid_temperature"].iloc[0],
            "model_ids": g["model_id"].tolist(), "n_ok": int(len(good)),
            "train_loss": mean("train_loss"), "hessian": mean(rule.hessian_metric), "mc": mean(rule.mc_metric),
            "cka": mean(rule.cka_metric),
        })
    return pd.DataFrame(rows)


def resolve_thresholds(cells: pd.DataFrame, rule: PhaseRule, n_classes: int) -> dict[str, float]:
    """The numbers the rule uses on this zoo (automatic thresholds resolved)."""
    loss_high = rule.train_loss_high
    if loss_high is None:
        loss_high = rule.train_loss_fraction_of_chance * math.log(max(int(n_classes), 2))
    hess = cells["hessian"].to_numpy(float)
    positive = hess[np.isfinite(hess) & (hess > 0)]
    hess_large = rule.hessian_large
    if hess_large is None:
        hess_large = float(10 ** otsu_threshold(np.log10(positive))) if positive.size else float("nan")
    return {"train_loss_high": float(loss_high), "hessian_large": float(hess_large),
            "mc_tolerance_abs": rule.mc_tolerance_abs, "mc_tolerance_rel": rule.mc_tolerance_rel,
            "cka_high": rule.cka_high}


def indicators(cells: pd.DataFrame, thresholds: Mapping[str, float]) -> pd.DataFrame:
    """Discrete indicators per cell (None where the metric is missing)."""
    out = cells.copy()

    def level(values, fn):
        return [None if not np.isfinite(v) else fn(v) for v in values]

    out["ind_train_loss"] = level(cells["train_loss"], lambda v: "high" if v > thresholds["train_loss_high"] else "low")
    out["ind_hessian"] = level(cells["hessian"], lambda v: "large" if v > thresholds["hessian_large"] else "small")
    tol = thresholds["mc_tolerance_abs"] + thresholds["mc_tolerance_rel"] * np.nan_to_num(cells["train_loss"].to_numpy(float))
    out["ind_mc"] = [None if not np.isfinite(v) else ("neg" if v < -t else "pos" if v > t else "zero")
                     for v, t in zip(cells["mc"], tol)]
    out["ind_cka"] = level(cells["cka"], lambda v: "high" if v >= thresholds["cka_high"] else "low")
    return out


def _credit(indicator: str, observed: str, expected: str) -> float:
    if observed == expected:
        return 1.0
    if indicator == "mc" and {observed, expected} <= {"zero", "pos"}:  # both: no barrier
        return 0.5
    return 0.0


def assign(ind: pd.DataFrame, weights: Mapping[str, float]) -> tuple[list[str | None], list[float]]:
    """Label and agreement (matched fraction of the signature's weight) of every cell."""
    labels, agreement = [], []
    for _, raw in ind.iterrows():
        # pandas stores a missing level as None or NaN depending on the column's dtype
        row = {k: (raw[f"ind_{k}"] if isinstance(raw[f"ind_{k}"], str) else None) for k in INDICATORS}
        if row["train_loss"] is None or row["mc"] is None:
            labels.append(None)
            agreement.append(float("nan"))
            continue
        scores = {}
        for phase, sig in SIGNATURES.items():
            scores[phase] = sum(weights.get(k, 0.0) * _credit(k, row[k], v)
                                for k, v in sig.items() if row[k] is not None)
        best = max(scores.values())
        winners = [p for p, s in scores.items() if s == best]
        if len(winners) != 1:
            labels.append(None)
            agreement.append(float("nan"))
            continue
        phase = winners[0]
        total = sum(weights.get(k, 0.0) for k in SIGNATURES[phase] if row[k] is not None)
        labels.append(phase)
        agreement.append(best / total if total else float("nan"))
    return labels, agreement


def label_phases(z: Zoo, rule: str | Path | Mapping[str, Any] | PhaseRule | None = None) -> pd.DataFrame:
    """Label every model of a phase-grid zoo (opened ``mode="r+"``) with its cell's phase and store the
    labels, the rule and the resolved thresholds. Returns the per-cell table (metrics, indicators,
    ``phase``, ``agreement``)."""
    rule = load_rule(rule)
    cells = cell_metrics(z, rule)
    n_classes = max(int(a["n_classes"]) for a in z.architectures.values())
    thresholds = resolve_thresholds(cells, rule, n_classes)
    table = indicators(cells, thresholds)
    table["phase"], table["agreement"] = assign(table, rule.weights)
    labels: list[str | None] = [None] * z.n_models
    status = z.status_codes()
    for _, row in table.iterrows():
        for mid in row["model_ids"]:
            if status[mid] == STATUS_CODES["ok"] and isinstance(row["phase"], str):
                labels[mid] = row["phase"]
    record = rule.to_record()
    record["resolved"] = thresholds
    record["cells"] = [{"grid_cell": int(r["grid_cell"]),
                        "phase": r["phase"] if isinstance(r["phase"], str) else None,
                        "agreement": None if not np.isfinite(r["agreement"]) else round(float(r["agreement"]), 4),
                        "indicators": {k: (r[f"ind_{k}"] if isinstance(r[f"ind_{k}"], str) else None)
                                       for k in INDICATORS}}
                       for _, r in table.iterrows()]
    z.write_phases(labels, record)
    return table
