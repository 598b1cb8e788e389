"""Store → HDF5 / HF dataset / safetensors → store is exact, and the formats are readable on their own."""

import json

import h5py
import numpy as np
import pandas as pd
import pytest
import torch
from helpers.store_factory import make_rich_store
from safetensors import safe_open

import zoo
from zoo.errors import CorruptChunkError, ZooError
from zoo.importers import import_public
from zoo.interchange import FORMATS, diff_stores, export_zoo, import_zoo

OUT_NAMES = {"hdf5": "z.h5", "hf": "z_hf", "safetensors": "z_st"}


@pytest.fixture(scope="module")
def rich(tmp_path_factory):
    return make_rich_store(tmp_path_factory.mktemp("rich") / "rich.zarr")


@pytest.fixture(scope="module")
def round_trips(rich, tmp_path_factory):
    d = tmp_path_factory.mktemp("rt")
    out = {}
    for fmt in FORMATS:
        export_zoo(rich, fmt, d / OUT_NAMES[fmt], progress=False)
        out[fmt] = (d / OUT_NAMES[fmt], import_zoo(d / OUT_NAMES[fmt], fmt, d / f"{fmt}.zarr", progress=False))
    return out


@pytest.mark.parametrize("fmt", FORMATS)
def test_round_trip_is_identical(rich, round_trips, fmt):
    back = round_trips[fmt][1]
    assert diff_stores(rich, back) == []
    assert back.meta == rich.meta  # root attributes as dicts: spec, layouts, tasks, grid, splits, normalisation
    pd.testing.assert_frame_equal(back.models, rich.models)
    for key in rich.architectures:
        rows = rich.models.index[rich.models["arch_key"] == key].tolist()
        for c in range(len(rich.checkpoint_epochs)):
            a = rich.weights(rows, c, allow_incomplete=True)
            b = back.weights(rows, c, allow_incomplete=True)
            assert torch.equal(a.isnan(), b.isnan()) and torch.equal(a.nan_to_num(), b.nan_to_num())
    assert back.models.loc[2, "status"] == "diverged" and back.models.loc[5, "status"] == "failed"
    assert back.models.loc[7, "status"] == "pending" and back.models.loc[5, "error"] == "RuntimeError: boom ✗"
    assert torch.isinf(back.weights([2], allow_incomplete=True)).any()
    np.testing.assert_array_equal(back.landscape("alpha_layers"), rich.landscape("alpha_layers"))
    pd.testing.assert_frame_equal(back.pairs("mc_loss"), rich.pairs("mc_loss"))
    assert list(back.phases()) == list(rich.phases()) and back.info()["phase_counts"] == rich.info()["phase_counts"]
    np.testing.assert_array_equal(back.split("default"), rich.split("default"))
    np.testing.assert_array_equal(back.curve(), rich.curve())


def test_a_generated_zoo_round_trips(tiny_zoo, tmp_path):
    for fmt in FORMATS:
        export_zoo(tiny_zoo, fmt, tmp_path / OUT_NAMES[fmt], progress=False)
        back = import_zoo(tmp_path / OUT_NAMES[fmt], fmt, tmp_path / f"{fmt}.zarr", progress=False)
        assert diff_stores(tiny_zoo, back) == [], fmt
        x = torch.randn(2, 40)
        assert torch.equal(back.build_model(3)(x), tiny_zoo.build_model(3)(x))


def test_hdf5_layout_and_attributes(rich, round_trips):
    path = round_trips["hdf5"][0]
    with h5py.File(path, "r") as f:
        key = sorted(rich.architectures)[0]
        assert f[f"weights/{key}"].shape == rich.group[f"weights/{key}"].shape
        assert f[f"weights/{key}"].chunks == (1, 1, rich.layout(key).n_params) and f[f"weights/{key}"].fletcher32
        assert json.loads(f.attrs["weightzoo"]) == rich.meta
        assert json.loads(f["models/optimizer"].attrs["categories"]) == ["adam", "sgd"]
        assert json.loads(f["results/record"][5].decode())["error"] == "RuntimeError: boom ✗"


