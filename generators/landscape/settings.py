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

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import yaml

from zoo.errors import SpecError

from generators.spec import number

#: Metric families, in the order they run. ``barrier`` is off by default.
FAMILIES = ("hessian", "alpha", "cka", "mc", "barrier")
DEFAULT_FAMILIES = ("hessian", "alpha", "cka", "mc")
#: Families computed on pairs of seeds of one grid cell.
PAIR_FAMILIES = ("cka", "mc", "barrier")
_ALIASES = {"mode_connectivity": "mc", "heavy_tail": "alpha", "spectra": "alpha", "hessians": "hessian"}

Check = Callable[[Any, str], Any]


def _fail(name: str, msg: str) -> SpecError:
    return SpecError(f"field '{name}': {msg}")


def _int(minimum: int) -> Check:
    """An integer >= ``minimum`` (``generators.spec.number``)."""
    return lambda value, name: number(value, name, None, integer=True, positive=minimum == 1,
                                      minimum=None if minimum == 1 else minimum)


def _float(*, positive: bool = True, maximum: float | None = None) -> Check:
    """A finite number > 0 (``positive``) or >= 0, at most ``maximum``."""
    return lambda value, name: number(value, name, None, positive=positive, minimum=None if positive else 0,
                                      maximum=maximum)


def _choice(*options: str) -> Check:
    def check(value: Any, name: str) -> str:
        if value not in options:
            raise _fail(name, f"expected one of {list(options)}, got {value!r}")
        return str(value)
    return check


def _bool(value: Any, name: str) -> bool:
    if not isinstance(value, bool):
        raise _fail(name, f"expected true or false, got {value!r}")
    return value


def _any_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _fail(name, f"expected an integer, got {value!r}")
    return value


def _opt(default: Any, check: Check, doc: str) -> Any:
    return field(default=default, metadata={"check": check, "doc": doc})


@dataclass(frozen=True)
class HessianSettings:
    """Top Hessian eigenvalue (power iteration) and trace (Hutchinson) of the mean cross-entropy on a
    fixed set of training and of test samples (PyHessian's defaults for iterations and tolerance)."""

    n_train: int = _opt(512, _int(0), "training samples (0 = all)")
    n_test: int = _opt(512, _int(0), "test samples (0 = all)")
    sample_rule: str = _opt("random", _choice("random", "first"), "which samples: a seeded random subset or the first n")
    sample_seed: int = _opt(0, _any_int, "seed of the random sample subset")
    batch_size: int = _opt(1024, _int(1), "samples per Hessian-vector product chunk (memory, not the result)")
    iters: int = _opt(100, _int(1), "most power iterations")
    tol: float = _opt(1e-3, _float(positive=False), "stop when the eigenvalue's relative change is below this")
    trace_vectors: int = _opt(100, _int(1), "most Rademacher vectors for the trace")
    trace_tol: float = _opt(0.03, _float(positive=False),
                            "stop when the trace's standard error is at most this fraction of its magnitude")
    trace_min_vectors: int = _opt(10, _int(2), "fewest Rademacher vectors before trace_tol may stop the trace")
    seed: int = _opt(0, _any_int, "seed of the start vector and Rademacher vectors (combined with the model id)")


@dataclass(frozen=True)
class SpectraSettings:
    """Heavy-tail exponent of each weight matrix's empirical spectral density."""

    min_eigs: int = _opt(5, _int(2), "layers with fewer non-zero eigenvalues get NaN")
    min_tail: int = _opt(5, _int(2), "fewest eigenvalues at or above xmin a fit may use")
    zero_tol: float = _opt(1e-5, _float(positive=False), "eigenvalues <= zero_tol * largest are dropped")
    farms: bool = _opt(False, _bool, "FARMS: pool the ESDs of fixed-aspect-ratio submatrices")
    farms_q: float = _opt(1.0, _float(), "FARMS submatrix aspect ratio, columns / rows")
    farms_rows: int = _opt(0, _int(0), "FARMS submatrix rows (0 = as many as fit)")
    farms_windows: int = _opt(10, _int(1), "FARMS window positions per matrix dimension")


@dataclass(frozen=True)
class CKASettings:
    """Linear CKA between the logits of two seeds on one fixed held-out batch."""

    split: str = _opt("test", _choice("test", "train"), "split the batch comes from")
    n_samples: int = _opt(512, _int(0), "samples in the batch (0 = the whole split)")
    sample_rule: str = _opt("random", _choice("random", "first"), "which samples")
    sample_seed: int = _opt(0, _any_int, "seed of the random subset")


