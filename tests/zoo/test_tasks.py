"""Task specs and task data: sources, determinism, class subsets, nested train fractions, standardisation."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from zoo import tasks
from zoo.errors import SpecError, UnknownNameError
from zoo.tasks import (
    TaskData,
    build_task,
    clear_task_cache,
    nested_subset,
    normalize_task_spec,
    register_task_source,
    task_hash,
    task_source_names,
)

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def mnist1d() -> TaskData:
    """The default MNIST-1D task, generated once (or read from the user's task cache)."""
    return build_task("mnist1d")


@pytest.fixture(scope="module")
def mnist1d_raw() -> TaskData:
    return build_task({"source": "mnist1d", "standardize": False})


@pytest.fixture()
def hf_cache(tmp_path, monkeypatch):
    """Keep ``datasets``' own Arrow cache inside the test's temporary directory."""
    import datasets.config

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf-cache")
    return tmp_path


def _rows(x: torch.Tensor) -> set[bytes]:
    return {row.tobytes() for row in x.numpy()}


# ------------------------------------------------------------------------------------------- specs
def test_sources_are_registered():
    assert {"mnist1d", "digits", "hf"} <= set(task_source_names())
    assert task_source_names() == sorted(task_source_names())


def test_normalize_fills_defaults_and_is_canonical():
    spec = normalize_task_spec("mnist1d")
    assert spec == {"source": "mnist1d", "n_samples": 5000, "seed": 42, "classes": None,
                    "train_fraction": 1.0, "subset_seed": 0, "standardize": True}
    assert list(spec) == sorted(spec)
    assert normalize_task_spec({}) == spec
    assert normalize_task_spec(spec) == spec  # a canonical spec is a fixed point
    assert json.loads(json.dumps(spec)) == spec
    odd = normalize_task_spec({"source": "digits", "classes": (np.int64(3), 1), "train_fraction": np.float32(0.5),
                               "test_fraction": 0.25, "split_seed": np.int64(2), "subset_seed": 4.0})
    assert odd["classes"] == [3, 1] and type(odd["classes"][0]) is int
    assert odd["train_fraction"] == 0.5 and type(odd["train_fraction"]) is float
    assert odd["split_seed"] == 2 and type(odd["split_seed"]) is int and odd["subset_seed"] == 4
    assert normalize_task_spec(odd) == odd
    assert json.loads(json.dumps(odd)) == odd


def test_task_hash_is_stable_and_distinguishes_specs():
    h = task_hash("mnist1d")
    assert len(h) == 10 and int(h, 16) >= 0
    assert task_hash({"source": "mnist1d", "seed": 42, "train_fraction": 1}) == h
    assert task_hash({"seed": 42, "n_samples": 5000}) == h
    assert task_hash({"source": "mnist1d", "seed": 43}) != h
    assert task_hash({"source": "mnist1d", "train_fraction": 0.5}) != h
    assert task_hash("digits") != h
    from zoo.format import short_hash

    assert h == short_hash(normalize_task_spec("mnist1d"))


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({"source": "mnist1d", "bogus": 1}, "task.bogus"),
        ({"source": "digits", "n_samples": 100}, "task.n_samples"),
        ({"train_fraction": 0}, "task.train_fraction"),
        ({"train_fraction": 1.5}, "task.train_fraction"),
        ({"train_fraction": -0.1}, "task.train_fraction"),
        ({"train_fraction": True}, "task.train_fraction"),
        ({"train_fraction": "half"}, "task.train_fraction"),
        ({"standardize": "yes"}, "task.standardize"),
        ({"subset_seed": -1}, "task.subset_seed"),
        ({"subset_seed": 0.5}, "task.subset_seed"),
        ({"classes": [3]}, "task.classes"),
        ({"classes": [1, 2, 1]}, "task.classes"),
        ({"classes": "12"}, "task.classes"),
        ({"classes": [1, "a"]}, "task.classes"),
        ({"n_samples": True}, "task.n_samples"),
        ({"n_samples": 5}, "task.n_samples"),
        ({"source": "digits", "test_fraction": 1.0}, "task.test_fraction"),
        ({"source": "hf"}, "task.name"),
        ({"source": "hf", "name": 3}, "task.name"),
        ({"source": "hf", "name": "x", "test_split": "train"}, "task.test_split"),
        ({"source": "hf", "name": "x", "input_column": []}, "task.input_column"),
    ],
)
def test_bad_specs_name_the_field(spec, field):
    with pytest.raises(SpecError, match=field.replace(".", r"\.")):
        normalize_task_spec(spec)


