"""The ``modelzoos`` importer on trial directories written exactly as the Model Zoos code writes them."""

import json
import math

import numpy as np
import pytest
import torch
import torch.nn as nn

import zoo
from zoo.errors import ZooError
from zoo.importers import import_public

NONLIN = {"tanh": nn.Tanh, "gelu": nn.GELU, "relu": nn.ReLU, "leakyrelu": nn.LeakyReLU}


class ModelZoosCNN(nn.Module):
    """Re-creation of the Model Zoos ``CNN`` class: one ``module_list`` of conv, pool, nonlinearity and
    (optional) dropout blocks, flatten, two linear layers; parameters named ``module_list.<i>.*``."""

    def __init__(self, channels_in: int, nlin: str, dropout: float) -> None:
        super().__init__()
        blocks = []
        for c_in, c_out, k, pool in ((channels_in, 8, 5, True), (8, 6, 5, True), (6, 4, 2, False)):
            blocks.append(nn.Conv2d(c_in, c_out, k))
            if pool:
                blocks.append(nn.MaxPool2d(2, 2))
            blocks.append(NONLIN[nlin]())
            if pool and dropout > 0:
                blocks.append(nn.Dropout(dropout))
        blocks += [nn.Flatten(), nn.Linear(36, 20), NONLIN[nlin]()]
        if dropout > 0:
            blocks.append(nn.Dropout(dropout))
        blocks.append(nn.Linear(20, 10))
        self.module_list = nn.ModuleList(blocks)

    def forward(self, x):
        for layer in self.module_list:
            x = layer(x)
        return x


class ModelZoosMLP(nn.Module):
    def __init__(self, i_dim: int, h_dim: list, o_dim: int) -> None:
        super().__init__()
        dims = [i_dim, *h_dim]
        layers = []
        for a, b in zip(dims[:-1], dims[1:]):
            layers += [nn.Linear(a, b), nn.LeakyReLU()]
        layers.append(nn.Linear(dims[-1], o_dim))
        self.module_list = nn.ModuleList(layers)

    def forward(self, x):
        for layer in self.module_list:
            x = layer(x)
        return x


def ray_line(epoch: int, trial_id: str, metrics: dict) -> dict:
    """A ``result.json`` line as Ray Tune's JsonLogger writes it (metrics plus Ray's bookkeeping)."""
    return {**metrics, "done": False, "training_iteration": epoch + 1, "trial_id": trial_id,
            "experiment_id": "abc123", "date": "2022-05-01_10-00-00", "timestamp": 1651392000 + epoch,
            "time_this_iter_s": 1.25, "time_total_s": 1.25 * (epoch + 1), "pid": 4242, "hostname": "node-7",
            "node_ip": "10.0.0.7", "config": {"seed": 1}, "time_since_restore": 1.0,
            "iterations_since_restore": epoch + 1, "experiment_tag": f"{epoch}_seed=1"}


def write_trial(root, name, config, model_factory, epochs, *, n_lines=None, data_parallel=False,
                error=None, seed=0):
    """A trial directory: params.json, result.json, checkpoint_<6 digits>/{checkpoints, optimizer}.
    Returns the models saved at each epoch."""
    d = root / name
    d.mkdir(parents=True)
    (d / "params.json").write_text(json.dumps(config))
    torch.manual_seed(seed)
    saved = {}
    model = model_factory()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    for e in epochs:
        with torch.no_grad():
            for p in model.parameters():
                p.add_(0.05 * torch.randn_like(p))
        ckpt = d / f"checkpoint_{e:06d}"
        ckpt.mkdir()
        state = model.state_dict()
        if data_parallel:
            state = {f"module.{k}": v for k, v in state.items()}
        torch.save(state, ckpt / "checkpoints")
        torch.save(opt.state_dict(), ckpt / "optimizer")
        copy = model_factory()
        copy.load_state_dict(model.state_dict())
        saved[e] = copy.eval()
    lines = []
    for e in range(n_lines if n_lines is not None else max(epochs) + 1):
        train = {"train_loss": -999, "train_acc": -999} if e == 0 else {"train_loss": 2.0 / (e + 1), "train_acc": 0.1 * e}
        lines.append(ray_line(e, name[-5:], {**train, "test_loss": 2.5 / (e + 1), "test_acc": 0.05 * e + 0.1}))
    (d / "result.json").write_text("".join(json.dumps(line) + "\n" for line in lines))
    if error:
        (d / "error.txt").write_text(f"Traceback (most recent call last):\n  ...\n{error}\n")
    return saved