@dataclass(frozen=True)
class ConnectivitySettings:
    """Quadratic Bezier curve between two seeds with fixed endpoints; its bend is trained."""

    epochs: int = _opt(10, _int(0), "epochs of bend training over the training split")
    lr: float = _opt(0.05, _float(), "SGD learning rate of the bend")
    momentum: float = _opt(0.9, _float(positive=False, maximum=1.0), "SGD momentum")
    weight_decay: float = _opt(0.0, _float(positive=False), "L2 penalty on the bend (coupled, as torch.optim.SGD)")
    batch_size: int = _opt(128, _int(1), "mini-batch size of bend training")
    n_points: int = _opt(11, _int(3), "evaluation points t, evenly spaced in [0, 1]")
    eval_split: str = _opt("train", _choice("train", "test"), "split the curve is evaluated on")
    eval_samples: int = _opt(0, _int(0), "samples of that split (0 = all)")
    sample_rule: str = _opt("random", _choice("random", "first"), "which evaluation samples")
    sample_seed: int = _opt(0, _any_int, "seed of the evaluation subset")
    seed: int = _opt(0, _any_int, "seed of the data order and of each pair's t per step")


@dataclass(frozen=True)
class PairSettings:
    """Which seed pairs of a grid cell get pair metrics."""

    max_per_cell: int = _opt(0, _int(0), "pairs per cell (0 = all pairs)")
    seed: int = _opt(0, _any_int, "seed choosing the pairs when capped")


_SECTIONS = {"hessian": HessianSettings, "alpha": SpectraSettings, "cka": CKASettings, "mc": ConnectivitySettings,
             "pairs": PairSettings}


def parse_families(names: Iterable[str] | str, field_name: str = "landscape.metrics") -> tuple[str, ...]:
    """Canonical family names (``mode_connectivity`` -> ``mc``) in run order; unknown names fail."""
    if isinstance(names, str):
        names = [n for n in names.replace(",", " ").split() if n]
    if not isinstance(names, (list, tuple)):
        raise _fail(field_name, f"expected a list of metric names from {list(FAMILIES)}, got {names!r}")
    out = []
    for i, n in enumerate(names):
        key = _ALIASES.get(str(n), str(n))
        if key not in FAMILIES:
            raise _fail(f"{field_name}[{i}]", f"unknown metric {n!r}; choose from {list(FAMILIES)}")
        out.append(key)
    return tuple(f for f in FAMILIES if f in out)


