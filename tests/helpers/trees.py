"""The shipped ``tree_quick`` model tree (2 MLP bases x 6 children, seconds to generate; landscape
metrics off), generated once per test session and shared by every test that needs a real tree."""

from __future__ import annotations

import atexit
import contextlib
import functools
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

import torch
import yaml


@functools.lru_cache(maxsize=None)
def tree_quick_path() -> Path:
    from generators import generate
    from generators.spec import resolve_spec_path

    folder = Path(tempfile.mkdtemp(prefix="wz-tree-quick-"))
    atexit.register(shutil.rmtree, folder, True)
    spec = yaml.safe_load(resolve_spec_path("tree_quick").read_text())
    spec["landscape"] = False
    generate(spec, folder / "tree_quick.zarr", progress=False)
    return folder / "tree_quick.zarr"


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """One torch intra-op thread for the block (tiny models on a shared 2-core machine), restored after."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)
