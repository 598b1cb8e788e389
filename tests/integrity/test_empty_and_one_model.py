"""Item 8: a zoo of 0 models and one of 1 model go through every exporter and back through its importer
(and through info, datasets, the batch loader, pack and pack-weights); a public release without models
is a clear error, one with a single model imports."""

import json

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import save_file

import zoo
from weightzoo.cli import main
from zoo.architectures import architecture_record
from zoo.catalog import pack
from zoo.errors import ZooError
from zoo.importers import import_public
from zoo.interchange import FORMATS, diff_stores, import_zoo
from zoo.rechunk import pack_weights


def _store(path, n: int) -> zoo.Zoo:
    key, arch = architecture_record("mlp", (40,), 10, {"width": 4, "depth": 1})
    models = pd.DataFrame({"model_id": np.arange(n, dtype=np.int64), "arch_key": pd.Series([key] * n, dtype=object),
                           "task": pd.Series(["t"] * n, dtype=object), "lr": np.full(n, 0.1)})
    z = zoo.create_zoo(path, models=models, architectures={key: arch}, tasks={"t": {"source": "mnist1d"}},
                       checkpoint_epochs=[0, 1], metric_names=["test_acc"], n_epochs=1,
                       attrs={"kind": "phase_grid", "name": path.stem})
    for i in range(n):
        z.write_model(i, weights=np.full((2, z.layout(key).n_params), 0.5), metrics={"test_acc": [0.1, 0.2]},
                      status="ok", record={"wall_time_s": 1.0}, curve=[0.7])
    z.write_split("default", np.zeros(n, dtype=np.int8), {"rule": "all train"})
    return zoo.open(path)


@pytest.mark.parametrize("n", [0, 1])
def test_every_exporter_round_trips(tmp_path, n, capsys):
    z = _store(tmp_path / f"z{n}.zarr", n)
    for fmt in FORMATS:
        out = tmp_path / f"out.{fmt}"
        assert main(["export", str(z.path), "--format", fmt, "--out", str(out), "--quiet"]) == 0, capsys.readouterr()
        back = import_zoo(out, fmt, tmp_path / f"back-{fmt}.zarr", progress=False)
        assert diff_stores(z, back) == [] and back.n_models == n
    capsys.readouterr()
    assert main(["info", str(z.path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["n_models"] == n
    ds = zoo.ZooDataset(z, split="train", target="test_acc")
    batches = list(zoo.ZooBatchLoader(ds, batch_size=4))
    assert len(ds) == n and len(batches) == n
    entry = pack(z.path, tmp_path / "p.zarr.zip", license="CC0-1.0", mirrors=["https://example.org/p.zarr.zip"],
                 progress=False)
    assert zoo.open(tmp_path / "p.zarr.zip").n_models == n and entry.size > 0
    assert pack_weights(z.path, models_per_chunk=8, progress=False).n_models == n


def test_public_importers_with_one_model_and_with_none(tmp_path):
    one = tmp_path / "st"
    one.mkdir()
    net = zoo.build_architecture("mlp", (6,), 3, {"width": 5, "depth": 1, "activation": "relu"})
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(one / "model.safetensors"),
              metadata={"lr": "0.1"})
    z = import_public(one, "safetensors-dir", tmp_path / "one.zarr", progress=False)
    assert z.n_models == 1 and torch.equal(z.weights([0])[0], torch.cat([p.reshape(-1) for p in net.parameters()]))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ZooError, match="no .safetensors files found"):
        import_public(empty, "safetensors-dir", tmp_path / "e1.zarr", progress=False)
    with pytest.raises(ZooError, match="no trial directories"):
        import_public(empty, "modelzoos", tmp_path / "e2.zarr", progress=False)
    np.save(empty / "weights.npy", np.zeros((0, 4970), dtype=np.float32))
    pd.DataFrame(columns=["modeldir", "test_accuracy"]).to_csv(empty / "metrics.csv")
    pd.DataFrame([{"varname": "sequential/dense/bias:0", "start_idx": 0, "end_idx": 4970, "shape": "(4970,)"}]
                 ).to_csv(empty / "layout.csv", index=False)
    with pytest.raises(ZooError, match="the release holds no models"):
        import_public(empty, "smallcnnzoo", tmp_path / "e3.zarr", progress=False)
