"""Every setting of the landscape metrics, with defaults, parsed from a spec-style mapping.

A spec (or ``weightzoo metrics --settings FILE.yaml``) holds them under ``landscape:``::

    landscape:
      enabled: true
      metrics: [hessian, cka, mc, alpha]     # add 'barrier' for the straight-line barrier
      checkpoint: -1                          # index into the stored checkpoints
      hessian: {n_train: 512, n_test: 512, iters: 100, tol: 0.001}
      mc: {epochs: 10, lr: 0.05}
      alpha: {farms: true}

Every error names the field: ``field 'landscape.hessian.iters': must be > 0, got 0``.
:meth:`LandscapeSettings.record` gives the settings of one metric family as stored in the zoo, so
anyone can recompute the values.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Literal, Mapping, Union

from pydantic import BeforeValidator, ConfigDict, Field
from typing_extensions import Annotated

from generators.landscape.names import default_metric_families, get_metric_family, metric_family_names
from zoo.errors import SpecError
from zoo.validation import Bool, FieldError, Int, Number, SpecModel, read_yaml, register_schema, spec_error, validate

_ALIASES = {"mode_connectivity": "mc", "heavy_tail": "alpha", "spectra": "alpha", "hessians": "hessian"}

SampleRule = Literal["random", "first"]


class _Section(SpecModel):
    model_config = ConfigDict(frozen=True)


class HessianSettings(_Section):
    """Top Hessian eigenvalue (power iteration) and trace (Hutchinson) of the mean cross-entropy on a
    fixed set of training and of test samples (PyHessian's defaults for iterations and tolerance)."""

    n_train: Int = Field(default=512, ge=0, description="training samples (0 = all)")
    n_test: Int = Field(default=512, ge=0, description="test samples (0 = all)")
    sample_rule: SampleRule = Field(default="random", description="which samples: a seeded random subset or the "
                                    "first n")
    sample_seed: Int = Field(default=0, description="seed of the random sample subset")
    batch_size: Int = Field(default=1024, gt=0, description="samples per Hessian-vector product chunk (memory, not "
                            "the result)")
    iters: Int = Field(default=100, gt=0, description="most power iterations")
    tol: Number = Field(default=1e-3, ge=0, description="stop when the eigenvalue's relative change is below this")
    trace_vectors: Int = Field(default=100, gt=0, description="most Rademacher vectors for the trace")
    trace_tol: Number = Field(default=0.03, ge=0, description="stop when the trace's standard error is at most "
                              "this fraction of its magnitude")
    trace_min_vectors: Int = Field(default=10, ge=2, description="fewest Rademacher vectors before trace_tol may stop "
                                   "the trace")
    seed: Int = Field(default=0, description="seed of the start vector and Rademacher vectors (combined with the "
                      "model id)")


class SpectraSettings(_Section):
    """Heavy-tail exponent of each weight matrix's empirical spectral density."""

    min_eigs: Int = Field(default=5, ge=2, description="layers with fewer non-zero eigenvalues get NaN")
    min_tail: Int = Field(default=5, ge=2, description="fewest eigenvalues at or above xmin a fit may use")
    zero_tol: Number = Field(default=1e-5, ge=0, description="eigenvalues <= zero_tol * largest are dropped")
    farms: Bool = Field(default=False, description="FARMS: pool the ESDs of fixed-aspect-ratio submatrices")
    farms_q: Number = Field(default=1.0, gt=0, description="FARMS submatrix aspect ratio, columns / rows")
    farms_rows: Int = Field(default=0, ge=0, description="FARMS submatrix rows (0 = as many as fit)")
    farms_windows: Int = Field(default=10, gt=0, description="FARMS window positions per matrix dimension")


class CKASettings(_Section):
    """Linear CKA between the logits of two seeds on one fixed held-out batch."""

    split: Literal["test", "train"] = Field(default="test", description="split the batch comes from")
    n_samples: Int = Field(default=512, ge=0, description="samples in the batch (0 = the whole split)")
    sample_rule: SampleRule = Field(default="random", description="which samples")
    sample_seed: Int = Field(default=0, description="seed of the random subset")


class ConnectivitySettings(_Section):
    """Quadratic Bezier curve between two seeds with fixed endpoints; its bend is trained."""

    epochs: Int = Field(default=10, ge=0, description="epochs of bend training over the training split")
    lr: Number = Field(default=0.05, gt=0, description="SGD learning rate of the bend")
    momentum: Number = Field(default=0.9, ge=0, le=1, description="SGD momentum")
    weight_decay: Number = Field(default=0.0, ge=0, description="L2 penalty on the bend (coupled, as "
                                 "torch.optim.SGD)")
    batch_size: Int = Field(default=128, gt=0, description="mini-batch size of bend training")
    n_points: Int = Field(default=11, ge=3, description="evaluation points t, evenly spaced in [0, 1]")
    eval_split: Literal["train", "test"] = Field(default="train", description="split the curve is evaluated on")
    eval_samples: Int = Field(default=0, ge=0, description="samples of that split (0 = all)")
    sample_rule: SampleRule = Field(default="random", description="which evaluation samples")
    sample_seed: Int = Field(default=0, description="seed of the evaluation subset")
    seed: Int = Field(default=0, description="seed of the data order and of each pair's t per step")


class PairSettings(_Section):
    """Which seed pairs of a grid cell get pair metrics."""

    max_per_cell: Int = Field(default=0, ge=0, description="pairs per cell (0 = all pairs)")
    seed: Int = Field(default=0, description="seed choosing the pairs when capped")


_SECTIONS = ("hessian", "alpha", "cka", "mc", "pairs")


def parse_families(names: Iterable[str] | str) -> tuple[str, ...]:
    """Canonical family names (``mode_connectivity`` -> ``mc``) in run order; raises :class:`FieldError`
    (``[i]`` the bad entry) for an unknown name."""
    if isinstance(names, str):
        names = [n for n in names.replace(",", " ").split() if n]
    if not isinstance(names, (list, tuple)):
        raise FieldError(f"expected a list of metric names from {metric_family_names()}, got {names!r}")
    out = []
    for i, n in enumerate(names):
        key = _ALIASES.get(str(n), str(n))
        if key not in metric_family_names():
            raise FieldError(f"unknown metric {n!r}; choose from {metric_family_names()}", (i,), unknown_name=True)
        out.append(key)
    return tuple(f for f in metric_family_names() if f in out)


class LandscapeSettings(_Section):
    """All landscape settings. ``metrics`` selects the families that run (see :func:`~generators.landscape.names.metric_family_names`).

    ``max_population`` (models or pairs processed together), ``threads`` (torch intra-op threads
    while computing; 0 keeps torch's setting) and ``group_bytes`` (the working set of one group of
    Hessian-vector products, sized for a CPU cache; 0 = the whole population at once, the better choice
    on a GPU) change speed and memory, not the values. One thread is
    the default because the work is many small kernels that the population already batches: extra
    intra-op threads mostly add synchronisation, which on a loaded machine costs far more than it
    gains (docs/LANDSCAPE.md, "Cost")."""

    enabled: Bool = True
    metrics: Annotated[tuple[str, ...], BeforeValidator(parse_families)] = default_metric_families()
    checkpoint: Int = Field(default=-1, description="index into the stored checkpoints (negative from the end)")
    max_population: Int = Field(default=64, gt=0)
    threads: Int = Field(default=1, ge=0)
    group_bytes: Int = Field(default=512 * 1024, ge=0)
    hessian: HessianSettings = HessianSettings()
    alpha: SpectraSettings = SpectraSettings()
    cka: CKASettings = CKASettings()
    mc: ConnectivitySettings = ConnectivitySettings()
    pairs: PairSettings = PairSettings()

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, Any] | bool | None, prefix: str = "landscape") -> "LandscapeSettings":
        """Parse ``mapping`` (the value of a spec's ``landscape`` field); missing fields get defaults.

        ``true``/``false`` alone switch the defaults on or off. Raises :class:`SpecError` naming the field.
        """
        if mapping is None or mapping is True:
            return cls()
        if mapping is False:
            return cls(enabled=False)
        return validate(cls, mapping, prefix=prefix)

    def replace(self, **changes: Any) -> "LandscapeSettings":
        """These settings with ``changes`` (validated)."""
        return validate(type(self), {**self.model_dump(), **changes})

    def only(self, names: Iterable[str] | str) -> "LandscapeSettings":
        """These settings with just the families ``names`` selected."""
        try:
            return self.replace(metrics=parse_families(names))
        except FieldError as exc:
            raise spec_error(("--only", *exc.path), exc.message, unknown_name=exc.unknown_name) from None

    def to_record(self) -> dict[str, Any]:
        """Every setting as plain JSON types."""
        rec = self.model_dump(mode="json")
        rec["metrics"] = list(self.metrics)
        return rec

    def section(self, family: str) -> dict[str, Any]:
        return getattr(self, family).model_dump(mode="json")

    def record(self, family: str) -> dict[str, Any]:
        """The settings that determine the values of ``family`` (stored with them). The checkpoint is
        stored beside them by the store; ``max_population``, ``threads`` and ``group_bytes`` only change speed, so they are
        left out."""
        if family == "barrier":  # the straight line is evaluated with the curve's evaluation settings
            mc = self.section("mc")
            rec = {k: mc[k] for k in ("n_points", "eval_split", "eval_samples", "sample_rule", "sample_seed")}
            rec["path"] = "straight line"
        elif family == "mc":
            rec = {**self.section("mc"), "curve": "quadratic bezier, endpoints fixed, bend trained",
                   "bend_init": "midpoint", "optimizer": "sgd", "t_sampling": "uniform, one t per pair per step"}
        else:
            rec = self.section(family)
        if family == "hessian":
            rec.update(loss="mean cross-entropy", top_eigenvalue="power iteration (largest magnitude)",
                       trace="Hutchinson, Rademacher vectors; stops when its standard error <= trace_tol * |trace|")
        if get_metric_family(family).on_pairs:
            rec["pairs"] = {**self.section("pairs"), "rule": "seeds of one grid_cell"}
        return rec