def test_unknown_source_lists_the_sources():
    with pytest.raises(UnknownNameError) as info:
        build_task({"source": "foo"})
    message = str(info.value)
    assert message.startswith("field 'task.source': unknown data source 'foo'")
    assert "mnist1d" in message and "digits" in message and "hf" in message
    assert isinstance(info.value, SpecError) and isinstance(info.value, KeyError)
    with pytest.raises(SpecError, match="field 'task': expected a mapping"):
        normalize_task_spec(3)  # type: ignore[arg-type]


# ----------------------------------------------------------------------------------------- mnist1d
def test_mnist1d_shapes_and_dtypes(mnist1d):
    assert mnist1d.x_train.shape == (4000, 40) and mnist1d.x_test.shape == (1000, 40)
    assert mnist1d.y_train.shape == (4000,) and mnist1d.y_test.shape == (1000,)
    assert mnist1d.x_train.dtype == torch.float32 and mnist1d.x_test.dtype == torch.float32
    assert mnist1d.y_train.dtype == torch.int64 and mnist1d.y_test.dtype == torch.int64
    assert mnist1d.n_classes == 10 and mnist1d.classes == tuple(range(10)) and mnist1d.input_shape == (40,)
    assert set(mnist1d.y_train.tolist()) == set(range(10))
    x, y = mnist1d.split("test")
    assert x is mnist1d.x_test and y is mnist1d.y_test
    assert mnist1d.split("train")[0] is mnist1d.x_train
    with pytest.raises(UnknownNameError, match="split: unknown task split 'val'"):
        mnist1d.split("val")


def test_mnist1d_builds_are_identical_and_independent(mnist1d):
    again = build_task({"source": "mnist1d", "seed": 42})
    for a, b in zip(mnist1d.split("train") + mnist1d.split("test"), again.split("train") + again.split("test")):
        assert torch.equal(a, b)
        assert a.data_ptr() != b.data_ptr()
    again.x_train.add_(1.0)  # callers may modify what they get; the next build is unaffected
    assert torch.equal(build_task("mnist1d").x_train, mnist1d.x_train)


def test_mnist1d_matches_the_package_and_keeps_global_rngs():
    from mnist1d.data import get_dataset_args, make_dataset

    np.random.seed(123)
    expected_draw = np.random.rand()
    np.random.seed(123)
    built = build_task({"source": "mnist1d", "n_samples": 200, "seed": 7, "standardize": False})
    assert np.random.rand() == expected_draw  # generation left the caller's RNG alone
    args = get_dataset_args()
    args.num_samples, args.seed = 200, 7
    ref = make_dataset(args)
    assert built.x_train.shape == (160, 40) and built.x_test.shape == (40, 40)
    np.testing.assert_array_equal(built.x_train.numpy(), ref["x"].astype(np.float32))
    np.testing.assert_array_equal(built.y_test.numpy(), ref["y_test"])
    other = build_task({"source": "mnist1d", "n_samples": 200, "seed": 8, "standardize": False})
    assert not torch.equal(other.x_train, built.x_train)


def test_mnist1d_disk_cache_is_written_atomically_and_reused(tmp_path, monkeypatch):
    monkeypatch.setenv("WEIGHTZOO_CACHE", str(tmp_path))
    assert tasks.task_cache_dir() == tmp_path / "tasks"
    spec = {"source": "mnist1d", "n_samples": 100, "seed": 3}
    clear_task_cache()
    first = build_task(spec)
    files = sorted(p.name for p in (tmp_path / "tasks").iterdir())
    assert len(files) == 1 and files[0].endswith("-n100-s3.npz")  # no temporary file left behind
    path = tmp_path / "tasks" / files[0]
    with np.load(path) as f:
        assert f["x"].shape == (80, 40) and f["y_test"].shape == (20,)
        stored = f["x"].copy()
    # a later process reads the file: simulate with a cleared in-process cache and a marked file
    with np.load(path) as f:
        arrays = {k: f[k] for k in f.files}
    arrays["x"] = arrays["x"] + 1.0
    np.savez(path, **arrays)
    clear_task_cache()
    from_disk = build_task({**spec, "standardize": False})
    np.testing.assert_allclose(from_disk.x_train.numpy(), (stored + 1.0).astype(np.float32))
    # a damaged file is regenerated and replaced
    path.write_bytes(b"not an npz file")
    clear_task_cache()
    rebuilt = build_task(spec)
    assert torch.equal(rebuilt.x_train, first.x_train)
    with np.load(path) as f:
        np.testing.assert_array_equal(f["x"], stored)
    clear_task_cache()


