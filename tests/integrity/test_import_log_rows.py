"""Item 6: importers index log rows by their own iteration / epoch field, not by row order: rows out of
order land at their epoch, a repeated iteration (a trial restored from a checkpoint re-runs some) keeps
its last occurrence with a warning, a skipped one is an error naming the file."""

import json

import numpy as np
import pandas as pd
import pytest
import torch

import zoo
from zoo.errors import ZooError
from zoo.importers import import_public
from zoo.importers.build import DuplicateRowsWarning

EPOCHS = [0, 1, 2, 3]

def _line(iteration: int, value: float) -> dict:
    return {"train_loss": value, "test_acc": value / 10, "training_iteration": iteration, "trial_id": "t0",
            "done": False}

def _trial(root, name: str, lines: list[dict]) -> None:
    d = root / name
    d.mkdir(parents=True)
    (d / "params.json").write_text(json.dumps({"model::type": "MLP", "model::i_dim": 6, "model::h_dim": [5],
                                               "model::o_dim": 3, "model::nlin": "leakyrelu", "seed": 1}))
    torch.manual_seed(0)
    net = zoo.build_architecture("mlp", (6,), 3, {"width": 5, "depth": 1, "activation": "leaky_relu"})
    for e in EPOCHS:
        (d / f"checkpoint_{e:06d}").mkdir()
        torch.save(net.state_dict(), d / f"checkpoint_{e:06d}" / "checkpoints")
    (d / "result.json").write_text("".join(json.dumps(line) + "\n" for line in lines))

def _metrics(z: zoo.Zoo) -> tuple[np.ndarray, np.ndarray]:
    return z.metric("train_loss"), z.curve("train_loss")

def test_result_rows_are_indexed_by_training_iteration(tmp_path):
    clean = [_line(i, float(i)) for i in range(1, 5)]  # iteration i = epoch i - 1, value i
    _trial(tmp_path / "a", "trial", clean)
    _trial(tmp_path / "b", "trial", [clean[2], clean[0], clean[3], clean[1]])  # shuffled lines
    rerun = [clean[0], clean[1], _line(3, 99.0), _line(2, 2.0), _line(3, 3.0), clean[3]]  # restored at 2
    _trial(tmp_path / "c", "trial", rerun)
    ref = import_public(tmp_path / "a", "modelzoos", tmp_path / "a.zarr", progress=False)
    np.testing.assert_array_equal(ref.metric("train_loss")[0], [1.0, 2.0, 3.0, 4.0])
    shuffled = import_public(tmp_path / "b", "modelzoos", tmp_path / "b.zarr", progress=False)
    with pytest.warns(DuplicateRowsWarning, match=r"result.json: training_iteration values \[2, 3\] appear more"):
        restored = import_public(tmp_path / "c", "modelzoos", tmp_path / "c.zarr", progress=False)
    for z in (shuffled, restored):
        for got, want in zip(_metrics(z), _metrics(ref)):
            np.testing.assert_array_equal(got, want)

def test_a_skipped_iteration_is_an_error_naming_the_file(tmp_path):
    _trial(tmp_path / "g", "trial", [_line(1, 1.0), _line(2, 2.0), _line(4, 4.0)])
    with pytest.raises(ZooError, match=r"trial/result.json: field 'training_iteration' skips the values \[3\]"):
        import_public(tmp_path / "g", "modelzoos", tmp_path / "g.zarr", progress=False)

def _release(d, rows):
    """A one-model Small CNN Zoo release; ``rows``: (epoch, seed of its weights, test accuracy)."""
    d.mkdir(parents=True)
    shapes = []
    c_in = 1
    for name in ("conv2d", "conv2d_1", "conv2d_2"):
        shapes += [(f"sequential/{name}/bias:0", (16,)), (f"sequential/{name}/kernel:0", (3, 3, c_in, 16))]
        c_in = 16
    shapes += [("sequential/dense/bias:0", (10,)), ("sequential/dense/kernel:0", (16, 10))]
    n = sum(int(np.prod(s)) for _, s in shapes)
    layout, start = [], 0
    for name, shape in shapes:
        size = int(np.prod(shape))
        layout.append({"varname": name, "start_idx": start, "end_idx": start + size, "shape": str(shape)})
        start += size
    pd.DataFrame(layout).to_csv(d / "layout.csv", index=False)
    np.save(d / "weights.npy", np.stack([np.random.default_rng(s).standard_normal(n) for _, s, _ in rows])
            .astype(np.float32))
    pd.DataFrame([{"config.dataset": "mnist", "config.activation": "relu", "modeldir": "/w/run_0",
                   "test_accuracy": acc} for _, _, acc in rows],
                 index=[f"/w/run_0/permanent_ckpt-{e}" for e, _, _ in rows]).to_csv(d / "metrics.csv")

def test_small_cnn_zoo_rows_repeating_an_epoch_keep_the_last(tmp_path):
    _release(tmp_path / "clean", [(0, 0, 0.1), (1, 1, 0.5), (86, 2, 0.9)])
    _release(tmp_path / "dup", [(0, 0, 0.1), (1, 7, 0.3), (1, 1, 0.5), (86, 2, 0.9)])
    ref = import_public(tmp_path / "clean", "smallcnnzoo", tmp_path / "clean.zarr", progress=False)
    with pytest.warns(DuplicateRowsWarning, match=r"metrics.csv: model '/w/run_0': epochs \[1\] have several rows"):
        dup = import_public(tmp_path / "dup", "smallcnnzoo", tmp_path / "dup.zarr", progress=False)
    np.testing.assert_array_equal(dup.metric("test_acc"), ref.metric("test_acc"))
    for c in range(3):
        assert torch.equal(dup.weights([0], c), ref.weights([0], c))
