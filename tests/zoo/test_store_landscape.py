"""Store API for landscape metrics, pair metrics, phase labels and task vectors."""

import shutil

import numpy as np
import pandas as pd
import pytest
import torch

import zoo
from zoo.errors import ZooError


@pytest.fixture()
def writable_zoo(tiny_zoo_path, tmp_path):
    path = tmp_path / "copy.zarr"
    shutil.copytree(tiny_zoo_path, path)
    return zoo.open(path, mode="r+")


def test_landscape_metric_round_trip_with_settings(writable_zoo):
    z = writable_zoo
    z.declare_landscape("hessian_trace_train", {"n_samples": 64, "iters": 10, "seed": 0}, checkpoint=-1,
                        description="Hutchinson trace")
    z.write_landscape("hessian_trace_train", [3, 1], np.array([2.5, -1.0]))
    values = z.landscape("hessian_trace_train")
    assert values.shape == (8,) and values[3] == 2.5 and values[1] == -1.0 and np.isnan(values[0])
    info = z.landscape_settings("hessian_trace_train")
    assert info["settings"]["iters"] == 10 and info["checkpoint_epoch"] == z.checkpoint_epochs[-1]
    assert "hessian_trace_train" in z.models.columns
    assert zoo.open(z.path).info()["landscape"]["hessian_trace_train"]["checkpoint_epoch"] == 2
    # same settings: values are kept; new settings: the array starts over
    z.declare_landscape("hessian_trace_train", {"n_samples": 64, "iters": 10, "seed": 0}, description="Hutchinson trace")
    assert z.landscape("hessian_trace_train")[3] == 2.5
    z.declare_landscape("hessian_trace_train", {"n_samples": 32, "iters": 10, "seed": 0})
    assert np.isnan(z.landscape("hessian_trace_train")).all()


def test_vector_valued_landscape_metric_and_shape_errors(writable_zoo):
    z = writable_zoo
    z.declare_landscape("alpha_layers", {"fit": "mle"}, shape=(2,))
    z.write_landscape("alpha_layers", [0], np.array([[2.0, 3.0]]))
    assert z.landscape("alpha_layers", [0]).tolist() == [[2.0, 3.0]]
    assert "alpha_layers" not in z.models.columns  # only scalar metrics become columns
    with pytest.raises(ZooError, match=r"shape \[1, 3\], expected \[1, 2\]"):
        z.write_landscape("alpha_layers", [0], np.zeros((1, 3)))
    with pytest.raises(ZooError, match=r"no models \[8\]"):
        z.write_landscape("alpha_layers", [8], np.zeros((1, 2)))
    assert z.landscape("alpha_layers", [1, 0]).tolist()[1] == [2.0, 3.0]  # in the order asked for
    with pytest.raises(ZooError, match="no landscape metric 'nope'"):
        z.landscape("nope")


def test_pair_metric_round_trip(writable_zoo):
    z = writable_zoo
    z.write_pairs("mc_loss", [0, 2], [1, 3], np.array([0.1, -0.2]), {"curve": "bezier", "epochs": 2})
    df = z.pairs("mc_loss")
    assert isinstance(df, pd.DataFrame) and df["model_a"].tolist() == [0, 2] and df["value"].tolist() == pytest.approx([0.1, -0.2])
    z.write_pairs("mc_curve", [0], [1], np.array([[1.0, 2.0, 3.0]]), {"points": 3})
    assert list(z.pairs("mc_curve")["value"][0]) == [1.0, 2.0, 3.0]
    assert z.info()["pairs"] == ["mc_curve", "mc_loss"]
    with pytest.raises(ZooError, match="no models"):
        z.write_pairs("x", [0], [99], np.array([1.0]), {})


def test_phase_labels_and_counts(writable_zoo):
    z = writable_zoo
    with pytest.raises(ZooError, match="no phase labels"):
        z.phases()
    labels = ["I", "I", "II", None, "IV-A", "IV-A", "IV-A", "III"]
    rule = {"name": "yang2021", "version": 1, "labels": ["I", "II", "III", "IV-A", "IV-B"], "thresholds": {}}
    counts = z.write_phases(labels, rule)
    assert counts == {"I": 2, "II": 1, "III": 1, "IV-A": 3, "IV-B": 0, "unlabelled": 1}
    reopened = zoo.open(z.path)
    assert list(reopened.phases()) == labels and list(reopened.models["phase"]) == labels
    assert reopened.info()["phase_counts"] == counts and reopened.info()["phase_rule"] == {"name": "yang2021", "version": 1}
    with pytest.raises(ZooError, match=r"\['V'\] are not among"):
        z.write_phases(["V"] * 8, rule)


def test_task_vector_needs_a_parent(tiny_zoo):
    with pytest.raises(ZooError, match="has no parent"):
        tiny_zoo.task_vector(0)
    assert tiny_zoo.parent(0) is None


def test_read_only_store_refuses_landscape_writes(tiny_zoo):
    with pytest.raises(ZooError, match="read-only"):
        tiny_zoo.declare_landscape("x", {})
    assert isinstance(tiny_zoo.weights([0])[0], torch.Tensor)
