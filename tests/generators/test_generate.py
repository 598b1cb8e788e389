import json
import subprocess
import sys
import time

import pytest
import torch
import yaml
from helpers.killing import generate_and_kill, grid_spec_with_reference
from helpers.same_zoo import assert_same_zoo

import zoo
from generators.driver import generate
from generators.phase_grid import plan_models, population_config
from generators.population import Member, train_single
from generators.spec import load_spec
from zoo.errors import SpecError
from zoo.tasks import build_task


def test_tiny_zoo_is_complete_and_consistent(tiny_zoo, tiny_spec):
    df = tiny_zoo.models
    assert len(df) == 8 and set(df["status"]) == {"ok"}
    assert tiny_zoo.checkpoint_epochs == [0, 1, 2]
    # grid coordinates and seeds recorded separately
    assert sorted(df["grid_load"].unique()) == [4, 8] and sorted(df["grid_temperature"].unique()) == [32, 64]
    assert (df["data_seed"] - df["init_seed"] == 10_000).all()
    assert {"version_torch", "version_weightzoo", "wall_time_s", "test_acc", "n_params"} <= set(df.columns)
    # every model is rebuilt with the right architecture and reproduces its stored test accuracy
    for mid in (0, 5, 7):
        net = tiny_zoo.build_model(mid)
        x, y = tiny_zoo.task_data(mid, "test")
        acc = (net(x).argmax(-1) == y).float().mean().item()
        assert acc == pytest.approx(df.loc[mid, "test_acc"], abs=1e-6)
    assert set(tiny_zoo.split_names) >= {"default", "by_cell"}


def test_stored_model_equals_the_same_model_trained_alone(tiny_zoo, tiny_spec):
    spec = load_spec(tiny_spec)
    row = tiny_zoo.models.loc[6]
    arch = tiny_zoo.architectures[row["arch_key"]]
    task = build_task(tiny_zoo.task_spec(6))
    alone = train_single(population_config(spec, row, arch),
                         Member(int(row["init_seed"]), int(row["data_seed"]), float(row["lr"]),
                                float(row["weight_decay"]), float(row["momentum"])), task)
    assert torch.allclose(tiny_zoo.weights([6])[0], alone.weights[0, -1], atol=1e-5)


def test_models_are_planned_in_grid_order(tiny_spec):
    models, archs, tasks = plan_models(load_spec(tiny_spec))
    assert list(models["model_id"]) == list(range(8))
    assert list(models["seed_index"][:4]) == [0, 1, 0, 1]
    assert len(archs) == 2 and len(tasks) == 1


def test_rerun_on_complete_store_trains_nothing_and_other_spec_is_refused(tiny_zoo_path, tiny_spec, tmp_path):
    import shutil

    copy = tmp_path / "copy.zarr"
    shutil.copytree(tiny_zoo_path, copy)
    before = zoo.open(copy).weights([0, 1, 2, 3])
    t = time.perf_counter()
    generate(tiny_spec, copy, progress=False)
    assert time.perf_counter() - t < 5
    assert torch.equal(zoo.open(copy).weights([0, 1, 2, 3]), before)
    other = dict(tiny_spec, epochs=3)
    with pytest.raises(SpecError, match="different spec"):
        generate(other, copy, progress=False)


def test_diverged_models_are_kept_and_flagged(tmp_path, tiny_spec):
    spec = dict(tiny_spec, grid={"load": {"param": "width", "values": [8]},
                                 "temperature": {"param": "lr", "values": [0.05, 1e6]}}, seeds=1)
    spec["optimizer"] = {"name": "sgd", "lr": 0.05, "momentum": 0.99}
    spec["architecture"] = {"name": "mlp", "depth": 2, "activation": "relu"}
    z = generate(spec, tmp_path / "d.zarr", progress=False)
    df = z.models
    assert list(df["status"]) == ["ok", "diverged"]
    assert df.loc[1, "diverged_epoch"] >= 1
    assert z.weights([1]).shape[0] == 1  # stored, not dropped


def _cli(*args, **kw):
    return subprocess.run([sys.executable, "-m", "weightzoo.cli", *args], capture_output=True, text=True, **kw)


@pytest.mark.slow
def test_killed_generation_resumes_to_the_same_zoo(tmp_path):
    spec_file, ref = grid_spec_with_reference(tmp_path, epochs=3)
    n = ref.n_models

    target = tmp_path / "killed.zarr"
    done_at_kill = generate_and_kill(spec_file, target, at_least=3)
    assert done_at_kill is not None and done_at_kill < n, "generation finished before it could be killed"
    partial = zoo.open(target).status_counts()
    assert 0 < partial["ok"] < n and partial["pending"] > 0

    r = _cli("generate", str(spec_file), "--out", str(target), "--quiet")
    assert r.returncode == 0, r.stderr
    z = zoo.open(target)
    assert z.status_counts() == {"pending": 0, "ok": n, "diverged": 0, "failed": 0}
    assert_same_zoo(z, ref)


def test_info_json_has_the_contract_keys(tiny_zoo_path):
    r = _cli("info", str(tiny_zoo_path), "--json")
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    assert info["n_models"] == 8
    assert info["checkpoints"] == [0, 1, 2]
    assert info["status_counts"]["ok"] == 8
    assert len(info["architectures"]) == 2
    r = _cli("info", str(tiny_zoo_path))
    assert r.returncode == 0 and "architectures" in r.stdout


def test_cli_errors_are_clear(tmp_path, tiny_spec):
    r = _cli("info", str(tmp_path / "nothing.zarr"))
    assert r.returncode == 2 and "no such file" in r.stderr
    bad = dict(tiny_spec, architecture={"name": "resnet"})
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(bad))
    r = _cli("generate", str(tmp_path / "bad.yaml"), "--out", str(tmp_path / "o.zarr"))
    assert r.returncode == 2 and "architecture.name" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.slow
def test_demo_quick_end_to_end_and_resume(tmp_path):
    r = _cli("demo", "--quick", "--out", str(tmp_path / "demo"), "--quiet")
    assert r.returncode == 0, r.stderr
    assert "final test accuracy" in r.stdout
    png = tmp_path / "demo" / "test_acc.png"
    assert png.exists() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    z = zoo.open(tmp_path / "demo" / "zoo.zarr")
    assert z.status_counts()["ok"] == z.n_models == 8
    # the demo includes landscape metrics, phase labels and the phase diagrams
    assert "phases (rule yang2021 v1)" in r.stdout
    assert sum(z.meta["phase_counts"].values()) == 8 and "hessian_trace_train" in z.landscape_names
    for name in ("phases.png", "phase_diagram.png", "hessian_trace.png", "cka.png", "mode_connectivity.png",
                 "alpha.png"):
        assert (tmp_path / "demo" / name).exists(), name
    t = time.perf_counter()
    r = _cli("demo", "--quick", "--out", str(tmp_path / "demo"), "--quiet")
    assert r.returncode == 0 and time.perf_counter() - t < 60
