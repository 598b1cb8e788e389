"""``weightzoo sample`` end to end on tree_quick with a tiny generator, and its bad-input errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers.generative import one_thread, tiny_generator

import zoo
from weightzoo.cli import main


@pytest.fixture(autouse=True)
def _one_thread():
    with one_thread():
        yield


@pytest.fixture(scope="session")
def generator(tmp_path_factory):
    return tiny_generator(tmp_path_factory)


def test_sample_writes_a_store_that_opens_builds_models_and_rebuilds_task_data(tree_quick, generator, tmp_path,
                                                                              capsys):
    out = tmp_path / "gen.zarr"
    assert main(["sample", str(generator), "--store", str(tree_quick), "--tasks", "unseen", "--n", "3",
                 "--out", str(out), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "best_of_n_val" in printed and f"wrote 14 models to {out}" in printed
    src, gen = zoo.open(tree_quick), zoo.open(out)
    models = gen.models
    # unseen tasks of tree_quick's ood_tasks split: the noise and shift corruptions, for both bases
    assert len(models) == 2 + 4 * 3 and set(models["status"]) == {"ok"}
    assert models["generator"].tolist()[:2] == ["copy", "copy"]
    samples = models[models["generator"] == "latent_diffusion"]
    assert set(samples["source_model_id"]) == {5, 7, 11, 13} and set(samples["corruption"]) == {"noise", "shift"}
    for _, row in samples.iterrows():
        mid, ref = int(row["model_id"]), int(row["source_model_id"])
        assert gen.parent(mid) in (0, 1)
        assert torch.equal(gen.weights([gen.parent(mid)])[0], src.weights([src.parent(ref)])[0])
        assert gen.task_spec(mid) == src.task_spec(ref)
        x, y = gen.task_data(mid, "test")
        x_ref, y_ref = src.task_data(ref, "test")
        assert torch.equal(x, x_ref) and torch.equal(y, y_ref)
        net = gen.build_model(mid)
        assert (net(x).argmax(1) == y).double().mean().item() == pytest.approx(row["test_acc"], abs=1e-6)
    assert zoo.class_multi_hot(gen).shape == (14, 10)
    assert gen.task_vector(int(samples["model_id"].iloc[0])).shape == (gen.layout(gen.models["arch_key"][0]).n_params,)
    assert gen.meta["generated"]["tasks"] == "unseen" and gen.info()["tree"]["n_bases"] == 2


def test_sample_new_class_sets_and_model_ids(tree_quick, generator, tmp_path):
    out = tmp_path / "classes.zarr"
    assert main(["sample", str(generator), "--store", str(tree_quick), "--tasks", "classes:1,2,3", "--n", "2",
                 "--out", str(out), "--guidance", "2", "--quiet"]) == 0
    gen = zoo.open(out)
    samples = gen.models[gen.models["generator"] == "latent_diffusion"]
    assert len(samples) == 4 and set(samples["class_subset"]) == {"1,2,3"} and set(samples["guidance"]) == {2.0}
    assert np.array_equal(zoo.class_multi_hot(gen, samples["model_id"].tolist())[0].nonzero()[0], [1, 2, 3])
    assert set(np.unique(gen.task_data(int(samples["model_id"].iloc[0]), "test")[1]).tolist()) == {1, 2, 3}
    assert main(["sample", str(generator), "--store", str(tree_quick), "--tasks", "3,12", "--n", "1",
                 "--quiet"]) == 0


def _error(capsys, argv):
    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "Traceback" not in err
    return err


def test_sample_bad_input_is_one_line_and_exit_2(tree_quick, generator, tiny_zoo_path, tmp_path, capsys,
                                                  tmp_path_factory):
    base = ["sample", str(generator), "--store", str(tree_quick), "--quiet"]
    key = zoo.open(tree_quick).models["arch_key"][0]
    err = _error(capsys, ["sample", str(generator), "--store", str(tiny_zoo_path), "--n", "2"])
    assert key in err and all(k in err for k in zoo.open(tiny_zoo_path).architectures)
    assert "class ids [12] are outside the source task's classes" in _error(capsys, base + ["--tasks", "classes:0,12"])
    assert "--n must be >= 1, got 0" in _error(capsys, base + ["--n", "0"])
    assert "not on support sets" in _error(capsys, base + ["--support", "3"])
    assert "no model 99" in _error(capsys, base + ["--tasks", "99"])
    assert "--steps must be >= 1, got 0" in _error(capsys, base + ["--steps", "0"])
    assert "--guidance must be a finite number, got nan" in _error(capsys, base + ["--guidance", "nan"])
    support = tiny_generator(tmp_path_factory, "support")
    err = _error(capsys, ["sample", str(support), "--store", str(tree_quick), "--support", "100000", "--quiet"])
    assert "--support 100000 is larger than the training set" in err
    assert not (tmp_path / "never.zarr").exists()
    assert "not a readable checkpoint" in _error(capsys, ["sample", str(tree_quick / "zarr.json"), "--store",
                                                         str(tree_quick)])


def test_sample_with_a_support_set_generator(tree_quick, tmp_path_factory, tmp_path):
    support = tiny_generator(tmp_path_factory, "support")
    out = tmp_path / "support.zarr"
    assert main(["sample", str(support), "--store", str(tree_quick), "--tasks", "seen", "--n", "2", "--support", "4",
                 "--out", str(out), "--quiet"]) == 0
    samples = zoo.open(out).models.query("generator == 'latent_diffusion'")
    assert set(samples["support_k"]) == {4} and len(samples) == 2 * 4


def test_an_interrupted_sample_leaves_nothing_under_out(tree_quick, generator, tmp_path, monkeypatch, capsys):
    from zoo.store import Zoo

    calls = {"n": 0}
    write = Zoo.write_model

    def interrupted_write(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 5:
            raise KeyboardInterrupt
        return write(self, *args, **kwargs)

    monkeypatch.setattr(Zoo, "write_model", interrupted_write)
    out = tmp_path / "gen.zarr"
    args = ["sample", str(generator), "--store", str(tree_quick), "--n", "2", "--out", str(out), "--quiet"]
    assert main(args) == 130
    assert "nothing was written to --out" in capsys.readouterr().err
    assert not out.exists() and [p.name for p in tmp_path.iterdir() if not p.name.endswith(".lock")] == []
    monkeypatch.setattr(Zoo, "write_model", write)
    assert main(args) == 0 and set(zoo.open(out).models["status"]) == {"ok"}  # the rerun starts again
