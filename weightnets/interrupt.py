"""Ctrl-C inside Lightning: ``Trainer.fit``/``test`` catch ``KeyboardInterrupt``, shut down and call
``sys.exit(1)`` with SIGINT ignored from then on. :func:`interruptible` turns that back into a
``KeyboardInterrupt`` (so the command line exits 130, as for every other command) and restores the
default SIGINT handler."""

from __future__ import annotations

import signal
from typing import Any, Callable, TypeVar

from lightning.pytorch import Trainer
from lightning.pytorch.trainer.states import TrainerStatus

T = TypeVar("T")


def interruptible(trainer: Trainer, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``fn(*args, **kwargs)`` (a bound ``trainer.fit`` / ``trainer.test``); raises ``KeyboardInterrupt``
    where Lightning would exit with code 1 after a Ctrl-C."""
    try:
        return fn(*args, **kwargs)
    except SystemExit:
        if trainer.state.status == TrainerStatus.INTERRUPTED:
            signal.signal(signal.SIGINT, signal.default_int_handler)
            raise KeyboardInterrupt from None
        raise