def test_build_is_identical_in_a_fresh_process(tmp_path):
    spec = {"source": "mnist1d", "n_samples": 300, "seed": 11, "classes": [4, 1, 9], "train_fraction": 0.5}
    code = (
        "import hashlib, json, sys\n"
        "from zoo.tasks import build_task\n"
        "d = build_task(json.loads(sys.argv[1]))\n"
        "h = hashlib.sha256()\n"
        "for t in (d.x_train, d.y_train, d.x_test, d.y_test): h.update(t.numpy().tobytes())\n"
        "print(h.hexdigest())\n"
    )
    env = {**os.environ, "WEIGHTZOO_CACHE": str(tmp_path)}  # the child generates from scratch
    out = subprocess.run([sys.executable, "-c", code, json.dumps(spec)], cwd=REPO, env=env, check=True,
                         capture_output=True, text=True).stdout.strip()
    import hashlib

    d = build_task(spec)
    h = hashlib.sha256()
    for t in (d.x_train, d.y_train, d.x_test, d.y_test):
        h.update(t.numpy().tobytes())
    assert out == h.hexdigest()


# ------------------------------------------------------------------------------------------ digits
def test_digits_shapes_scaling_and_stratified_split():
    raw = build_task({"source": "digits", "standardize": False})
    assert raw.x_train.shape == (1437, 1, 8, 8) and raw.x_test.shape == (360, 1, 8, 8)
    assert raw.input_shape == (1, 8, 8) and raw.n_classes == 10
    assert raw.x_train.dtype == torch.float32 and raw.y_train.dtype == torch.int64
    assert float(raw.x_train.min()) == 0.0 and float(raw.x_train.max()) == 1.0
    assert torch.all(torch.isin(raw.x_train * 16, torch.arange(17, dtype=torch.float32)))  # k/16 levels
    counts = torch.bincount(raw.y_test, minlength=10)
    assert int(counts.min()) >= 35 and int(counts.max()) <= 37  # stratified: ~36 per class
    assert torch.equal(build_task({"source": "digits", "standardize": False}).x_test, raw.x_test)
    reshuffled = build_task({"source": "digits", "split_seed": 1, "standardize": False})
    assert not torch.equal(reshuffled.y_test, raw.y_test)
    smaller = build_task({"source": "digits", "test_fraction": 0.5})
    assert smaller.x_test.shape[0] == 899 and smaller.x_train.shape[0] == 898


# ------------------------------------------------------------------------------- generic transforms
def test_class_subset_remaps_labels_in_listed_order():
    full = build_task({"source": "digits", "standardize": False})
    sub = build_task({"source": "digits", "classes": [7, 2, 5], "standardize": False})
    assert sub.n_classes == 3 and sub.classes == (7, 2, 5)
    assert set(sub.y_train.tolist()) == {0, 1, 2} and set(sub.y_test.tolist()) <= {0, 1, 2}
    for k, original in enumerate(sub.classes):
        for split in ("train", "test"):
            x_full, y_full = full.split(split)
            x_sub, y_sub = sub.split(split)
            assert torch.equal(x_sub[y_sub == k], x_full[y_full == original])  # same rows, same order
    assert sub.x_train.shape[0] == int(sum((full.y_train == c).sum() for c in (7, 2, 5)))


def test_class_subset_of_absent_classes_fails():
    with pytest.raises(SpecError, match=r"field 'task\.classes': class ids \[12\] do not occur"):
        build_task({"source": "digits", "classes": [1, 12]})


def test_train_fraction_is_nested_stratified_and_seeded(mnist1d_raw):
    small = build_task({"source": "mnist1d", "train_fraction": 0.25, "standardize": False})
    large = build_task({"source": "mnist1d", "train_fraction": 0.5, "standardize": False})
    assert small.x_train.shape[0] == 1000 and large.x_train.shape[0] == 2000
    assert _rows(small.x_train) < _rows(large.x_train) < _rows(mnist1d_raw.x_train)
    assert torch.equal(small.x_test, mnist1d_raw.x_test)  # the test set is never subsampled
    # kept examples stay in their original order, with their labels
    position = {row: i for i, row in enumerate(r.tobytes() for r in mnist1d_raw.x_train.numpy())}
    idx = [position[r.tobytes()] for r in small.x_train.numpy()]
    assert idx == sorted(idx)
    assert torch.equal(small.y_train, mnist1d_raw.y_train[idx])
    tiny = build_task({"source": "mnist1d", "train_fraction": 0.01, "standardize": False})
    assert tiny.x_train.shape[0] == 40
    assert torch.bincount(tiny.y_train, minlength=10).min() >= 3  # stratified: every class kept
    reseeded = build_task({"source": "mnist1d", "train_fraction": 0.25, "subset_seed": 1, "standardize": False})
    assert _rows(reseeded.x_train) != _rows(small.x_train)


def test_nested_subset_indices():
    labels = np.random.default_rng(0).integers(0, 4, size=501)
    previous = np.zeros(0, dtype=np.int64)
    for fraction in (0.01, 0.1, 0.3, 0.31, 0.7, 1.0):
        idx = nested_subset(labels, fraction, seed=5)
        assert np.all(np.diff(idx) > 0)
        assert set(previous.tolist()) <= set(idx.tolist())
        assert len(idx) == round(fraction * len(labels))
        assert set(labels[idx].tolist()) == {0, 1, 2, 3}
        for c in range(4):  # stratified: each class within one example of its share
            assert abs(np.sum(labels[idx] == c) - fraction * np.sum(labels == c)) <= 1
        previous = idx
    assert len(previous) == len(labels)
    first_four = nested_subset(labels, 4 / len(labels), seed=5)
    assert sorted(labels[first_four].tolist()) == [0, 1, 2, 3]  # the first n_classes: one of each
    np.testing.assert_array_equal(nested_subset(labels, 0.3, seed=5), nested_subset(labels, 0.3, seed=5))
    assert not np.array_equal(nested_subset(labels, 0.3, seed=5), nested_subset(labels, 0.3, seed=6))


def test_standardisation_uses_train_statistics_only():
    spec = {"source": "digits", "classes": [0, 1, 3], "train_fraction": 0.3}
    raw = build_task({**spec, "standardize": False})
    std = build_task(spec)
    assert abs(float(std.x_train.mean())) < 1e-5
    assert abs(float(std.x_train.std(unbiased=False)) - 1.0) < 1e-5
    x = raw.x_train.double()
    mean, sd = float(x.mean()), float(x.std(unbiased=False))
    np.testing.assert_allclose(std.x_test.numpy(), ((raw.x_test.double() - mean) / sd).numpy(), atol=1e-6)
    # with the full training set the statistics, and hence the test inputs, differ
    assert not torch.allclose(build_task({**spec, "train_fraction": 1.0}).x_test, std.x_test)
    assert abs(float(std.x_test.mean())) > 1e-4  # test statistics were not used


# ----------------------------------------------------------------------------------------------- hf
def _gray_images(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n, 28, 28), dtype=np.uint8)


def test_hf_save_to_disk_with_pil_images(hf_cache):
    import datasets
    from PIL import Image

    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(num_classes=3)})
    arrays = {"train": _gray_images(12, 0), "test": _gray_images(6, 1)}
    labels = {"train": [i % 3 for i in range(12)], "test": [2, 1, 0, 2, 1, 0]}
    dd = datasets.DatasetDict({
        split: datasets.Dataset.from_dict({"image": [Image.fromarray(a) for a in arrays[split]],
                                           "label": labels[split]}, features=features)
        for split in arrays
    })
    path = hf_cache / "gray"
    dd.save_to_disk(str(path))
    data = build_task({"source": "hf", "name": str(path), "standardize": False})
    assert data.x_train.shape == (12, 1, 28, 28) and data.x_test.shape == (6, 1, 28, 28)
    assert data.input_shape == (1, 28, 28) and data.n_classes == 3 and data.x_train.dtype == torch.float32
    np.testing.assert_allclose(data.x_train[:, 0].numpy(), arrays["train"] / 255.0, rtol=1e-6)
    assert data.y_test.tolist() == labels["test"]
    again = build_task({"source": "hf", "name": str(path)})
    assert abs(float(again.x_train.mean())) < 1e-5
    assert torch.equal(again.x_test, build_task({"source": "hf", "name": str(path)}).x_test)


def test_hf_rgb_images_are_channels_first(hf_cache):
    import datasets
    from PIL import Image

    rgb = np.random.default_rng(2).integers(0, 256, size=(8, 5, 7, 3), dtype=np.uint8)
    ds = datasets.Dataset.from_dict({"img": [Image.fromarray(a) for a in rgb], "label": [0, 1] * 4},
                                    features=datasets.Features({"img": datasets.Image(),
                                                                "label": datasets.Value("int64")}))
    dd = datasets.DatasetDict({"train": ds, "test": ds})
    dd.save_to_disk(str(hf_cache / "rgb"))
    data = build_task({"source": "hf", "name": str(hf_cache / "rgb"), "standardize": False})
    assert data.x_train.shape == (8, 3, 5, 7)
    np.testing.assert_allclose(data.x_train.numpy(), rgb.transpose(0, 3, 1, 2) / 255.0, rtol=1e-6)


def test_hf_missing_test_split_is_carved_deterministically(hf_cache):
    import datasets

    n = 50
    x = _gray_images(n, 3)
    ds = datasets.Dataset.from_dict({"x": x.tolist(), "label": [i % 5 for i in range(n)]})
    path = hf_cache / "single"
    ds.save_to_disk(str(path))  # a lone Dataset: its only split is "train"
    spec = {"source": "hf", "name": str(path), "standardize": False, "test_fraction": 0.2}
    data = build_task(spec)
    assert data.x_train.shape == (40, 28, 28) and data.x_test.shape == (10, 28, 28)  # lists stay as stored
    assert torch.bincount(data.y_test, minlength=5).tolist() == [2] * 5  # stratified
    all_rows = _rows(torch.from_numpy(x.astype(np.float32)))
    assert _rows(data.x_train) | _rows(data.x_test) == all_rows
    assert not _rows(data.x_train) & _rows(data.x_test)
    again = build_task(spec)
    assert torch.equal(again.x_test, data.x_test) and torch.equal(again.y_train, data.y_train)
    other = build_task({**spec, "split_seed": 1})
    assert _rows(other.x_test) != _rows(data.x_test)
    np.testing.assert_array_equal(data.x_train.numpy(), data.x_train.numpy().round())  # not rescaled


def test_hf_local_data_files_via_load_dataset(hf_cache):
    import pandas as pd

    rng = np.random.default_rng(4)
    parquet = hf_cache / "parquet"
    parquet.mkdir()
    frames = {s: pd.DataFrame({"features": [rng.normal(size=6).tolist() for _ in range(n)],
                               "label": rng.integers(0, 3, size=n)}) for s, n in (("train", 30), ("test", 9))}
    for split, frame in frames.items():
        frame.to_parquet(parquet / f"{split}.parquet")
    data = build_task({"source": "hf", "name": str(parquet), "standardize": False})
    assert data.x_train.shape == (30, 6) and data.x_test.shape == (9, 6)
    np.testing.assert_allclose(data.x_test.numpy(), np.array(frames["test"]["features"].tolist()), rtol=1e-6)
    assert data.y_train.tolist() == frames["train"]["label"].tolist()

    csv = hf_cache / "csv"
    csv.mkdir()
    table = pd.DataFrame({"a": rng.normal(size=20), "b": rng.normal(size=20), "target": [3, 7] * 10})
    table.to_csv(csv / "train.csv", index=False)
    spec = {"source": "hf", "name": str(csv), "input_column": ["a", "b"], "label_column": "target",
            "test_fraction": 0.25, "standardize": False}
    data = build_task(spec)
    assert data.x_train.shape == (15, 2) and data.x_test.shape == (5, 2)
    assert data.classes == (3, 7) and set(data.y_train.tolist()) == {0, 1}
    rows = {tuple(r) for r in table[["a", "b"]].to_numpy(np.float32).tolist()}
    assert {tuple(r) for r in data.x_test.tolist()} <= rows


