"""Asserting that two zoos hold the same models, bit for bit (resumed vs uninterrupted, Ray vs local)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

import zoo


def assert_same_models(a: zoo.Zoo, b: zoo.Zoo) -> None:
    """Bitwise equal weights (every checkpoint), metrics, curves, status and records (less wall time)."""
    assert a.architectures.keys() == b.architectures.keys()
    for key in a.architectures:
        ids = a.models.query("arch_key == @key")["model_id"].tolist()
        for c in range(len(a.checkpoint_epochs)):
            np.testing.assert_array_equal(a.weights(ids, c).numpy(), b.weights(ids, c).numpy())
    for name in a.metric_names:
        np.testing.assert_array_equal(a.metric(name), b.metric(name))
    np.testing.assert_array_equal(a.curve(), b.curve())
    np.testing.assert_array_equal(a.status_codes(), b.status_codes())
    pd.testing.assert_frame_equal(a.models.drop(columns="wall_time_s"), b.models.drop(columns="wall_time_s"),
                                  check_like=True)  # column order follows the key order of the spec file


def assert_same_zoo(a: zoo.Zoo, b: zoo.Zoo) -> None:
    """:func:`assert_same_models`, and the same splits and normalisation statistics."""
    assert_same_models(a, b)
    assert a.split_names == b.split_names
    for name in a.split_names:
        np.testing.assert_array_equal(a.split(name), b.split(name))
    assert json.dumps(a.meta.get("normalization"), sort_keys=True) == json.dumps(b.meta.get("normalization"),
                                                                                 sort_keys=True)
