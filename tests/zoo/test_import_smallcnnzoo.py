"""The ``smallcnnzoo`` importer on a release directory written like the Small CNN Zoo's files."""

import numpy as np
import pandas as pd
import pytest
import torch
from helpers.smallcnnzoo_release import EPOCHS, keras_forward, keras_variables, write_release  # noqa: F401

from zoo.errors import ZooError
from zoo.importers import import_public


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    rng = np.random.default_rng(0)
    d = tmp_path_factory.mktemp("sz") / "mnist"
    runs = [("relu", "mnist", {e: keras_variables(rng) for e in EPOCHS}),
            ("tanh", "mnist", {e: keras_variables(rng) for e in EPOCHS}),
            ("relu", "mnist", {e: keras_variables(rng) for e in EPOCHS[:2]})]  # crashed before the end
    diverged = {e: keras_variables(rng) for e in EPOCHS}
    diverged[86][1][2][0, 0, 0, 0] = np.nan
    runs.append(("tanh", "mnist", diverged))
    write_release(d, runs)
    return d, runs


def test_imported_models_compute_the_keras_function(release, tmp_path):
    d, runs = release
    z = import_public(d, "smallcnnzoo", tmp_path / "s.zarr", progress=False)
    assert z.checkpoint_epochs == EPOCHS and z.n_models == 4
    assert list(z.models["status"]) == ["ok", "ok", "failed", "diverged"]
    assert z.models.loc[3, "diverged_epoch"] == 86  # the epoch of the first non-finite checkpoint
    assert z.models["diverged_epoch"].isna()[:3].all()
    assert z.layout(z.models.loc[0, "arch_key"]).n_params == 4970
    x = np.random.default_rng(1).standard_normal((3, 28, 28, 1)).astype(np.float32)
    for mid in (0, 1):
        activation, _, per_epoch = runs[mid]
        for epoch, variables in per_epoch.items():
            net = z.build_model(mid, epoch=epoch)
            got = net(torch.from_numpy(x).permute(0, 3, 1, 2)).detach().numpy()
            np.testing.assert_allclose(got, keras_forward(variables, x.astype(np.float64), activation),
                                       rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("activation", ["linear", "relu", "selu"])
def test_smallcnn_modules_pickle(activation):
    import pickle

    from zoo.architectures import build_architecture

    net = build_architecture("smallcnn", (1, 28, 28), 10, {"activation": activation})
    back = pickle.loads(pickle.dumps(net))
    x = torch.randn(2, 1, 28, 28)
    assert torch.equal(back(x), net(x))
    with pytest.raises(ZooError, match=r"unknown activation 'swish'; choose from \[.*'linear'"):
        build_architecture("smallcnn", (1, 28, 28), 10, {"activation": "swish"})


def test_columns_metrics_and_records(release, tmp_path):
    d, _ = release
    z = import_public(d, "smallcnnzoo", tmp_path / "s.zarr", progress=False)
    df = z.models
    assert df.loc[1, "lr"] == pytest.approx(0.02) and df.loc[1, "weight_decay"] == pytest.approx(2e-4)
    assert df.loc[1, "activation"] == "tanh" and df.loc[1, "seed"] == 42 and df.loc[1, "task"] == "mnist"
    assert df.loc[0, "config.extra_flag"] == "kept" and df.loc[0, "config.epochs_between_checkpoints"] == 20
    assert df.loc[0, "modeldir"].endswith("run_0000")
    np.testing.assert_allclose(z.metric("test_acc", [0])[0], [0.1, 0.101, 0.186], rtol=1e-6)
    np.testing.assert_allclose(z.metric("step", [0])[0], [0, 117, 117 * 86])
    assert np.isnan(z.metric("test_acc", [2])[0][2])  # the crashed run has no epoch-86 row
    assert "epochs [86]" in df.loc[2, "error"]
    w = z.weights([2], epoch=1, allow_incomplete=True)
    assert torch.isfinite(w).all()


def test_malformed_release_files(release, tmp_path):
    d, _ = release
    bad = tmp_path / "bad"
    bad.mkdir()
    for name in ("weights.npy", "metrics.csv", "layout.csv"):
        (bad / name).write_bytes((d / name).read_bytes())
    pd.read_csv(d / "layout.csv").drop(columns=["end_idx"]).to_csv(bad / "layout.csv", index=False)
    with pytest.raises(ZooError, match=r"layout.csv: columns \['end_idx'\] are missing"):
        import_public(bad, "smallcnnzoo", tmp_path / "a.zarr", progress=False)
    (bad / "layout.csv").write_bytes((d / "layout.csv").read_bytes())
    pd.read_csv(d / "metrics.csv", index_col=0).iloc[:-1].to_csv(bad / "metrics.csv")
    with pytest.raises(ZooError, match=r"metrics.csv has 10 rows but .*weights.npy has 11"):
        import_public(bad, "smallcnnzoo", tmp_path / "b.zarr", progress=False)
    np.save(bad / "weights.npy", np.array([{"evil": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ZooError, match=r"weights.npy: not a plain .npy array"):
        import_public(bad, "smallcnnzoo", tmp_path / "c.zarr", progress=False)
    (bad / "weights.npy").write_bytes((d / "weights.npy").read_bytes())
    m = pd.read_csv(d / "metrics.csv", index_col=0)
    m["config.dnn_architecture"] = "fcn"
    m.to_csv(bad / "metrics.csv")
    with pytest.raises(ZooError, match=r"column 'config.dnn_architecture' is 'fcn'"):
        import_public(bad, "smallcnnzoo", tmp_path / "d.zarr", progress=False)
    assert not any(p.name.endswith(".zarr") for p in tmp_path.iterdir())
