"""Item 1: a missing weights chunk of a complete model raises CorruptChunkError naming the chunk on every
read path (Zoo.weights, ZooDataset, ZooBatchLoader, the exporters, pack, pack-weights), never a NaN row."""

import shutil

import numpy as np
import pytest
from torch.utils.data import DataLoader

import zoo
from weightzoo.cli import main
from zoo.catalog import pack
from zoo.errors import CorruptChunkError
from zoo.interchange import export_zoo
from zoo.rechunk import pack_weights


@pytest.fixture()
def holed(tiny_zoo_path, tmp_path):
    """A copy of the tiny zoo with the final-checkpoint weights chunk of one ok model deleted."""
    path = tmp_path / "holed.zarr"
    shutil.copytree(tiny_zoo_path, path)
    z = zoo.open(path)
    mid = 3
    key, row = str(z.models.loc[mid, "arch_key"]), int(z.models.loc[mid, "arch_row"])
    assert z.models.loc[mid, "status"] == "ok"
    chunk = f"weights/{key}/c/{row}/2/0"
    (path / chunk).unlink()
    return path, key, mid, chunk


def _dataset(path, key):
    return zoo.ZooDataset(zoo.open(path), split="all", target="test_acc", arch=key)


def test_every_python_read_path_names_the_missing_chunk(holed):
    path, key, mid, chunk = holed
    z = zoo.open(path)
    with pytest.raises(CorruptChunkError, match=chunk):
        z.weights([mid])
    ds = _dataset(path, key)
    position = int(np.flatnonzero(ds.model_ids == mid)[0])
    with pytest.raises(CorruptChunkError, match=chunk):
        ds[position]
    with pytest.raises(CorruptChunkError, match=chunk):
        ds.flat(position)
    with pytest.raises(CorruptChunkError, match=chunk):
        list(DataLoader(ds, batch_size=2))
    for prefetch in (True, False):
        with pytest.raises(CorruptChunkError, match=chunk):
            list(zoo.ZooBatchLoader(ds, batch_size=2, prefetch=prefetch))
    other = [i for i in ds.model_ids if i != mid]  # the other models still read
    assert np.isfinite(z.weights(other).numpy()).all()


@pytest.mark.parametrize("fmt", ["hdf5", "hf", "safetensors"])
def test_exporters_refuse_and_leave_nothing(holed, tmp_path, fmt):
    path, _, _, chunk = holed
    out = tmp_path / f"out.{fmt}"
    with pytest.raises(CorruptChunkError, match=chunk):
        export_zoo(zoo.open(path), fmt, out, progress=False)
    assert not out.exists()


def test_pack_and_pack_weights_refuse(holed, tmp_path):
    path, _, _, chunk = holed
    with pytest.raises(CorruptChunkError, match=chunk):
        pack(path, tmp_path / "holed.zarr.zip", license="CC0-1.0", progress=False)
    assert not (tmp_path / "holed.zarr.zip").exists()
    with pytest.raises(CorruptChunkError, match=chunk):
        pack_weights(path, models_per_chunk=4, progress=False)
    assert zoo.open(path).weights_array(holed[1]).chunks[0] == 1  # nothing swapped in


def test_cli_exits_2_with_one_line(holed, tmp_path, capsys):
    path, _, _, chunk = holed
    for argv in (["export", str(path), "--format", "hf", "--out", str(tmp_path / "x"), "--quiet"],
                 ["pack", str(path), "--out", str(tmp_path / "x.zarr.zip"), "--license", "CC0-1.0", "--quiet"],
                 ["pack-weights", str(path), "--quiet"]):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and chunk in err[0] and "is missing" in err[0], err


def test_a_missing_chunk_of_a_failed_or_pending_model_is_not_an_error(tmp_path):
    from helpers.store_factory import make_rich_store

    z = make_rich_store(tmp_path / "rich.zarr")  # model 5 failed, model 7 pending: never written
    key = str(z.models.loc[5, "arch_key"])
    rows = z.models.loc[[5, 7], "arch_row"].tolist() if z.models.loc[7, "arch_key"] == key else [z.models.loc[5, "arch_row"]]
    values = z.read_weights(key, rows, 2)
    assert np.isnan(values).all()
