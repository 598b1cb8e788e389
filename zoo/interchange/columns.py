"""Planned models-table columns in and out of per-model formats (HF rows, safetensors headers).

A planned column ``c`` is stored as ``models/<c>``: numbers and booleans as themselves, category
columns as int32 codes into ``columns[c].categories`` of the root attributes. Per-model formats carry
the human value (the category label, not its code); these helpers convert both ways exactly.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from zoo.errors import ZooError
from zoo.interchange.skeleton import StoreSkeleton


def planned_columns(skel: StoreSkeleton) -> list[str]:
    return list(skel.meta.get("columns", {}))


def column_kind(skel: StoreSkeleton, column: str) -> str:
    return str(skel.meta["columns"][column].get("kind", "numeric"))


def to_text(value: Any) -> str:
    """Exact text of a planned value: shortest round-tripping repr for floats of their own width."""
    if isinstance(value, (bool, np.bool_)):
        return "true" if value else "false"
    # Python and numpy scalars print the shortest text that parses back to the same value and width
    return str(value)


def from_text(text: str, skel: StoreSkeleton, column: str, where: str) -> Any:
    """Inverse of :func:`to_text` for planned column ``column`` (a category label stays a label)."""
    kind = column_kind(skel, column)
    if kind == "category":
        return text
    if kind == "bool":
        if text not in ("true", "false"):
            raise ZooError(f"{where}: column {column!r} is boolean, got {text!r} (expected 'true' or 'false')")
        return text == "true"
    dtype = skel.dtype(f"models/{column}")
    try:
        return dtype.type(text)
    except (TypeError, ValueError):
        raise ZooError(f"{where}: column {column!r} needs a {dtype} value, got {text!r}") from None


def planned_array(values: Sequence[Any], skel: StoreSkeleton, column: str, where: str) -> np.ndarray:
    """The ``models/<column>`` array ``[n_models]`` for human values (labels become their codes)."""
    dtype = skel.dtype(f"models/{column}")
    if column_kind(skel, column) == "category":
        cats = list(skel.meta["columns"][column]["categories"])
        index = {c: i for i, c in enumerate(cats)}
        unknown = sorted({str(v) for v in values} - set(index))
        if unknown:
            raise ZooError(f"{where}: column {column!r} has values {unknown[:5]} that are not among its "
                           f"categories {cats[:10]}")
        return np.asarray([index[str(v)] for v in values], dtype=dtype)
    try:
        return np.asarray(values, dtype=dtype)
    except (TypeError, ValueError) as exc:
        raise ZooError(f"{where}: column {column!r} cannot be read as {dtype} ({exc})") from exc


def human_values(codes: np.ndarray, skel: StoreSkeleton, column: str) -> np.ndarray:
    """Human values of ``models/<column>`` codes (category labels as an object array)."""
    if column_kind(skel, column) == "category":
        return np.asarray(skel.meta["columns"][column]["categories"], dtype=object)[codes]
    return codes