def test_hf_dataset_is_self_describing(rich, round_trips):
    import datasets

    ds = datasets.load_from_disk(str(round_trips["hf"][0]))
    n_ckpt = len(rich.checkpoint_epochs)
    assert len(ds) == rich.n_models * n_ckpt
    assert set(rich.models.columns) <= set(ds.column_names)
    row = ds[1 * n_ckpt + 2]  # model 1 at the last checkpoint
    assert row["model_id"] == 1 and row["epoch"] == rich.checkpoint_epochs[2]
    np.testing.assert_array_equal(np.asarray(row["weights"], dtype=np.float32), rich.weights([1], 2)[0].numpy())
    assert row["metrics/test_acc"] == pytest.approx(float(rich.metric("test_acc", [1])[0, 2]))
    assert row["optimizer"] == rich.models.loc[1, "optimizer"] and row["status"] == "ok"
    doc = json.loads(ds.info.description)
    assert doc["format"] == "weightzoo-hf" and doc["skeleton"]["nodes"][""]["attributes"]["weightzoo"] == rich.meta
    assert "pairs/mc_loss/value" in doc["zoo_arrays"]


def test_safetensors_files_follow_model_j(rich, round_trips):
    out = round_trips["safetensors"][0]
    key = rich.models.loc[1, "arch_key"]
    with safe_open(str(out / key / "model_000001.safetensors"), framework="pt") as f:
        header = f.metadata()
        last = rich.checkpoint_epochs[-1]
        state = {k.split("/", 1)[1]: f.get_tensor(k) for k in f.keys() if k.startswith(f"ckpt_{last}/")}
        assert f.get_tensor("results/status").item() == 1
    assert float(header["lr"]) == rich.models.loc[1, "lr"] and header["optimizer"] == rich.models.loc[1, "optimizer"]
    assert header["status"] == "ok" and header["split.default"] in ("train", "val", "test")
    assert json.loads(header["weightzoo.architecture"])["name"] == rich.architectures[key]["name"]
    net = rich.empty_model(1)
    net.load_state_dict(state)
    for name, p in net.named_parameters():
        assert torch.equal(p.detach(), rich.state_dict(1)[name])
    assert json.loads((out / "weightzoo.json").read_text())["format"] == "weightzoo-safetensors"


def test_interrupted_exports_never_look_complete_and_resume(rich, tmp_path, monkeypatch):
    import zoo.interchange.hdf5 as h5mod
    import zoo.interchange.safetensors_files as stmod

    calls = []
    real_save = stmod.save_file

    def flaky(tensors, path, metadata=None):
        calls.append(path)
        if len(calls) == 4:
            raise KeyboardInterrupt
        real_save(tensors, path, metadata=metadata)

    monkeypatch.setattr(stmod, "save_file", flaky)
    with pytest.raises(KeyboardInterrupt):
        export_zoo(rich, "safetensors", tmp_path / "st", progress=False)
    assert not (tmp_path / "st").exists()
    export_zoo(rich, "safetensors", tmp_path / "st", progress=False)  # resumes: 3 files were kept
    assert len(calls) == 4 + rich.n_models - 3
    assert diff_stores(rich, import_zoo(tmp_path / "st", "safetensors", tmp_path / "st.zarr", progress=False)) == []

    def broken(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(h5mod, "as_numpy", broken)
    with pytest.raises(KeyboardInterrupt):
        export_zoo(rich, "hdf5", tmp_path / "x.h5", progress=False)
    # nothing partial is left; the writer lock file of the import stays, as filelock's files do
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.endswith(".lock")) == ["st", "st.zarr"]


