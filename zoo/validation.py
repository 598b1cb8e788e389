"""One way to validate specs: pydantic v2 models, one error type, one error format.

Every spec weightzoo reads — phase grids, model trees, task specs, landscape settings, the phase rule,
catalog entries — is a :class:`SpecModel` (a pydantic ``BaseModel`` that refuses unknown fields).
:func:`validate` runs one and turns the first problem into a :class:`~zoo.errors.SpecError` (or
:class:`~zoo.errors.UnknownNameError` for a name no registry knows) in one format::

    demo.yaml: field 'grid.load.values[1]': must be > 0, got -1

Validators written here raise :class:`FieldError` (a ``ValueError``) with a message and, when the
problem is deeper than the field being validated, the rest of its path; :func:`spec_error` formats an
error of the same form for checks that run after validation (e.g. while building a task's data).
The JSON Schema of a model (``weightzoo schema``) comes from pydantic (``model_json_schema``).
Relies on pydantic.
"""

from __future__ import annotations

import math
import numbers
import os
import pathlib
from typing import Annotated, Any, Callable, Iterable, Mapping, Sequence, TypeVar, Union

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Discriminator, Tag, ValidationError, model_validator
from pydantic_core import PydanticCustomError

from kernels.registry import Registry
from zoo.errors import SpecError, UnknownNameError

M = TypeVar("M", bound=BaseModel)
Path = Sequence[Union[str, int]]

#: Prefix of the tags of :func:`either` unions (left out of error paths).
_TAG = "~"


