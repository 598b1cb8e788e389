"""Shared fixtures of the landscape tests."""

import pytest

from helpers.trees import one_thread as single_thread


@pytest.fixture(autouse=True)
def one_thread():
    """The landscape computations are many tiny kernels: intra-op threads only add synchronisation
    (and stalls on a loaded machine). ``compute_landscape`` does the same by default."""
    with single_thread():
        yield
