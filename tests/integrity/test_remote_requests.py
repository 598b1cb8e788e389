"""Item 14: opening a remote zoo and reading its models table costs a number of HTTP requests that does
not grow with the number of models (consolidated metadata, per-model arrays read whole from the
snapshot): <= 20 for a 10,000-model zoo. Stores without consolidation (format 1) still open and read."""

import json
import shutil

import numpy as np
import pandas as pd
import pytest
import zarr
from helpers.range_http_server import RangeHTTPServer

import zoo
from zoo.architectures import architecture_record
from zoo.format import ROOT_ATTR


def _big_store(path, n: int) -> zoo.Zoo:
    """A complete phase-grid-like store of ``n`` models (planned columns, status, records, metrics, a
    landscape metric and phase labels). Its per-model result arrays are chunked whole, as a packed store's
    may be, so that it is written in seconds; the consolidated reads do not depend on chunking."""
    key, arch = architecture_record("mlp", (40,), 10, {"width": 4, "depth": 1})
    rng = np.random.default_rng(0)
    models = pd.DataFrame({
        "model_id": np.arange(n), "arch_key": key, "task": "t", "architecture": "mlp", "width": 4, "depth": 1,
        "activation": "relu", "optimizer": rng.choice(["sgd", "adam"], n), "lr": rng.random(n),
        "batch_size": rng.choice([16, 32], n), "init_seed": np.arange(n), "data_seed": np.arange(n),
        "seed_index": np.arange(n) % 2, "grid_load": 4, "grid_temperature": 16, "grid_load_index": 0,
        "grid_temperature_index": 0, "grid_cell": np.arange(n) // 2, "parent_id": -1, "n_params": 206})
    z = zoo.create_zoo(path, models=models, architectures={key: arch}, tasks={"t": {"source": "mnist1d"}},
                       checkpoint_epochs=[0, 5], metric_names=["train_loss", "train_acc", "test_loss", "test_acc"],
                       n_epochs=5, attrs={"kind": "phase_grid", "name": "big"})
    root = zarr.open_group(str(path), mode="r+", zarr_format=3, use_consolidated=False)
    whole = {"results/status": np.ones(n, dtype=np.int8),
             "results/record": np.array([json.dumps({"wall_time_s": 0.5, "versions": {"torch": "x"}})] * n)}
    whole.update({f"metrics/{m}": rng.random((n, 2)).astype(np.float32) for m in z.metric_names})
    for name, values in whole.items():
        old = root[name]
        new = root.create_array(name, shape=old.shape, chunks=old.shape, dtype=old.dtype, overwrite=True,
                                fill_value=old.metadata.fill_value)
        new[...] = values
    z.declare_landscape("cka", {"test": True})
    root["landscape"].create_array("cka", shape=(n,), chunks=(n,), dtype="float32", overwrite=True)[...] = rng.random(n)
    z.write_phases(["I"] * n, {"name": "test", "version": 1, "labels": ["I", "II"]})
    assert z.consolidate()
    return zoo.open(path)


def test_a_10000_model_zoo_opens_and_reads_its_models_table_in_a_few_requests(tmp_path):
    local = _big_store(tmp_path / "served" / "big.zarr", 10_000)
    with RangeHTTPServer(tmp_path / "served") as server:
        remote = zoo.open(f"{server.url}/big.zarr")
        table = remote.models
        assert len(server.requests) <= 20, [r.path for r in server.requests]
        n_requests = len(server.requests)
        info = remote.info()
        counts = remote.status_counts()
    pd.testing.assert_frame_equal(table, zoo.open(local.path, mode="r+").models)  # the same table as read live
    assert n_requests <= 3 and info["n_models"] == 10_000 and counts["ok"] == 10_000


def test_the_count_does_not_grow_with_the_models_and_old_stores_still_open(tiny_zoo_path, tmp_path):
    root = tmp_path / "served"
    shutil.copytree(tiny_zoo_path, root / "sealed.zarr")
    shutil.copytree(tiny_zoo_path, root / "old.zarr")
    old = zoo.open(root / "old.zarr", mode="r+")
    old.unseal()  # as written before consolidation: no consolidated metadata, no snapshot, format 1
    doc = json.loads((root / "old.zarr" / "zarr.json").read_text())
    doc["attributes"][ROOT_ATTR]["format_version"] = 1
    (root / "old.zarr" / "zarr.json").write_text(json.dumps(doc))
    assert zoo.open(root / "sealed.zarr").consolidated()
    with RangeHTTPServer(root) as server:
        sealed = zoo.open(f"{server.url}/sealed.zarr").models
        n_sealed = len(server.requests)
        unsealed = zoo.open(f"{server.url}/old.zarr")
        assert unsealed.format_version == 1 and not unsealed.consolidated()
        table = unsealed.models
        n_old = len(server.requests) - n_sealed
    assert n_sealed <= 3 < n_old  # 8 models: the old layout already needs a request per chunk
    pd.testing.assert_frame_equal(sealed, table)


def test_any_write_unseals_and_the_next_command_seals_again(tiny_zoo_path, tmp_path):
    from weightzoo.cli import main

    path = tmp_path / "z.zarr"
    shutil.copytree(tiny_zoo_path, path)
    reader = zoo.open(path)
    assert reader.consolidated()
    z = zoo.open(path, mode="r+")
    z.write_split("extra", z.split("default"), {"rule": "copy"})
    after = zoo.open(path)
    assert not after.consolidated() and "extra" in after.split_names  # nobody reads a stale snapshot
    assert main(["phases", str(path)]) == 0  # a writing command ends by sealing the complete store
    sealed = zoo.open(path)
    assert sealed.consolidated() and "extra" in sealed.split_names and "phase" in sealed.models.columns
    with pytest.raises(zoo.ZooError, match="read-only"):
        reader.unseal()


def test_a_damaged_or_stale_snapshot_is_never_used(tiny_zoo_path, tmp_path):
    path = tmp_path / "z.zarr"
    shutil.copytree(tiny_zoo_path, path)
    truth = zoo.open(path, mode="r+").models  # writers read the arrays themselves
    chunk = path / "consolidated" / "c" / "0"
    data = bytearray(chunk.read_bytes())
    data[len(data) // 2] ^= 0xFF
    chunk.write_bytes(bytes(data))
    with pytest.warns(UserWarning, match="reading the per-model arrays themselves"):
        pd.testing.assert_frame_equal(zoo.open(path).models, truth)
