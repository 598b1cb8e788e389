"""What runs on a zoo after its models are trained, as a spec says: landscape metrics, then phase labels.

Specs of every kind take two optional fields:

``landscape``
    the settings of :mod:`generators.landscape` (``docs/LANDSCAPE.md``); on by default, ``false``
    switches the metrics off;
``phases``
    fields of the phase rule to change (:class:`generators.phases.PhaseRule`, ``docs/PHASES.md``);
    phase grids are labelled by default, ``false`` switches labelling off.

Both are stored in the zoo's spec record in canonical form but are *not* part of the spec hash: they
say how a trained zoo is analysed, not how it is trained, so changing them never blocks resuming a
zoo; rerunning ``weightzoo generate`` with new settings recomputes what they change. The steps that
apply them run in :mod:`generators.driver`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Union

from pydantic import BeforeValidator
from typing_extensions import Annotated

from generators.landscape.settings import LandscapeSettings
from generators.phases import PhaseRule
from zoo.validation import Bool, FieldError, either

#: Spec fields that describe analysis, not training (left out of the spec hash).
ANALYSIS_FIELDS = ("landscape", "phases")



def _switch_or_mapping(what: str):
    def check(value: Any) -> Any:
        if not isinstance(value, (bool, Mapping, LandscapeSettings, PhaseRule)):
            raise FieldError(f"expected true/false or a mapping of {what}, got {value!r}")
        return value
    return BeforeValidator(check)


#: The two fields in a spec's schema: ``true``/``false`` or a mapping of settings.
LandscapeField = Annotated[either(("switch", Bool), ("settings", LandscapeSettings), lambda v: isinstance(v, bool)),
                           _switch_or_mapping("landscape settings")]
PhasesField = Annotated[either(("switch", Bool), ("rule", PhaseRule), lambda v: isinstance(v, bool)),
                        _switch_or_mapping("phase-rule fields")]


@dataclass
class Analysis:
    """The parsed ``landscape`` and ``phases`` fields of a spec (``phases`` None: no labelling)."""

    landscape: LandscapeSettings
    phases: PhaseRule | None

    @classmethod
    def from_fields(cls, landscape: Union[bool, LandscapeSettings], phases: Union[bool, PhaseRule]) -> "Analysis":
        """From the validated fields (``true``: defaults, ``false``: off)."""
        if isinstance(landscape, bool):
            landscape = LandscapeSettings.from_mapping(landscape)
        if phases is True:
            phases = PhaseRule()
        return cls(landscape, None if phases is False else phases)

    def record(self) -> dict[str, Any]:
        """Canonical JSON of both fields, as stored in the spec record."""
        return {"landscape": self.landscape.to_record(),
                "phases": False if self.phases is None else self.phases.model_dump(mode="json")}


def training_record(raw: Mapping[str, Any]) -> dict[str, Any]:
    """A spec record without its analysis fields: what the spec hash covers."""
    return {k: v for k, v in raw.items() if k not in ANALYSIS_FIELDS}
