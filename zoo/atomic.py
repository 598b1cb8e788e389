"""Atomic outputs: everything is written under a hidden temporary name beside the target, then renamed.

An interrupted export or import therefore never leaves something that looks complete under the
target name; the hidden ``.<name>.partial-*`` leftovers can be deleted at any time.
"""

from __future__ import annotations

import os
import shutil
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from zoo.errors import ZooError


def partial_path(out: Path, stable: bool = False) -> Path:
    """The temporary sibling of ``out``; ``stable`` names one that a rerun finds again (to resume)."""
    suffix = "partial" if stable else f"partial-{uuid.uuid4().hex[:8]}"
    return out.parent / f".{out.name}.{suffix}"


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists() or path.is_symlink():
        path.unlink(missing_ok=True)


@contextmanager
def atomic_output(out: str | os.PathLike, *, stable: bool = False, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary path to write ``out`` into; rename it to ``out`` when the block succeeds.

    On an exception the temporary path is removed, unless ``stable`` (then a rerun resumes from it).
    """
    out = Path(out)
    if out.exists() and not overwrite:
        raise ZooError(f"{out} already exists; choose another output path or remove it")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = partial_path(out, stable)
    try:
        yield tmp
        if not tmp.exists():
            raise ZooError(f"internal error: nothing was written to {tmp}")
        if out.exists() and overwrite:
            _remove(out)
        try:
            os.replace(tmp, out)
        except OSError as exc:
            if out.exists():  # another process wrote it meanwhile
                raise ZooError(f"{out} was created by another process while this one wrote it") from exc
            raise
    except BaseException:
        if not stable:
            _remove(tmp)
        raise
