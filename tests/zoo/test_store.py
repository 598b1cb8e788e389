import json
import shutil

import numpy as np
import pandas as pd
import pytest
import torch

import zoo
from kernels.layout import ParamLayout
from zoo.architectures import architecture_record, build_architecture, layout_of
from zoo.errors import ArchitectureMismatchError, CorruptChunkError, FormatVersionError, NotAZooError, ZooError
from zoo.format import ROOT_ATTR, architecture_key


def _make_store(path, n=4, width=8, **create):
    key, arch = architecture_record("mlp", (40,), 10, {"width": width, "depth": 1})
    models = pd.DataFrame({"model_id": np.arange(n), "arch_key": key, "task": "t0", "lr": np.linspace(0.1, 0.4, n),
                           "optimizer": ["sgd", "adam"] * (n // 2)})
    z = zoo.create_zoo(path, models=models, architectures={key: arch}, tasks={"t0": {"source": "mnist1d"}},
                       checkpoint_epochs=[0, 5], metric_names=["test_acc"], n_epochs=5, **create)
    return z, ParamLayout.from_record(arch["layout"])


def test_architecture_record_matches_its_parts():
    cfg = {"width": 8, "depth": 1}
    key, arch = architecture_record("mlp", (40,), 10, cfg)
    module = build_architecture("mlp", (40,), 10, cfg)
    assert key == architecture_key("mlp", cfg, [40], 10)
    assert arch == {"name": "mlp", "config": cfg, "input_shape": [40], "n_classes": 10,
                    "layout": layout_of(module).to_record()}
    assert arch["config"] is not cfg  # a copy: the caller's dict is not shared with the store's record


def test_extra_curves_are_written_through_the_store_api(tmp_path):
    z, lay = _make_store(tmp_path / "z.zarr", curve_names=["test_acc", "lr"])
    assert sorted(z.group["curves"].array_keys()) == ["lr", "test_acc", "train_loss"]  # train_loss always
    assert z.group["curves/lr"].shape == z.group["curves/train_loss"].shape == (4, 5)
    z.write_model(0, weights=torch.randn(2, lay.n_params), metrics={}, status="ok", record={},
                  curve=np.arange(5), curves={"test_acc": np.linspace(0, 1, 5)})
    z.write_model(1, weights=None, metrics={}, status="failed", record={},
                  curves={"train_loss": np.ones(5), "lr": np.full(5, 0.1)})
    np.testing.assert_allclose(z.curve()[0], np.arange(5))
    np.testing.assert_allclose(z.curve("test_acc")[0], np.linspace(0, 1, 5))
    np.testing.assert_allclose(z.curve()[1], np.ones(5))
    np.testing.assert_allclose(z.curve("lr")[1], np.full(5, 0.1), rtol=1e-6)
    assert np.isnan(z.curve("lr")[0]).all() and np.isnan(z.curve("test_acc")[1]).all()
    with pytest.raises(ZooError, match=r"unknown curve 'val_loss' \(store has curves \['lr', 'test_acc', 'train_loss'\]"):
        z.write_model(2, weights=None, metrics={}, status="failed", record={}, curves={"val_loss": np.ones(5)})
    with pytest.raises(ZooError, match="either as curve= or in curves="):
        z.write_model(2, weights=None, metrics={}, status="failed", record={}, curve=np.ones(5),
                      curves={"train_loss": np.ones(5)})
    with pytest.raises(ZooError, match=r"curve 'lr' has shape \[3\], the store's curves/lr holds \[5\]"):
        z.write_model(2, weights=None, metrics={}, status="failed", record={}, curves={"lr": np.ones(3)})
    assert z.status_codes()[2] == 0  # every refused write left the model pending
    with pytest.raises(ZooError, match="not valid array names"):
        _make_store(tmp_path / "bad.zarr", curve_names=["a/b"])


def test_round_trip_weights_metrics_and_models_table(tmp_path):
    z, lay = _make_store(tmp_path / "z.zarr")
    w = torch.randn(2, lay.n_params)
    z.write_model(1, weights=w, metrics={"test_acc": np.array([0.1, 0.8])}, status="ok",
                  record={"wall_time_s": 1.5, "versions": {"torch": "x"}}, curve=np.arange(5))
    r = zoo.open(tmp_path / "z.zarr")
    assert torch.equal(r.weights([1], checkpoint=-1)[0], w[1])
    assert torch.equal(r.weights(1, epoch=0)[0], w[0])
    sd = r.state_dict(1, checkpoint=0)
    assert list(sd) == lay.names and torch.equal(sd["layers.0.bias"], lay.unflatten(w[0])["layers.0.bias"])
    net = r.build_model(1)
    assert torch.equal(net.layers[1].weight.detach(), lay.unflatten(w[1])["layers.1.weight"])
    df = r.models
    assert list(df["status"]) == ["pending", "ok", "pending", "pending"]
    assert df.loc[1, "test_acc"] == pytest.approx(0.8) and df.loc[1, "wall_time_s"] == 1.5
    assert df.loc[1, "version_torch"] == "x" and list(df["optimizer"]) == ["sgd", "adam", "sgd", "adam"]
    np.testing.assert_allclose(r.curve()[1], np.arange(5))
    assert r.info()["status_counts"] == {"pending": 3, "ok": 1, "diverged": 0, "failed": 0}


def test_open_is_read_only_unless_asked(tmp_path):
    _make_store(tmp_path / "z.zarr")
    r = zoo.open(tmp_path / "z.zarr")
    with pytest.raises(ZooError, match="read-only"):
        r.write_model(0, weights=None, metrics={}, status="failed", record={})


def test_pending_model_has_no_weights(tmp_path):
    z, _ = _make_store(tmp_path / "z.zarr")
    with pytest.raises(ZooError, match="pending"):
        z.weights([0])


def test_not_a_zoo(tmp_path):
    with pytest.raises(NotAZooError, match="no such file"):
        zoo.open(tmp_path / "missing.zarr")
    (tmp_path / "plain").mkdir()
    (tmp_path / "plain" / "x.txt").write_text("hello")
    with pytest.raises(NotAZooError, match="not a zoo"):
        zoo.open(tmp_path / "plain")
    import zarr

    zarr.open_group(str(tmp_path / "other.zarr"), mode="w")
    with pytest.raises(NotAZooError, match="not a weightzoo store"):
        zoo.open(tmp_path / "other.zarr")


def test_newer_format_version_is_refused(tmp_path):
    _make_store(tmp_path / "z.zarr")
    meta_file = tmp_path / "z.zarr" / "zarr.json"
    meta = json.loads(meta_file.read_text())
    meta["attributes"][ROOT_ATTR]["format_version"] = 99
    meta_file.write_text(json.dumps(meta))
    with pytest.raises(FormatVersionError, match="format_version 99"):
        zoo.open(tmp_path / "z.zarr")


def test_missing_and_corrupted_chunks_are_reported(tmp_path):
    z, lay = _make_store(tmp_path / "z.zarr")
    z.write_model(2, weights=torch.randn(2, lay.n_params), metrics={}, status="ok", record={})
    key = z.models.loc[2, "arch_key"]
    chunk = tmp_path / "z.zarr" / "weights" / key / "c" / "2" / "1" / "0"
    assert chunk.exists()
    data = chunk.read_bytes()
    chunk.write_bytes(data[:10] + bytes([data[10] ^ 0xFF]) + data[11:])
    with pytest.raises(CorruptChunkError, match="corrupted"):
        zoo.open(tmp_path / "z.zarr").weights([2])
    chunk.unlink()
    with pytest.raises(CorruptChunkError, match="missing"):
        zoo.open(tmp_path / "z.zarr").weights([2])


def test_weights_into_a_mismatched_architecture_name_the_parameter(tmp_path):
    z, lay = _make_store(tmp_path / "z.zarr")
    z.write_model(0, weights=torch.randn(2, lay.n_params), metrics={}, status="ok", record={})
    other = build_architecture("mlp", (40,), 10, {"width": 12, "depth": 1})
    from zoo.store import load_checked

    with pytest.raises(ArchitectureMismatchError, match=r"layers.0.weight.*\[8, 40\].*\[12, 40\]"):
        load_checked(other, z.state_dict(0))
    with pytest.raises(ArchitectureMismatchError, match=r"do not fit"):
        z.write_model(1, weights=torch.randn(2, lay.n_params + 1), metrics={}, status="ok", record={})


def test_creation_is_atomic_and_refuses_to_overwrite(tmp_path):
    _make_store(tmp_path / "z.zarr")
    with pytest.raises(ZooError, match="already exists"):
        _make_store(tmp_path / "z.zarr")
    assert [p.name for p in tmp_path.iterdir()] == ["z.zarr"]


def test_half_written_model_stays_pending(tmp_path):
    """Weights and metrics written but the process died before the status chunk: still pending."""
    z, lay = _make_store(tmp_path / "z.zarr")
    z.write_model(3, weights=torch.randn(2, lay.n_params), metrics={}, status="ok", record={})
    shutil.rmtree(tmp_path / "z.zarr" / "results" / "status" / "c" / "3", ignore_errors=True)
    (tmp_path / "z.zarr" / "results" / "status" / "c" / "3").unlink(missing_ok=True)
    assert zoo.open(tmp_path / "z.zarr").models.loc[3, "status"] == "pending"
