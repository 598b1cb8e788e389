import numpy as np
import pandas as pd
import pytest

from zoo.errors import ZooError
from zoo.splits import SPLIT_CODES, assign_split, hash_uniform, ids_in_split, ood_split


def _models(n: int = 2000) -> pd.DataFrame:
    ids = np.arange(n)
    return pd.DataFrame({"model_id": ids, "grid_load": ids % 5, "grid_temperature": (ids // 5) % 4,
                         "grid_cell": (ids % 5) * 4 + (ids // 5) % 4})


def _by_id(models: pd.DataFrame, codes: np.ndarray) -> pd.Series:
    return pd.Series(codes, index=models["model_id"].to_numpy()).sort_index()


def test_hash_uniform_is_deterministic_and_in_range():
    values = [hash_uniform(3, f"k{i}") for i in range(500)]
    assert values == [hash_uniform(3, f"k{i}") for i in range(500)]
    assert all(0.0 <= v < 1.0 for v in values)
    assert hash_uniform(3, "k0") != hash_uniform(4, "k0")


def test_assign_split_is_deterministic_and_int8():
    m = _models()
    a = assign_split(m, seed=1)
    assert a.dtype == np.int8 and a.shape == (len(m),)
    assert set(np.unique(a)) == {0, 1, 2}
    np.testing.assert_array_equal(a, assign_split(m, seed=1))


def test_row_order_does_not_matter():
    m = _models()
    a = _by_id(m, assign_split(m, seed=5))
    shuffled = m.sample(frac=1.0, random_state=0).reset_index(drop=True)
    b = _by_id(shuffled, assign_split(shuffled, seed=5))
    pd.testing.assert_series_equal(a, b)


def test_proportions_on_2000_models():
    codes = assign_split(_models(2000), seed=0)
    frac = np.bincount(codes, minlength=3) / len(codes)
    np.testing.assert_allclose(frac, [0.7, 0.15, 0.15], atol=0.035)
    codes = assign_split(_models(2000), seed=0, fractions=(0.5, 0.0, 0.5))
    assert (codes != 1).all()
    assert abs((codes == 0).mean() - 0.5) < 0.04


def test_different_seeds_give_different_splits():
    m = _models()
    a, b = assign_split(m, seed=0), assign_split(m, seed=1)
    assert (a != b).mean() > 0.2


def test_adding_models_never_moves_existing_ones():
    small, big = _models(100), _models(300)
    np.testing.assert_array_equal(assign_split(small, seed=2), assign_split(big, seed=2)[:100])
    np.testing.assert_array_equal(ood_split(small, holdout=[{"grid_load": 0, "grid_temperature": 1}]),
                                  ood_split(big, holdout=[{"grid_load": 0, "grid_temperature": 1}])[:100])


def test_numpy_and_python_scalars_give_the_same_key():
    ints = pd.DataFrame({"model_id": np.arange(50, dtype=np.int64)})
    floats = pd.DataFrame({"model_id": np.arange(50, dtype=np.float64)})
    np.testing.assert_array_equal(assign_split(ints, seed=3), assign_split(floats, seed=3))
    strings = pd.DataFrame({"model_id": [f"m{i}" for i in range(50)]})
    assert assign_split(strings, seed=3).shape == (50,)


def test_group_by_keeps_groups_together():
    m = _models()
    codes = assign_split(m, seed=4, group_by=("grid_load", "grid_temperature"))
    per_cell = pd.Series(codes).groupby(m["grid_cell"]).nunique()
    assert (per_cell == 1).all()
    assert len(set(codes.tolist())) > 1  # 20 cells are not all in one part
    single = assign_split(m, seed=4, group_by="grid_cell")
    assert (pd.Series(single).groupby(m["grid_cell"]).nunique() == 1).all()


def test_ood_holds_out_exactly_the_requested_cells():
    m = _models(400)
    cells = [{"grid_load": 1, "grid_temperature": 2}, {"grid_load": np.int64(3), "grid_temperature": 0}]
    codes = ood_split(m, holdout=cells, seed=0, val_fraction=0.2)
    held = ((m["grid_load"] == 1) & (m["grid_temperature"] == 2)) | ((m["grid_load"] == 3) & (m["grid_temperature"] == 0))
    assert (codes[held.to_numpy()] == 2).all()
    assert (codes[~held.to_numpy()] != 2).all()
    rest = codes[~held.to_numpy()]
    assert 0.1 < (rest == 1).mean() < 0.3
    assert ids_in_split(m, codes, "test").tolist() == sorted(m["model_id"][held].tolist())


def test_ood_holdout_fraction_picks_whole_cells_deterministically():
    m = _models(400)
    codes = ood_split(m, holdout_fraction=0.25, seed=7)
    test_cells = set(m["grid_cell"][codes == 2])
    assert len(test_cells) == 5  # a quarter of 20 cells
    assert (pd.Series(codes == 2).groupby(m["grid_cell"]).nunique() == 1).all()
    np.testing.assert_array_equal(codes, ood_split(m, holdout_fraction=0.25, seed=7))
    others = [set(m["grid_cell"][ood_split(m, holdout_fraction=0.25, seed=s) == 2]) for s in range(8, 12)]
    assert any(c != test_cells for c in others)


def test_split_ids_partition_and_sorted():
    m = _models(300).sample(frac=1.0, random_state=1)
    codes = assign_split(m, seed=0)
    parts = [ids_in_split(m, codes, s) for s in SPLIT_CODES]
    for p in parts:
        assert (np.diff(p) > 0).all()
    assert sorted(np.concatenate(parts).tolist()) == list(range(300))
    with pytest.raises(ZooError, match="split must be one of"):
        ids_in_split(m, codes, "holdout")
    with pytest.raises(ZooError, match="one per row"):
        ids_in_split(m, codes[:10], "train")


@pytest.mark.parametrize("fractions,match", [
    ((0.5, 0.6, 0.1), "sum to 1"),
    ((0.7, 0.3), "three numbers"),
    ((1.2, -0.1, -0.1), "non-negative"),
])
def test_bad_fractions(fractions, match):
    with pytest.raises(ZooError, match=match):
        assign_split(_models(10), fractions=fractions)


def test_unknown_columns():
    with pytest.raises(ZooError, match="unknown column.*colour"):
        assign_split(_models(10), group_by="colour")
    with pytest.raises(ZooError, match="unknown column.*id"):
        assign_split(_models(10), id_column="id")
    with pytest.raises(ZooError, match="unknown column.*colour"):
        ood_split(_models(10), holdout_fraction=0.5, columns=("grid_load", "colour"))


@pytest.mark.parametrize("kwargs,match", [
    ({"holdout": [{"grid_load": 99, "grid_temperature": 0}]}, "matches no model"),
    ({"holdout": [{"colour": 1}]}, "colour"),
    ({"holdout": [{"grid_load": 1}]}, "lacks column"),
    ({"holdout": []}, "empty"),
    ({}, "exactly one"),
    ({"holdout": [{"grid_load": 1, "grid_temperature": 0}], "holdout_fraction": 0.2}, "exactly one"),
    ({"holdout_fraction": 1.5}, "holdout_fraction"),
    ({"holdout_fraction": 0.2, "val_fraction": 1.0}, "val_fraction"),
])
def test_ood_errors(kwargs, match):
    with pytest.raises(ZooError, match=match):
        ood_split(_models(50), **kwargs)
