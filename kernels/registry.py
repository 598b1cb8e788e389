"""The one registry pattern of weightzoo: ``register_x(name)`` / ``get_x(name)`` / ``x_names()``.

Every package keeps its named things (architectures, task sources, importers, exporters, zoo kinds,
optimisers, schedules, landscape metric families, kernel backends, ...) in a :class:`Registry` and
exposes three functions made from it. An unknown name raises the registry's error (by default
:class:`~kernels.errors.UnknownNameError`; ``zoo`` passes its own, which is also a ``ZooError``) with
every registered name listed. It lives in the bottom layer so that every package can use it.
"""

from __future__ import annotations

from typing import Callable, Generic, TypeVar

from kernels.errors import UnknownNameError

T = TypeVar("T")


class Registry(Generic[T]):
    """Named entries of one kind (``kind`` is used in error messages, e.g. ``"architecture"``)."""

    def __init__(self, kind: str, error: type[Exception] = UnknownNameError) -> None:
        self.kind = kind
        self.error = error
        self._entries: dict[str, T] = {}

    def register(self, name: str, *, replace: bool = True) -> Callable[[T], T]:
        """Decorator (or plain call ``register(name)(obj)``) that registers ``obj`` under ``name``.
        ``replace=False`` refuses a name that is taken (``ValueError``)."""
        if not isinstance(name, str) or not name:
            raise ValueError(f"a {self.kind} name must be a non-empty string, got {name!r}")

        def deco(obj: T) -> T:
            if not replace and name in self._entries:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self._entries[name] = obj
            return obj

        return deco

    def get(self, name: str) -> T:
        """The entry ``name``; the registry's error lists the registered names when there is none."""
        try:
            return self._entries[name]
        except (KeyError, TypeError):
            raise self.error(f"unknown {self.kind} {name!r}; choose from {self.names()}") from None

    def unregister(self, name: str) -> None:
        """Remove ``name`` (no error when it is not registered)."""
        self._entries.pop(name, None)

    def names(self) -> list[str]:
        """Registered names, sorted."""
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries
