"""Errors raised by the kernels. They derive from built-in exceptions, so callers that do not know
:mod:`kernels` can still catch ``ValueError``."""

from __future__ import annotations


class KernelError(Exception):
    """Base class of the errors the kernels define."""


class LayoutMismatchError(KernelError, ValueError):
    """Weights do not fit a parameter layout: a parameter's name, count or shape differs (the message
    names it and both shapes)."""


class UnknownNameError(KernelError, KeyError, ValueError):
    """A name that no registry knows (the message lists the registered names); a ``KeyError`` (a failed
    lookup) and a ``ValueError`` (a bad argument) alike."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""
