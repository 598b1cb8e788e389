"""What runs on a zoo after its models are trained: landscape metrics, then phase labels.

Specs of every kind take two optional fields:

``landscape``
    the settings of :mod:`generators.landscape` (``docs/LANDSCAPE.md``); on by default, ``false``
    switches the metrics off;
``phases``
    fields of the phase rule to change (:class:`generators.phases.PhaseRule`, ``docs/PHASES.md``);
    phase grids are labelled by default, ``false`` switches labelling off.

Both are stored in the zoo's spec record in canonical form but are *not* part of the spec hash: they
say how a trained zoo is analysed, not how it is trained, so changing them never blocks resuming a
zoo; rerunning ``weightzoo generate`` with new settings recomputes what they change.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Mapping

from zoo.errors import SpecError
from zoo.format import STATUS_CODES
from zoo.store import Zoo

#: Spec fields that describe analysis, not training (left out of the spec hash).
ANALYSIS_FIELDS = ("landscape", "phases")


@dataclass
class Analysis:
    """The parsed ``landscape`` and ``phases`` fields of a spec (``phases`` None: no labelling)."""

    landscape: Any
    phases: Any

    def record(self) -> dict[str, Any]:
        """Canonical JSON of both fields, as stored in the spec record."""
        phases = False if self.phases is None else dataclasses.asdict(self.phases)
        return {"landscape": self.landscape.to_record(), "phases": phases}


def parse_analysis(spec: Mapping[str, Any], source: str | None = None) -> Analysis:
    """Parse (and validate, with errors naming the field) the analysis fields of a spec mapping."""
    from generators.landscape import LandscapeSettings
    from generators.phases import load_rule

    where = f"{source}: " if source else ""
    try:
        landscape = LandscapeSettings.from_mapping(spec.get("landscape"))
    except SpecError as exc:
        raise SpecError(f"{where}{exc}") from exc
    raw_phases = spec.get("phases", True)
    if raw_phases is False:
        phases = None
    elif raw_phases is True or raw_phases is None:
        phases = load_rule(None)
    elif isinstance(raw_phases, Mapping):
        try:
            phases = load_rule(raw_phases)
        except SpecError as exc:
            message = str(exc).replace("field '", "field 'phases.", 1)
            raise SpecError(f"{where}{message}") from exc
    else:
        raise SpecError(f"{where}field 'phases': expected true/false or a mapping of phase-rule fields, "
                        f"got {raw_phases!r}")
    return Analysis(landscape, phases)


def training_record(raw: Mapping[str, Any]) -> dict[str, Any]:
    """A spec record without its analysis fields: what the spec hash covers."""
    return {k: v for k, v in raw.items() if k not in ANALYSIS_FIELDS}


def _complete(z: Zoo) -> bool:
    return not (z.status_codes() == STATUS_CODES["pending"]).any()


def compute_landscape_step(z: Zoo, spec: Any, *, progress: bool = True) -> None:
    """Landscape metrics of the complete zoo, with the spec's settings (skipped when switched off)."""
    analysis = getattr(spec, "analysis", None)
    if analysis is None or not analysis.landscape.enabled or not _complete(z):
        return
    from generators.landscape import compute_landscape

    compute_landscape(z, analysis.landscape, progress=progress)


def label_phases_step(z: Zoo, spec: Any, *, progress: bool = True) -> None:
    """Phase labels of a complete phase-grid zoo whose mode connectivity was computed."""
    analysis = getattr(spec, "analysis", None)
    if analysis is None or analysis.phases is None or "grid" not in z.meta or not _complete(z):
        return
    if analysis.phases.mc_metric not in z.landscape_names:
        return
    from generators.phases import label_phases

    label_phases(z, analysis.phases)