class FieldError(ValueError):
    """A validation problem at ``path`` below the field being validated (``()``: that field itself).
    ``unknown_name`` marks a name that no registry knows (reported as ``UnknownNameError``)."""

    def __init__(self, message: str, path: Path = (), *, unknown_name: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.path = tuple(path)
        self.unknown_name = unknown_name


def format_path(path: Iterable[str | int]) -> str:
    """``("grid", "load", "values", 1)`` -> ``grid.load.values[1]``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def spec_error(path: Path | str, message: str, source: str | None = None, *, unknown_name: bool = False
               ) -> SpecError:
    """The one error format: ``[source: ]field 'path': message`` (``UnknownNameError`` for unknown names)."""
    where = f"{source}: " if source else ""
    name = path if isinstance(path, str) else format_path(path)
    cls = UnknownNameError if unknown_name else SpecError
    error = cls(f"{where}field '{name}': {message}" if name else f"{where}{message}")
    error.field = name      # the parts, for callers that put the error into a larger spec
    error.reason = message
    return error


def nested(error: SpecError, below: str) -> FieldError:
    """A :func:`spec_error` raised by a nested validation (e.g. of a task spec, whose paths start with
    ``task``) as a :class:`FieldError` at the same place below the field ``below`` being validated."""
    field = getattr(error, "field", "")
    reason = getattr(error, "reason", str(error))
    rest = field[len(below):].lstrip(".") if field.startswith(below) else field
    return FieldError(reason, tuple(p for p in rest.split(".") if p), unknown_name=isinstance(error, UnknownNameError))


# ------------------------------------------------------------------------------------- base model
class SpecModel(BaseModel):
    """A spec section: unknown fields are refused with the allowed ones listed; values are validated
    on assignment too."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, populate_by_name=True)

    @model_validator(mode="before")
    @classmethod
    def _refuse_unknown_fields(cls, data: Any) -> Any:
        if isinstance(data, Mapping):
            allowed = [f.alias or name for name, f in cls.model_fields.items()]
            unknown = sorted(str(k) for k in data if k not in allowed)
            if unknown:
                raise PydanticCustomError("unknown_field", "unknown field; allowed fields are {allowed}",
                                          {"field": unknown[0], "allowed": allowed})
        elif data is not None and not isinstance(data, BaseModel):
            raise PydanticCustomError("mapping_type", "expected a mapping of fields, got {value}",
                                      {"value": repr(data)})
        return data

    def record(self) -> dict[str, Any]:
        """Every field as plain JSON types."""
        return self.model_dump(mode="json")


# ------------------------------------------------------------------------------------- value types
def _is_real(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and type(value).__name__ != "bool_"


def _number(value: Any) -> float:
    if not _is_real(value):
        raise FieldError(f"expected a number, got {value!r}")
    if not math.isfinite(float(value)):
        raise FieldError(f"expected a finite number, got {value!r}")
    return float(value)


def _integer(value: Any) -> int:
    if not _is_real(value) or not math.isfinite(float(value)) or not float(value).is_integer():
        raise FieldError(f"expected an integer, got {value!r}")
    return int(value)


def _boolean(value: Any) -> bool:
    if not isinstance(value, bool) and type(value).__name__ != "bool_":
        raise FieldError(f"expected true or false, got {value!r}")
    return bool(value)


def _string(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise FieldError(f"expected a non-empty string, got {value!r}")
    return value


def as_int(value: Any) -> int:
    """``value`` as an int by the :data:`Int` rule (integral floats accepted; bools, strings refused);
    raises :class:`FieldError`."""
    return _integer(value)


def as_number(value: Any) -> float:
    """``value`` as a finite float by the :data:`Number` rule; raises :class:`FieldError`."""
    return _number(value)


#: A finite number (ints accepted; bools and strings refused), as a float.
Number = Annotated[float, BeforeValidator(_number)]
#: An integer (integral floats such as ``2.0`` accepted; bools and strings refused).
Int = Annotated[int, BeforeValidator(_integer)]
#: ``true`` or ``false`` only.
Bool = Annotated[bool, BeforeValidator(_boolean)]
#: A non-empty string.
Str = Annotated[str, BeforeValidator(_string)]


def choice(kind: str, names: Callable[[], Sequence[str]]) -> Callable[[Any], str]:
    """A validator accepting a name from ``names()`` (a registry's names), else an unknown-name error."""

    def check(value: Any) -> str:
        options = list(names())
        if not isinstance(value, str) or value not in options:
            raise FieldError(f"unknown {kind} {value!r}; choose from {options}", unknown_name=True)
        return value

    return check


class _StrictLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing a key given twice in one mapping (PyYAML keeps the last silently)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: set = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def read_yaml(path: str | os.PathLike) -> Any:
    """The YAML (or JSON) document in the file ``path``. Raises :class:`SpecError` in one line naming the
    file, line and column for text that is not UTF-8, not YAML, or maps one key twice."""
    path = pathlib.Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise SpecError(f"{path}: not a UTF-8 text file (byte {exc.start})") from None
    try:
        return yaml.load(text, Loader=_StrictLoader)  # noqa: S506 (a SafeLoader subclass)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise SpecError(f"{path}: not valid YAML: {where}{problem}") from None


def known_keys(value: Any, names: Sequence[str], kind: str, shape: str) -> Mapping:
    """``value`` if it is a non-empty mapping whose keys are all in ``names``; otherwise a
    :class:`FieldError` (at the first unknown key) naming the choices. ``kind`` names the keys
    (``"corruption kind"``), ``shape`` what each maps to (``"{range: [low, high]}"``)."""
    if not isinstance(value, Mapping) or not value:
        raise FieldError(f"is required: a mapping of {kind} names {list(names)} to {shape}, got {value!r}")
    unknown = sorted(set(value) - set(names))
    if unknown:
        raise FieldError(f"unknown {kind}; choose from {list(names)}", (unknown[0],))
    return value


def drop_nulls(data: Any, keys: Sequence[str]) -> Any:
    """``data`` without the ``keys`` whose value is ``None`` (YAML ``key:`` with nothing after it), so that
    they take their defaults; used as a ``model_validator(mode="before")``."""
    if isinstance(data, Mapping):
        return {k: v for k, v in data.items() if not (k in keys and v is None)}
    return data


def either(first: tuple[str, Any], second: tuple[str, Any], pick: Callable[[Any], bool]) -> Any:
    """A union of two input forms, validated by the one ``pick(value)`` selects (True: ``first``), so an
    error speaks of that form only; e.g. ``either(("list", list[Int]), ("schedule", Schedule),
    lambda v: isinstance(v, list))``. The JSON Schema shows both forms."""
    (name_a, type_a), (name_b, type_b) = first, second
    tag_a, tag_b = _TAG + name_a, _TAG + name_b
    return Annotated[Union[Annotated[type_a, Tag(tag_a)], Annotated[type_b, Tag(tag_b)]],
                     Discriminator(lambda v: tag_a if pick(v) else tag_b)]


# ------------------------------------------------------------------------------------- validation
def _bound(value: Any) -> str:
    return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)


_MESSAGES: dict[str, Callable[[dict], str]] = {
    "missing": lambda e: "is required",
    "greater_than": lambda e: f"must be > {_bound(e['ctx']['gt'])}, got {e['input']!r}",
    "greater_than_equal": lambda e: f"must be >= {_bound(e['ctx']['ge'])}, got {e['input']!r}",
    "less_than": lambda e: f"must be < {_bound(e['ctx']['lt'])}, got {e['input']!r}",
    "less_than_equal": lambda e: f"must be <= {_bound(e['ctx']['le'])}, got {e['input']!r}",
    "too_short": lambda e: (f"expected a non-empty list, got {e['input']!r}" if e["ctx"]["min_length"] == 1
                            else f"expected at least {e['ctx']['min_length']} items, got {e['input']!r}"),
    "too_long": lambda e: f"expected at most {e['ctx']['max_length']} items, got {e['input']!r}",
    "literal_error": lambda e: f"expected one of {e['ctx']['expected']}, got {e['input']!r}",
    "list_type": lambda e: f"expected a list, got {e['input']!r}",
    "tuple_type": lambda e: f"expected a list, got {e['input']!r}",
    "dict_type": lambda e: f"expected a mapping, got {e['input']!r}",
    "model_type": lambda e: f"expected a mapping of fields, got {e['input']!r}",
    "model_attributes_type": lambda e: f"expected a mapping of fields, got {e['input']!r}",
    "string_type": lambda e: f"expected a string, got {e['input']!r}",
    "bool_type": lambda e: f"expected true or false, got {e['input']!r}",
}


def _first_error(exc: ValidationError) -> tuple[tuple, str, bool]:
    """``(path, message, unknown_name)`` of the first problem pydantic found."""
    err = exc.errors(include_url=False)[0]
    path = [p for p in err["loc"] if not (isinstance(p, str) and p.startswith(_TAG))]
    kind = err["type"]
    ctx = err.get("ctx") or {}
    original = ctx.get("error")
    if path and path[-1] == "[key]":  # a mapping's key is wrong, not its value
        key = path[-2] if len(path) > 1 else err.get("input")
        del path[-2:]
        _, message, unknown = _first_error_of(err, kind, ctx, original)
        return tuple(path), f"key {key!r}: {message}", unknown
    return _first_error_of(err, kind, ctx, original, tuple(path))


def _first_error_of(err: dict, kind: str, ctx: dict, original: Any, path: tuple = ()) -> tuple[tuple, str, bool]:
    if isinstance(original, FieldError):
        return path + original.path, original.message, original.unknown_name
    if kind == "unknown_field":
        return path + (ctx["field"],), f"unknown field; allowed fields are {ctx['allowed']}", False
    if kind in _MESSAGES:
        return path, _MESSAGES[kind](err), False
    message = err["msg"].removeprefix("Value error, ").removeprefix("Assertion failed, ")
    return path, message, False


def validate(model: type[M], data: Any, *, source: str | None = None, prefix: Path | str = ()) -> M:
    """``model`` validated from ``data`` (a mapping); the first problem becomes a ``SpecError`` naming the
    field (``prefix`` is put in front of every path, e.g. ``"landscape"``) and ``source`` (a file)."""
    try:
        return model.model_validate(data if data is not None else {})
    except ValidationError as exc:
        path, message, unknown = _first_error(exc)
        head = tuple(p for p in (prefix.split(".") if isinstance(prefix, str) else prefix) if p != "")
        raise spec_error(head + path, message, source, unknown_name=unknown) from None


# ------------------------------------------------------------------------------------- JSON Schemas
_SCHEMAS: Registry[type[BaseModel]] = Registry("schema", error=UnknownNameError)
register_schema = _SCHEMAS.register
get_schema = _SCHEMAS.get
schema_names = _SCHEMAS.names


def json_schema(name: str) -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of the registered spec model ``name`` (``weightzoo schema NAME``)."""
    model = get_schema(name)
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **model.model_json_schema()}