def cnn_config(seed, nlin="tanh", channels_in=1, dropout=0.0, **extra):
    return {"model::type": "CNN", "model::channels_in": channels_in, "model::o_dim": 10, "model::nlin": nlin,
            "model::dropout": dropout, "model::init_type": "uniform", "model::use_bias": False,
            "optim::optimizer": "adam", "optim::lr": 3e-4, "optim::wd": 0.0, "seed": seed,
            "training::batchsize": 10, "training::epochs_train": 3, "training::start_epoch": 1,
            "training::output_epoch": 1, "training::val_epochs": 1, "training::idx_out": 500,
            "training::checkpoint_dir": None, "cuda": False,
            "dataset::dump": "/data/zoos/MNIST/tune_zoo_mnist_uniform/dataset.pt", **extra}


@pytest.fixture(scope="module")
def zoo_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("mz") / "tune_zoo_mnist_uniform"
    models = {
        "NN_tune_trainable_0a1b2_00000_seed=1": write_trial(
            root, "NN_tune_trainable_0a1b2_00000_seed=1", cnn_config(1, custom={"note": "keep me"}),
            lambda: ModelZoosCNN(1, "tanh", 0.0), [0, 1, 2, 3], seed=1),
        "NN_tune_trainable_0a1b2_00001_seed=2": write_trial(
            root, "NN_tune_trainable_0a1b2_00001_seed=2", cnn_config(2, nlin="gelu", channels_in=3, dropout=0.1),
            lambda: ModelZoosCNN(3, "gelu", 0.1), [0, 1, 2, 3], data_parallel=True, seed=2),
        "NN_tune_trainable_0a1b2_00002_seed=3": write_trial(
            root, "NN_tune_trainable_0a1b2_00002_seed=3", cnn_config(3), lambda: ModelZoosCNN(1, "tanh", 0.0),
            [0, 1], n_lines=2, error="RuntimeError: CUDA out of memory", seed=3),
    }
    return root, models


@pytest.fixture(scope="module")
def imported(zoo_dir, tmp_path_factory):
    root, _ = zoo_dir
    return import_public(root, "modelzoos", tmp_path_factory.mktemp("mzout") / "mz.zarr", progress=False)


def test_imported_cnns_compute_the_source_function(zoo_dir, imported):
    _, sources = zoo_dir
    z = imported
    by_trial = dict(zip(z.models["trial"], z.models["model_id"]))
    torch.manual_seed(0)
    for trial, per_epoch in sources.items():
        mid = int(by_trial[trial])
        channels = 3 if "seed=2" in trial else 1
        x = torch.randn(5, channels, 28, 28)
        for epoch, source in per_epoch.items():
            net = zoo.open(z.path).build_model(mid, epoch=epoch) if z.models.loc[mid, "status"] != "failed" else None
            if net is None:
                w = z.weights([mid], epoch=epoch, allow_incomplete=True)[0]
                net = zoo.load_flat_weights(z.empty_model(mid), w).eval()
            torch.testing.assert_close(net(x), source(x))
    assert z.architectures[z.models.loc[by_trial["NN_tune_trainable_0a1b2_00001_seed=2"], "arch_key"]]["config"][
        "pool_first"] is True


def test_columns_metrics_curves_and_status(imported):
    z = imported
    df = z.models.set_index("trial")
    ok = df.loc["NN_tune_trainable_0a1b2_00000_seed=1"]
    assert ok["lr"] == pytest.approx(3e-4) and ok["batch_size"] == 10 and ok["seed"] == 1
    assert ok["optimizer"] == "adam" and ok["activation"] == "tanh" and ok["epochs"] == 3
    assert ok["custom.note"] == "keep me"  # an unknown nested key survives as a column
    assert ok["init"] == "uniform" and ok["model.o_dim"] == 10 and ok["training.idx_out"] == 500
    assert ok["result.hostname"] == "node-7" and ok["result.trial_id"] == "eed=1"  # Ray's non-numeric values
    assert ok["dataset"].endswith("tune_zoo_mnist_uniform/dataset.pt")
    assert ok["status"] == "ok"
    failed = df.loc["NN_tune_trainable_0a1b2_00002_seed=3"]
    assert failed["status"] == "failed" and "CUDA out of memory" in failed["error"]
    assert z.checkpoint_epochs == [0, 1, 2, 3]
    i = int(ok["model_id"])
    test_acc = z.metric("test_acc", [i])[0]
    np.testing.assert_allclose(test_acc, [0.1, 0.15, 0.2, 0.25], rtol=1e-6)
    assert math.isnan(z.metric("train_loss", [i])[0][0])  # -999 at initialisation means "not computed"
    np.testing.assert_allclose(z.curve("train_loss")[i], [1.0, 2.0 / 3, 0.5], rtol=1e-6)
    np.testing.assert_allclose(z.curve("time_this_iter_s")[i], [1.25] * 3)
    assert "pid" in z.metric_names and "done" not in z.metric_names