register_schema("landscape")(LandscapeSettings)

#: The ``landscape`` field of a spec: ``true``/``false`` (defaults on/off) or a mapping of settings.
LandscapeField = Union[Bool, LandscapeSettings]


def load_settings(source: str | Path | Mapping[str, Any] | LandscapeSettings | None) -> LandscapeSettings:
    """Settings from ``None`` (defaults), a mapping, or a YAML file; a mapping or file may hold the
    settings themselves or a spec with a ``landscape`` field. Raises :class:`SpecError` naming the file
    and the field."""
    if isinstance(source, LandscapeSettings):
        return source
    if source is None:
        return LandscapeSettings()
    where = None
    if not isinstance(source, Mapping):
        path = Path(source)
        if not path.is_file():
            raise SpecError(f"{path}: no such settings file")
        where = str(path)
        source = read_yaml(path) or {}
    if isinstance(source, Mapping) and "landscape" in source:
        source = source["landscape"]
    try:
        return LandscapeSettings.from_mapping(source)
    except SpecError as exc:
        raise SpecError(f"{where}: {exc}" if where else str(exc)) from None


#: Settings that make the 8-model test zoo take about a second or two (for tests and smoke runs).
QUICK = {
    "metrics": metric_family_names(),
    "hessian": {"n_train": 64, "n_test": 64, "iters": 20, "tol": 1e-2, "trace_vectors": 8, "trace_tol": 1e-2,
                "trace_min_vectors": 4},
    "cka": {"n_samples": 64},
    "mc": {"epochs": 1, "batch_size": 64, "n_points": 5, "eval_samples": 128},
}
