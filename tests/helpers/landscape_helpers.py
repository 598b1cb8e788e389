"""Shared fixtures of the landscape tests."""

import pytest
import torch


@pytest.fixture(autouse=True)
def one_thread():
    """The landscape computations are many tiny kernels: intra-op threads only add synchronisation
    (and stalls on a loaded machine). ``compute_landscape`` does the same by default."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