def test_bad_inputs_give_clear_errors(rich, round_trips, tmp_path):
    with pytest.raises(ZooError, match="already exists"):
        export_zoo(rich, "hdf5", round_trips["hdf5"][0], progress=False)
    with pytest.raises(ZooError, match="unknown interchange format 'csv'"):
        export_zoo(rich, "csv", tmp_path / "x", progress=False)
    with pytest.raises(ZooError, match=r"unknown public zoo importer 'csv'; choose from \['modelzoos', "):
        import_public(tmp_path, "csv", tmp_path / "y")
    with pytest.raises(ZooError, match="a directory, not an HDF5 file"):
        import_zoo(round_trips["safetensors"][0], "hdf5", tmp_path / "y", progress=False)
    with h5py.File(tmp_path / "plain.h5", "w") as f:
        f["x"] = np.zeros(3)
    with pytest.raises(ZooError, match=r"plain.h5: root attribute 'weightzoo_interchange' is not a 'weightzoo-hdf5'"):
        import_zoo(tmp_path / "plain.h5", "hdf5", tmp_path / "a.zarr", progress=False)
    st = tmp_path / "st"
    export_zoo(rich, "safetensors", st, progress=False)
    victim = st / rich.models.loc[4, "arch_key"] / "model_000004.safetensors"
    victim.unlink()
    with pytest.raises(ZooError, match=r"model_000004.safetensors: model file is missing"):
        import_zoo(st, "safetensors", tmp_path / "b.zarr", progress=False)
    with pytest.raises(ZooError, match=r"no weightzoo.json"):
        import_zoo(tmp_path, "safetensors", tmp_path / "c.zarr", progress=False)
    import datasets

    ds = datasets.load_from_disk(str(round_trips["hf"][0])).remove_columns(["results/record"])
    ds.info.description = datasets.load_from_disk(str(round_trips["hf"][0])).info.description
    ds.save_to_disk(str(tmp_path / "hf_bad"))
    with pytest.raises(ZooError, match=r"columns \['results/record'\] are missing"):
        import_zoo(tmp_path / "hf_bad", "hf", tmp_path / "d.zarr", progress=False)
    assert not any(p.name.endswith(".zarr") for p in tmp_path.iterdir())


def test_hdf5_reads_every_zarr_float_fill_value():
    from zoo.interchange.hdf5 import fill_value

    def fill(value, dtype):
        return fill_value({"fill_value": value}, np.dtype(dtype))

    assert np.isnan(fill("0x7fc00000", "float32")) and np.isnan(fill("NaN", "float64"))
    assert fill("0x3f800000", "float32") == 1.0 and fill("0xc000000000000000", "float64") == -2.0
    assert fill("-Infinity", "float32") == -np.inf and fill(0.5, "float16") == 0.5
    assert fill(["0x3f800000", "Infinity"], "complex64") == complex(1, np.inf)
    assert fill(3, "int8") == 3 and fill("x", object) is None
    with pytest.raises(ZooError, match="has 2 bytes, a float32 has 4"):
        fill("0x3c00", "float32")


def test_packed_store_reads_the_same_and_round_trips(rich, tmp_path):
    from zoo.rechunk import pack_weights

    with pytest.raises(ZooError, match="1 models are still pending"):
        pack_weights(rich.path, models_per_chunk=4, progress=False)
    z = make_rich_store(tmp_path / "p.zarr", n=6)
    assert z.status_counts()["pending"] == 0  # the pending model (id 7) is not among 6 models
    before = {k: z.group[f"weights/{k}"][...] for k in z.architectures}
    packed = pack_weights(z.path, models_per_chunk=4, progress=False)
    for k, values in before.items():
        arr = packed.group[f"weights/{k}"]
        assert arr.chunks == (min(4, arr.shape[0]), 1, arr.shape[2])
        np.testing.assert_array_equal(arr[...], values)
    mlp = packed.models.loc[1, "arch_key"]
    rows = packed.models.loc[[1, 2, 4], "arch_row"].tolist()
    torch.testing.assert_close(packed.weights([1, 2, 4]), torch.from_numpy(before[mlp][rows, -1]),
                               rtol=0, atol=0, equal_nan=True)
    export_zoo(packed, "hdf5", tmp_path / "p.h5", progress=False)
    back = import_zoo(tmp_path / "p.h5", "hdf5", tmp_path / "back.zarr", progress=False)
    assert diff_stores(packed, back) == []
    (tmp_path / "p.zarr" / "weights" / mlp / "c" / "0" / "2" / "0").unlink()  # chunk of models 1, 2, 4, 5
    with pytest.raises(CorruptChunkError, match=r"weights/.*/c/0/2/0' \(model 1, checkpoint 2\) is missing"):
        zoo.open(packed.path).weights([1])
