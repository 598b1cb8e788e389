"""One writer per store: an inter-process lock (``filelock``) that every command writing a store holds.

A store is written by one command at a time: ``weightzoo generate`` / ``demo`` (training, then the
analysis steps), ``metrics``, ``phases``, ``pack-weights``, ``import`` — and by the Python functions
behind them (:func:`generators.driver.generate`, :func:`generators.landscape.compute_landscape`,
:func:`zoo.rechunk.pack_weights`, the importers). Two of them on one store would race: both create it
(``OSError: Directory not empty``), both train the same models, or one deletes what the other reads.
The lock is the hidden file ``.<store name>.lock`` *beside* the store (the store may not exist yet);
``.<store name>.lock.json`` says who holds it (pid, host, command line, since when). Readers never take
it: ``zoo.open`` reads a store while it is written, as before. Processes that a writer starts for its
own work (Ray tasks) write without it, under the lock their driver holds.

The lock is re-entrant within a process (a command that calls another locked function does not block
on itself) and released by the operating system if the holder dies, so a killed run never leaves a
store locked.
"""

from __future__ import annotations

import functools
import inspect
import json
import os
import socket
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, TypeVar

from zoo.errors import StoreLockedError

_held: dict[str, list] = {}  # lock path -> [FileLock, depth] of the locks this process holds
_guard = threading.Lock()


def lock_paths(store: str | os.PathLike) -> tuple[Path, Path]:
    """``(lock file, holder file)`` of a local store path: hidden files beside the store."""
    store = Path(store).absolute()
    return store.with_name(f".{store.name}.lock"), store.with_name(f".{store.name}.lock.json")


def holder(store: str | os.PathLike) -> dict | None:
    """Who holds (or last held) the writer lock of ``store``: ``{pid, host, command, since}``, or None."""
    try:
        info = json.loads(lock_paths(store)[1].read_text())
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) else None


def _describe(info: dict | None) -> str:
    if not info:
        return "another process (it has not written its details yet)"
    since = info.get("since")
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(since)) if isinstance(since, (int, float)) else "?"
    return f"pid {info.get('pid')} on {info.get('host')} ({info.get('command')!r}, since {when})"


@contextmanager
def store_lock(store: str | os.PathLike, *, wait: bool = False, command: str | None = None,
               seal: bool = True) -> Iterator[None]:
    """Hold the writer lock of the local store ``store`` for the ``with`` block.

    If another process holds it, raise :class:`~zoo.errors.StoreLockedError` naming the holder, or with
    ``wait`` say so on stderr and block until it is free. ``command`` describes this writer in the
    holder file (default: this process's command line). When the outermost block of this process ends
    without an error and ``seal``, a complete store is consolidated (:meth:`zoo.store.Zoo.consolidate`)
    before the lock is released. URLs (read-only stores) need no lock.
    """
    if "://" in str(store):
        yield
        return
    from filelock import FileLock, Timeout

    path, info_path = lock_paths(store)
    key = str(path)
    with _guard:
        entry = _held.get(key)
        if entry is not None:
            entry[1] += 1
    if entry is not None:  # this process holds it already
        try:
            yield
        finally:
            with _guard:
                entry[1] -= 1
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(path), thread_local=False)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        if not wait:
            raise StoreLockedError(f"{Path(store)} is being written by {_describe(holder(store))}; a store has one "
                                   "writer at a time. Wait for it to finish, or rerun with --wait to start when it "
                                   "does (reading the store with zoo.open works meanwhile)") from None
        print(f"weightzoo: {Path(store)} is being written by {_describe(holder(store))}; waiting for it to finish",
              file=sys.stderr)
        lock.acquire()
    argv = " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]) if sys.argv else "python"
    info = {"pid": os.getpid(), "host": socket.gethostname(), "command": command or argv, "since": time.time()}
    try:
        info_path.write_text(json.dumps(info))
    except OSError:
        pass  # the lock holds without its description
    with _guard:
        _held[key] = [lock, 1]
    try:
        yield
        if seal:
            from zoo.store import seal_if_complete

            seal_if_complete(store)  # the writer is done: consolidate a complete store for its readers
    finally:
        with _guard:
            del _held[key]
        info_path.unlink(missing_ok=True)
        lock.release()


F = TypeVar("F", bound=Callable[..., Any])


def locks_store(param: str) -> Callable[[F], F]:
    """Decorator: every call holds :func:`store_lock` on the store given by argument ``param`` (a path, or
    an object with a ``path``, such as a :class:`~zoo.store.Zoo`); a ``wait`` argument of the call, if
    the function has one, is passed on."""
    def decorate(fn: F) -> F:
        signature = inspect.signature(fn)

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            bound = signature.bind(*args, **kwargs)
            bound.apply_defaults()
            target = bound.arguments[param]
            with store_lock(getattr(target, "path", target), wait=bool(bound.arguments.get("wait", False))):
                return fn(*args, **kwargs)
        return wrapper  # type: ignore[return-value]
    return decorate