def test_refuses_pickled_objects(tmp_path):
    root = tmp_path / "src"
    write_trial(root, "trial_a", cnn_config(1), lambda: ModelZoosCNN(1, "tanh", 0.0), [0, 1])
    torch.save(ModelZoosCNN(1, "tanh", 0.0), root / "trial_a" / "checkpoint_000001" / "checkpoints")  # a whole module
    with pytest.raises(ZooError, match=r"checkpoint_000001/checkpoints: refused.*weights_only"):
        import_public(root, "modelzoos", tmp_path / "out.zarr", progress=False)
    assert not (tmp_path / "out.zarr").exists()


def test_unsupported_architecture_names_file_and_key(tmp_path):
    root = tmp_path / "src"
    write_trial(root, "trial_r", cnn_config(1), lambda: ModelZoosCNN(1, "tanh", 0.0), [0])
    (root / "trial_r" / "params.json").write_text(json.dumps(cnn_config(1, **{"model::type": "Resnet18_width"})))
    with pytest.raises(ZooError, match=r"trial_r/params.json: key 'model::type' is 'Resnet18_width'"):
        import_public(root, "modelzoos", tmp_path / "out.zarr", progress=False)


def test_malformed_inputs_name_the_file(tmp_path):
    root = tmp_path / "src"
    write_trial(root, "trial_m", cnn_config(1), lambda: ModelZoosCNN(1, "tanh", 0.0), [0, 1])
    (root / "trial_m" / "result.json").write_text('{"test_acc": 0.1}\n{"test_acc": \n')
    with pytest.raises(ZooError, match=r"trial_m/result.json: line 2 is not valid JSON"):
        import_public(root, "modelzoos", tmp_path / "a.zarr", progress=False)
    (root / "trial_m" / "params.json").write_text("{not json")
    with pytest.raises(ZooError, match=r"trial_m/params.json: not valid JSON"):
        import_public(root, "modelzoos", tmp_path / "b.zarr", progress=False)
    with pytest.raises(ZooError, match="no trial directories"):
        import_public(tmp_path / "src" / "trial_m" / "checkpoint_000000", "modelzoos", tmp_path / "c.zarr",
                      progress=False)


def test_mlp_trials_and_wrong_shapes(tmp_path):
    root = tmp_path / "src"
    config = {"model::type": "MLP", "model::i_dim": 14, "model::h_dim": [30, 30], "model::o_dim": 10,
              "model::nlin": "leakyrelu", "model::dropout": 0.0, "model::use_bias": True, "optim::lr": 0.01,
              "seed": 4, "training::batchsize": 32}
    saved = write_trial(root, "mlp_trial", config, lambda: ModelZoosMLP(14, [30, 30], 10), [0, 2])
    z = import_public(root, "modelzoos", tmp_path / "mlp.zarr", progress=False)
    x = torch.randn(4, 14)
    torch.testing.assert_close(z.build_model(0, epoch=2)(x), saved[2](x))
    assert z.architectures[z.models.loc[0, "arch_key"]]["config"] == {"width": 30, "depth": 2,
                                                                       "activation": "leaky_relu"}
    (root / "mlp_trial" / "params.json").write_text(json.dumps({**config, "model::h_dim": [30, 20]}))
    with pytest.raises(ZooError, match=r"model::h_dim"):
        import_public(root, "modelzoos", tmp_path / "mlp2.zarr", progress=False)
    (root / "mlp_trial" / "params.json").write_text(json.dumps({**config, "model::h_dim": [31, 31]}))
    with pytest.raises(ZooError, match=r"checkpoint_000000/checkpoints: tensor 'module_list.0.weight' has shape"):
        import_public(root, "modelzoos", tmp_path / "mlp3.zarr", progress=False)


def test_interrupted_import_resumes_and_never_looks_complete(zoo_dir, tmp_path, monkeypatch):
    import zoo.importers.modelzoos as mz

    root, _ = zoo_dir
    calls = []
    real = mz.load_state_dict

    def flaky(path):
        calls.append(path)
        if len(calls) == 6:  # in the second trial
            raise KeyboardInterrupt
        return real(path)

    monkeypatch.setattr(mz, "load_state_dict", flaky)
    out = tmp_path / "mz.zarr"
    with pytest.raises(KeyboardInterrupt):
        import_public(root, "modelzoos", out, progress=False)
    assert not out.exists() and (tmp_path / ".mz.zarr.partial").is_dir()
    z = import_public(root, "modelzoos", out, progress=False)
    assert len(calls) == 6 + 4 + 2  # the first trial (4 checkpoints) was not read again
    assert z.status_counts() == {"pending": 0, "ok": 2, "diverged": 0, "failed": 1}
    assert not (tmp_path / ".mz.zarr.partial").exists()