def test_hf_errors_name_the_field_and_list_what_exists(hf_cache):
    import datasets

    ds = datasets.Dataset.from_dict({"pixels": [[0.0, 1.0], [1.0, 0.0], [0.5, 0.5], [0.2, 0.1]],
                                     "label": [0, 1, 0, 1], "name": ["a", "b", "c", "d"]})
    path = hf_cache / "errs"
    datasets.DatasetDict({"train": ds, "validation": ds}).save_to_disk(str(path))
    base = {"source": "hf", "name": str(path)}
    with pytest.raises(SpecError, match=r"field 'task\.input_column': dataset .* has none of the columns") as info:
        build_task(base)
    assert "'pixels'" in str(info.value)
    with pytest.raises(SpecError, match=r"field 'task\.input_column': .*no column 'pixel'.*'pixels'"):
        build_task({**base, "input_column": "pixel"})
    with pytest.raises(SpecError, match=r"field 'task\.label_column': .*no column 'y'.*'label'"):
        build_task({**base, "input_column": "pixels", "label_column": "y"})
    with pytest.raises(SpecError, match=r"field 'task\.train_split': .*no split 'fit'.*\['train', 'validation'\]"):
        build_task({**base, "input_column": "pixels", "train_split": "fit"})
    with pytest.raises(SpecError, match=r"field 'task\.test_split': .*no split 'val'.*\['train', 'validation'\]"):
        build_task({**base, "input_column": "pixels", "test_split": "val"})
    with pytest.raises(SpecError, match=r"field 'task\.input_column': column 'name' does not hold numbers"):
        build_task({**base, "input_column": "name"})
    with pytest.raises(SpecError, match=r"field 'task\.label_column': column 'name' holds"):
        build_task({**base, "input_column": "pixels", "label_column": "name"})
    with pytest.raises(SpecError, match=r"field 'task\.name': no local dataset"):
        build_task({"source": "hf", "name": str(hf_cache / "absent")})
    ok = build_task({**base, "input_column": "pixels", "test_split": "validation", "standardize": False})
    assert ok.x_test.shape == (4, 2) and torch.equal(ok.x_test, ok.x_train)


# --------------------------------------------------------------------------------------- registry
@pytest.fixture()
def user_sources():
    """Sources a test registers are unregistered after it."""
    before = set(tasks.task_source_names())
    yield
    for name in set(tasks.task_source_names()) - before:
        tasks.unregister_task_source(name)


def test_registered_user_source(user_sources):
    calls = []

    @register_task_source("toy", {"n": 40, "dim": 3})
    def toy(options: dict):
        calls.append(dict(options))
        g = torch.Generator().manual_seed(0)
        n, dim = options["n"], options["dim"]
        y = torch.arange(n) % 4 + 10
        return torch.randn(n, dim, generator=g), y, torch.randn(8, dim, generator=g), torch.arange(8) % 4 + 10

    assert "toy" in task_source_names()
    spec = normalize_task_spec({"source": "toy", "dim": 5})
    assert spec["n"] == 40 and spec["dim"] == 5 and spec["train_fraction"] == 1.0
    data = build_task({"source": "toy", "dim": 5, "classes": [13, 10]})
    assert calls == [{"source": "toy", "n": 40, "dim": 5}]  # only the source's own options
    assert data.input_shape == (5,) and data.classes == (13, 10) and data.x_train.shape == (20, 5)
    assert set(data.y_train.tolist()) == {0, 1}
    build_task({"source": "toy", "dim": 5, "train_fraction": 0.5})
    assert len(calls) == 1  # the loaded arrays are cached in-process
    with pytest.raises(SpecError, match=r"field 'task\.size': unknown option for source 'toy'"):
        normalize_task_spec({"source": "toy", "size": 3})

    @register_task_source("toy")
    def toy_again(options: dict):
        calls.append(dict(options))
        return np.zeros((4, 2)), np.array([0, 1, 0, 1]), np.ones((2, 2)), np.array([0, 1])

    # without defaults any JSON-able option is accepted; re-registering replaces the source
    data = build_task({"source": "toy", "anything": [1, 2], "standardize": False})
    assert calls[-1] == {"source": "toy", "anything": [1, 2]}
    assert data.x_test.shape == (2, 2) and float(data.x_test.sum()) == 4.0
    with pytest.raises(SpecError, match=r"field 'task\.anything': value .* is not JSON-serialisable"):
        normalize_task_spec({"source": "toy", "anything": object()})
    with pytest.raises(SpecError, match="task.classes"):
        register_task_source("clash", {"classes": None})


def test_a_source_returning_bad_arrays_is_reported(user_sources):

    @register_task_source("broken")
    def broken(options: dict):
        return np.zeros((4, 2)), np.array([0, 1, 0]), np.zeros((2, 2)), np.array([0, 1])

    with pytest.raises(SpecError, match=r"field 'task\.source': source 'broken' gave 4 train inputs"):
        build_task("broken")

    @register_task_source("broken")
    def mismatched(options: dict):
        return np.zeros((4, 2)), np.array([0, 1, 0, 1]), np.zeros((2, 3)), np.array([0, 1])

    with pytest.raises(SpecError, match=r"field 'task\.source': .*shape \(2,\) but test inputs of shape \(3,\)"):
        build_task("broken")
