"""Shared fixtures. Triton's interpreter must be chosen before triton is imported anywhere."""

from __future__ import annotations

import os

os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402
from helpers.specs import TINY_SPEC  # noqa: E402


@pytest.fixture(scope="session")
def tiny_spec() -> dict:
    return {k: (dict(v) if isinstance(v, dict) else v) for k, v in TINY_SPEC.items()}


@pytest.fixture(scope="session")
def tiny_zoo_path(tmp_path_factory):
    """A complete 8-model phase-grid store: 2 widths x 2 batch sizes x 2 seeds, 2 epochs."""
    from generators.driver import generate

    path = tmp_path_factory.mktemp("zoo") / "tiny.zarr"
    generate(TINY_SPEC, path, progress=False)
    return path


@pytest.fixture()
def tiny_zoo(tiny_zoo_path):
    import zoo

    return zoo.open(tiny_zoo_path)
