"""Zoos shared by the weightnets tests: a tree with planted class subsets, a mixed-width grid and the
shipped tree_quick zoo."""

import pytest
from helpers.planted import mixed_store, planted_store
from helpers.trees import one_thread, tree_quick_path


@pytest.fixture(scope="module")
def planted_tree(tmp_path_factory):
    return planted_store(tmp_path_factory)


@pytest.fixture(scope="module")
def mixed_grid(tmp_path_factory):
    return mixed_store(tmp_path_factory)


@pytest.fixture(scope="session")
def tree_quick():
    with one_thread():
        return tree_quick_path()