@dataclass(frozen=True)
class LandscapeSettings:
    """All landscape settings. ``metrics`` selects the families that run (see :data:`FAMILIES`).

    ``max_population`` (models or pairs processed together), ``threads`` (torch intra-op threads
    while computing; 0 keeps torch's setting) and ``group_bytes`` (the working set of one group of
    Hessian-vector products, sized for a CPU cache; 0 = the whole population at once, the better choice
    on a GPU) change speed and memory, not the values. One thread is
    the default because the work is many small kernels that the population already batches: extra
    intra-op threads mostly add synchronisation, which on a loaded machine costs far more than it
    gains (docs/LANDSCAPE.md, "Cost")."""

    enabled: bool = True
    metrics: tuple[str, ...] = DEFAULT_FAMILIES
    checkpoint: int = -1
    max_population: int = 64
    threads: int = 1
    group_bytes: int = 512 * 1024
    hessian: HessianSettings = field(default_factory=HessianSettings)
    alpha: SpectraSettings = field(default_factory=SpectraSettings)
    cka: CKASettings = field(default_factory=CKASettings)
    mc: ConnectivitySettings = field(default_factory=ConnectivitySettings)
    pairs: PairSettings = field(default_factory=PairSettings)

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, Any] | None, prefix: str = "landscape") -> "LandscapeSettings":
        """Parse ``mapping`` (the value of a spec's ``landscape`` field); missing fields get defaults.

        ``true``/``false`` alone switch the defaults on or off.
        """
        if mapping is None or mapping is True:
            return cls()
        if mapping is False:
            return cls(enabled=False)
        if not isinstance(mapping, Mapping):
            raise _fail(prefix, f"expected a mapping of settings (or true/false), got {mapping!r}")
        allowed = ["enabled", "metrics", "checkpoint", "max_population", "threads", "group_bytes", *_SECTIONS]
        unknown = sorted(set(mapping) - set(allowed))
        if unknown:
            raise _fail(f"{prefix}.{unknown[0]}", f"unknown field; allowed fields are {allowed}")
        kwargs: dict[str, Any] = {}
        if "enabled" in mapping:
            kwargs["enabled"] = _bool(mapping["enabled"], f"{prefix}.enabled")
        if "metrics" in mapping:
            kwargs["metrics"] = parse_families(mapping["metrics"], f"{prefix}.metrics")
        if "checkpoint" in mapping:
            kwargs["checkpoint"] = _any_int(mapping["checkpoint"], f"{prefix}.checkpoint")
        if "max_population" in mapping:
            kwargs["max_population"] = _int(1)(mapping["max_population"], f"{prefix}.max_population")
        if "threads" in mapping:
            kwargs["threads"] = _int(0)(mapping["threads"], f"{prefix}.threads")
        if "group_bytes" in mapping:
            kwargs["group_bytes"] = _int(0)(mapping["group_bytes"], f"{prefix}.group_bytes")
        for key, section in _SECTIONS.items():
            if key in mapping:
                kwargs[key] = _parse_section(section, mapping[key], f"{prefix}.{key}")
        return cls(**kwargs)

    def replace(self, **changes: Any) -> "LandscapeSettings":
        return dataclasses.replace(self, **changes)

    def only(self, names: Iterable[str] | str) -> "LandscapeSettings":
        """These settings with just the families ``names`` selected."""
        return self.replace(metrics=parse_families(names, "--only"))

    def to_record(self) -> dict[str, Any]:
        """Every setting as plain JSON types."""
        return {"enabled": self.enabled, "metrics": list(self.metrics), "checkpoint": self.checkpoint,
                "max_population": self.max_population, "threads": self.threads, "group_bytes": self.group_bytes,
                **{key: dataclasses.asdict(getattr(self, key)) for key in _SECTIONS}}

    def record(self, family: str) -> dict[str, Any]:
        """The settings that determine the values of ``family`` (stored with them). The checkpoint is
        stored beside them by the store; ``max_population``, ``threads`` and ``group_bytes`` only change speed, so they are
        left out."""
        if family == "barrier":  # the straight line is evaluated with the curve's evaluation settings
            mc = dataclasses.asdict(self.mc)
            rec = {k: mc[k] for k in ("n_points", "eval_split", "eval_samples", "sample_rule", "sample_seed")}
            rec["path"] = "straight line"
        elif family == "mc":
            rec = {**dataclasses.asdict(self.mc), "curve": "quadratic bezier, endpoints fixed, bend trained",
                   "bend_init": "midpoint", "optimizer": "sgd", "t_sampling": "uniform, one t per pair per step"}
        else:
            rec = dataclasses.asdict(getattr(self, family))
        if family == "hessian":
            rec.update(loss="mean cross-entropy", top_eigenvalue="power iteration (largest magnitude)",
                       trace="Hutchinson, Rademacher vectors; stops when its standard error <= trace_tol * |trace|")
        if family in PAIR_FAMILIES:
            rec["pairs"] = {**dataclasses.asdict(self.pairs), "rule": "seeds of one grid_cell"}
        return rec


def _parse_section(cls: type, value: Any, prefix: str) -> Any:
    if not isinstance(value, Mapping):
        raise _fail(prefix, f"expected a mapping, got {value!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(value) - set(fields))
    if unknown:
        raise _fail(f"{prefix}.{unknown[0]}", f"unknown field; allowed fields are {sorted(fields)}")
    return cls(**{k: fields[k].metadata["check"](v, f"{prefix}.{k}") for k, v in value.items()})


def load_settings(source: str | Path | Mapping[str, Any] | LandscapeSettings | None) -> LandscapeSettings:
    """Settings from ``None`` (defaults), a mapping, or a YAML file; a mapping or file may hold the
    settings themselves or a spec with a ``landscape`` field."""
    if isinstance(source, LandscapeSettings):
        return source
    if source is None:
        return LandscapeSettings()
    where = ""
    if not isinstance(source, Mapping):
        path = Path(source)
        if not path.is_file():
            raise SpecError(f"{path}: no such settings file")
        where = f"{path}: "
        try:
            source = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise SpecError(f"{path}: not valid YAML: {exc}") from exc
    if isinstance(source, Mapping) and "landscape" in source:
        source = source["landscape"]
    try:
        return LandscapeSettings.from_mapping(source)
    except SpecError as exc:
        raise SpecError(f"{where}{exc}") from exc


#: Settings that make the 8-model test zoo take about a second or two (for tests and smoke runs).
QUICK = {
    "metrics": list(FAMILIES),
    "hessian": {"n_train": 64, "n_test": 64, "iters": 20, "tol": 1e-2, "trace_vectors": 8, "trace_tol": 1e-2,
                "trace_min_vectors": 4},
    "cka": {"n_samples": 64},
    "mc": {"epochs": 1, "batch_size": 64, "n_points": 5, "eval_samples": 128},
}
