import numpy as np
import pandas as pd
import pytest

from zoo.errors import ZooError
from zoo.splits import assign_split, ood_split, split_ids


def _models(n=2000):
    ids = np.arange(n)
    return pd.DataFrame({"model_id": ids, "grid_load": ids % 5, "grid_temperature": (ids // 5) % 4,
                         "grid_cell": (ids % 5) * 4 + (ids // 5) % 4})


def test_deterministic_order_free_and_proportional():
    m = _models()
    a = assign_split(m, seed=1)
    shuffled = m.sample(frac=1.0, random_state=0)
    b = pd.Series(assign_split(shuffled, seed=1), index=shuffled["model_id"]).sort_index().to_numpy()
    np.testing.assert_array_equal(a, b)
    frac = np.bincount(a, minlength=3) / len(a)
    np.testing.assert_allclose(frac, [0.7, 0.15, 0.15], atol=0.04)
    assert (assign_split(m, seed=2) != a).any()


def test_adding_models_never_moves_existing_ones():
    small, big = _models(100), _models(300)
    np.testing.assert_array_equal(assign_split(small), assign_split(big)[:100])


def test_group_by_keeps_cells_together():
    m = _models()
    codes = assign_split(m, group_by=("grid_load", "grid_temperature"))
    per_cell = pd.Series(codes).groupby(m["grid_cell"]).nunique()
    assert (per_cell == 1).all()


def test_ood_holds_out_exactly_the_cells():
    m = _models(200)
    codes = ood_split(m, holdout=[{"grid_load": 1, "grid_temperature": 2}])
    held = (m["grid_load"] == 1) & (m["grid_temperature"] == 2)
    assert (codes[held] == 2).all() and (codes[~held] != 2).all()
    frac = ood_split(m, holdout_fraction=0.25)
    assert pd.Series(frac == 2).groupby(m["grid_cell"]).nunique().max() == 1
    assert len(set(m["grid_cell"][frac == 2])) == 5
    assert split_ids(m, codes, "test").tolist() == sorted(m["model_id"][held].tolist())


@pytest.mark.parametrize("kwargs,match", [
    ({"holdout": [{"grid_load": 99, "grid_temperature": 0}]}, "matches no model"),
    ({"holdout": [{"colour": 1}]}, "colour"),
    ({}, "exactly one"),
])
def test_ood_errors(kwargs, match):
    with pytest.raises(ZooError, match=match):
        ood_split(_models(50), **kwargs)


def test_bad_fractions_and_columns():
    with pytest.raises(ZooError, match="fractions"):
        assign_split(_models(10), fractions=(0.5, 0.6, 0.1))
    with pytest.raises(ZooError, match="unknown column"):
        assign_split(_models(10), group_by="colour")
