"""Deterministic, model-level splits of a zoo (a model's checkpoints always share its split).

Every model (or every group of models, with ``group_by``) gets a number ``u`` in ``[0, 1)`` from a
keyed hash, ``blake2b(f"{seed}:{key}")``, and its part is read off the cumulative fractions:
``u < f_train`` → train, ``u < f_train + f_val`` → val, otherwise test. The assignment of a model is
therefore a function of ``(seed, key)`` alone: row order does not matter, and adding models to a zoo
never moves the ones already there.

Keys are canonical strings: numpy scalars become Python scalars, floats with an integral value become
ints (so a grid value stored as ``4.0`` and written as ``4`` name the same cell), and the ``repr`` of
each value is joined with ``"|"``.
"""

from __future__ import annotations

import hashlib
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from zoo.errors import ZooError

SPLIT_CODES = {"train": 0, "val": 1, "test": 2}


def _canonical(value: Any) -> str:
    """Stable text of one scalar value (numpy scalars converted, integral floats as ints)."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return repr(value)


def hash_uniform(seed: int, key: str) -> float:
    """A uniform number in ``[0, 1)`` determined only by ``(seed, key)`` (64 bits of blake2b)."""
    digest = hashlib.blake2b(f"{seed}:{key}".encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") / float(2**64)


def _as_columns(columns: str | Sequence[str]) -> list[str]:
    return [columns] if isinstance(columns, str) else list(columns)


def _row_keys(models: pd.DataFrame, columns: Sequence[str], what: str) -> list[str]:
    """Canonical key ``[n_models]`` of each row from the values of ``columns``."""
    columns = list(columns)
    if not columns:
        raise ZooError(f"{what}: no columns given to build split keys from")
    missing = [c for c in columns if c not in models.columns]
    if missing:
        raise ZooError(f"{what}: unknown column(s) {missing}; the models table has {list(models.columns)}")
    return ["|".join(_canonical(v) for v in row) for row in models[columns].itertuples(index=False, name=None)]


def _uniforms(seed: int, keys: Sequence[str]) -> np.ndarray:
    """``[len(keys)]`` float64 hash uniforms (each distinct key hashed once)."""
    cache: dict[str, float] = {}
    return np.array([cache[k] if k in cache else cache.setdefault(k, hash_uniform(seed, k)) for k in keys],
                    dtype=np.float64)


def _check_fractions(fractions: Sequence[float]) -> np.ndarray:
    try:
        f = np.asarray(fractions, dtype=np.float64)
    except (TypeError, ValueError):
        raise ZooError(f"split fractions must be three numbers (train, val, test), got {fractions!r}") from None
    if f.shape != (3,):
        raise ZooError(f"split fractions must be three numbers (train, val, test), got {list(np.ravel(f))}")
    if not np.isfinite(f).all() or (f < 0).any():
        raise ZooError(f"split fractions must be non-negative, got {f.tolist()}")
    if abs(float(f.sum()) - 1.0) > 1e-6:
        raise ZooError(f"split fractions must sum to 1, got {f.tolist()} (sum {float(f.sum())})")
    return f


def assign_split(models: pd.DataFrame, *, seed: int = 0, fractions: Sequence[float] = (0.7, 0.15, 0.15),
                 group_by: str | Sequence[str] | None = None, id_column: str = "model_id") -> np.ndarray:
    """Split code of every model: int8 ``[n_models]`` (0 train, 1 val, 2 test) in the table's row order.

    Args:
        models: one row per model (extra rows of the same model, e.g. per checkpoint, get the same code).
        seed: selects a different, equally deterministic split.
        fractions: ``(train, val, test)`` shares, non-negative and summing to 1.
        group_by: column(s) whose values form the hashing key instead of ``id_column``, keeping every
            model of a group in the same part (``("grid_load", "grid_temperature")``: whole grid cells).
        id_column: the model id column used when ``group_by`` is None.
    """
    f = _check_fractions(fractions)
    columns = [id_column] if group_by is None else _as_columns(group_by)
    u = _uniforms(seed, _row_keys(models, columns, "assign_split"))
    edges = np.cumsum(f)
    codes = np.full(len(u), SPLIT_CODES["test"], dtype=np.int8)
    codes[u < edges[1]] = SPLIT_CODES["val"]
    codes[u < edges[0]] = SPLIT_CODES["train"]
    return codes


def ood_split(models: pd.DataFrame, *, holdout: Sequence[Mapping[str, Any]] | None = None,
              holdout_fraction: float | None = None, columns: Sequence[str] = ("grid_load", "grid_temperature"),
              seed: int = 0, val_fraction: float = 0.15, id_column: str = "model_id") -> np.ndarray:
    """Out-of-distribution split: int8 codes ``[n_models]``; held-out grid cells are test (2).

    A cell is the tuple of values of ``columns``. Give exactly one of ``holdout`` (cells as
    ``{column: value}`` dicts naming every column) or ``holdout_fraction`` (that share of the distinct
    cells, at least one, chosen as the cells with the smallest seeded hash of their key). The other
    models are val (1) when the seeded hash of their id is below ``val_fraction``, else train (0).
    """
    if (holdout is None) == (holdout_fraction is None):
        raise ZooError("ood_split: give exactly one of holdout= (a list of cells) or holdout_fraction=")
    columns = _as_columns(columns)
    if not 0.0 <= float(val_fraction) < 1.0:
        raise ZooError(f"ood_split: val_fraction must be in [0, 1), got {val_fraction}")
    cell_keys = np.array(_row_keys(models, columns, "ood_split"), dtype=object)
    present = set(cell_keys.tolist())
    if holdout is not None:
        if isinstance(holdout, Mapping):
            raise ZooError("ood_split: holdout must be a list of cells ({column: value} dicts), got one dict")
        if len(holdout) == 0:
            raise ZooError("ood_split: holdout is empty; name at least one cell to hold out")
        held: set[str] = set()
        for cell in holdout:
            unknown = sorted(set(cell) - set(columns))
            if unknown:
                raise ZooError(f"ood_split: held-out cell {dict(cell)} uses column(s) {unknown} "
                               f"that are not among the cell columns {columns}")
            absent = [c for c in columns if c not in cell]
            if absent:
                raise ZooError(f"ood_split: held-out cell {dict(cell)} lacks column(s) {absent}")
            key = "|".join(_canonical(cell[c]) for c in columns)
            if key not in present:
                raise ZooError(f"ood_split: held-out cell {dict(cell)} matches no model")
            held.add(key)
    else:
        frac = float(holdout_fraction)
        if not 0.0 < frac < 1.0:
            raise ZooError(f"ood_split: holdout_fraction must be in (0, 1), got {holdout_fraction}")
        distinct = sorted(present, key=lambda k: (hash_uniform(seed, "cell:" + k), k))
        n_held = min(len(distinct), max(1, int(round(frac * len(distinct)))))
        held = set(distinct[:n_held])
    u = _uniforms(seed, _row_keys(models, [id_column], "ood_split"))
    codes = np.where(u < float(val_fraction), SPLIT_CODES["val"], SPLIT_CODES["train"]).astype(np.int8)
    codes[np.array([k in held for k in cell_keys.tolist()], dtype=bool)] = SPLIT_CODES["test"]
    return codes


def ids_in_split(models: pd.DataFrame, codes: np.ndarray, split: str, id_column: str = "model_id") -> np.ndarray:
    """Sorted ids ``[n_in_split]`` of the models whose code in ``codes [n_models]`` is ``split``."""
    if split not in SPLIT_CODES:
        raise ZooError(f"split must be one of {list(SPLIT_CODES)}, got {split!r}")
    if id_column not in models.columns:
        raise ZooError(f"ids_in_split: unknown column {id_column!r}; the models table has {list(models.columns)}")
    codes = np.asarray(codes)
    if codes.shape != (len(models),):
        raise ZooError(f"ids_in_split: codes have shape {list(codes.shape)}, expected [{len(models)}] (one per row)")
    return np.sort(models[id_column].to_numpy()[codes == SPLIT_CODES[split]])
