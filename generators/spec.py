"""Generation specs: a YAML file that says which zoo to train (fields in ``docs/SPECS.md``).

:func:`load_spec` reads any spec (a file, the name of a shipped spec, or a mapping) and hands it to
the zoo kind its ``kind`` field names (``phase_grid``, the default, or ``model_tree``; the registry
is :mod:`generators.kinds`). Every kind validates with pydantic models (:mod:`generators.grid_spec`,
:mod:`generators.tree_spec`, the shared sections in :mod:`generators.spec_fields`), so every error
names its field in one format (``demo.yaml: field 'grid.load.values[2]': must be > 0, got -1``) and
``weightzoo schema KIND`` writes the JSON Schema editors check YAML specs against.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from generators.kinds import get_zoo_kind, zoo_kind_names
from zoo.errors import SpecError, UnknownNameError
from zoo.validation import read_yaml, spec_error

SPEC_DIR = Path(__file__).parent / "specs"


def shipped_spec_names() -> list[str]:
    """Names of the specs shipped in ``generators/specs`` (``demo``, ``tree_demo``, ...)."""
    return sorted(q.stem for q in SPEC_DIR.glob("*.yaml"))


def resolve_spec_path(name_or_path: str | Path) -> Path:
    """A spec file path, or the name of a spec shipped in ``generators/specs`` (``demo``)."""
    p = Path(name_or_path)
    if p.is_file():  # a directory named like a shipped spec (e.g. 'weightzoo demo --out demo') does not shadow it
        return p
    shipped = SPEC_DIR / f"{name_or_path}.yaml"
    if shipped.exists():
        return shipped
    raise SpecError(f"spec {str(name_or_path)!r} is neither a file nor a shipped spec (shipped: "
                    f"{shipped_spec_names()})")


def read_spec_file(spec: str | Path) -> tuple[dict, str]:
    """``(mapping, source)`` of a YAML spec file or shipped spec name."""
    path = resolve_spec_path(spec)
    data = read_yaml(path)
    if not isinstance(data, Mapping):
        raise SpecError(f"{path}: the spec must be a mapping of fields, got {type(data).__name__}")
    return dict(data), str(path)


def load_spec(spec: str | Path | Mapping[str, Any]) -> Any:
    """Parse and validate a spec from a YAML path, a shipped spec name, or a dict.

    Returns the spec object of its ``kind`` (default ``phase_grid``): a
    :class:`generators.grid_spec.PhaseGridSpec` or a :class:`generators.tree_spec.ModelTreeSpec`; every
    spec object has ``kind``, ``name``, ``raw``, ``spec_hash`` and ``analysis``.

    Raises:
        SpecError: the file is missing or not YAML, or a field is wrong (the message names the file and
            the field). UnknownNameError: an unknown kind, architecture, optimiser, ... (lists the names).
    """
    source = None
    if not isinstance(spec, Mapping):
        spec, source = read_spec_file(spec)
    kind = spec.get("kind", "phase_grid")
    try:
        zoo_kind = get_zoo_kind(kind)
    except UnknownNameError:
        raise spec_error("kind", f"unknown kind {kind!r}; choose from {zoo_kind_names()}", source,
                         unknown_name=True) from None
    return zoo_kind.parse(dict(spec), source)
