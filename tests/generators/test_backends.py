"""Backend choice in ``generate`` without Ray: option checks, URL targets, and the missing-extra error."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
import yaml
from helpers.specs import TINY_SPEC

from generators.driver import backend_names, create_or_resume, generate, pending_populations
from generators.kinds import TaskCache, get_zoo_kind
from generators.population import train_population
from generators.spec import load_spec
from weightzoo.cli import main
from zoo.errors import SpecError


def test_ray_is_a_backend_that_importing_generators_does_not_load():
    assert {"local", "ray"} <= set(backend_names())
    code = "import sys, generators, generators.driver; assert 'ray' not in sys.modules, 'ray was imported'"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_local_backend_refuses_an_address_before_creating_the_store(tmp_path):
    with pytest.raises(SpecError, match="--address is for --backend ray"):
        generate(TINY_SPEC, tmp_path / "z.zarr", progress=False, address="auto")
    assert not (tmp_path / "z.zarr").exists()


def test_a_url_store_cannot_be_a_generation_target(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # Path("s3://b/z") would be the local directory "s3:/b/z"
    with pytest.raises(SpecError, match="URL stores are read-only"):
        generate(TINY_SPEC, "s3://bucket/zoo.zarr", progress=False, backend="ray")
    assert not (tmp_path / "s3:").exists()


def test_ray_backend_without_ray_names_the_extra_to_install(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError, as without the extra
    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text(yaml.safe_dump(TINY_SPEC))
    rc = main(["generate", str(spec_file), "--out", str(tmp_path / "z.zarr"), "--backend", "ray", "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2 and 'pip install "weightzoo[ray]"' in err and err.startswith("weightzoo generate: error:")
    # nothing was trained; the local backend resumes the same store
    z = generate(TINY_SPEC, tmp_path / "z.zarr", progress=False)
    assert z.status_counts()["ok"] == z.n_models


def test_population_results_do_not_depend_on_the_thread_count(tmp_path):
    """Ray tasks train with ``cpus_per_task`` threads, the local backend with all cores: same bits. The
    models are large enough (width 256, batch 128, 8 members) for torch to split its kernels over threads."""
    spec = load_spec(dict(TINY_SPEC, task={"source": "mnist1d", "train_fraction": 0.5},
                          grid={"load": {"param": "width", "values": [256]},
                                "temperature": {"param": "batch_size", "values": [128]}},
                          seeds=8, optimizer={"name": "adam", "lr": 0.01}))
    z = create_or_resume(spec, tmp_path / "z.zarr")
    pop = pending_populations(z, spec)[-1]
    job = get_zoo_kind(spec.kind).job(z, spec, pop.model_ids, TaskCache(z))
    before = torch.get_num_threads()
    results = []
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            results.append(train_population(job.config, job.members, job.tasks))
    finally:
        torch.set_num_threads(before)
    one, two = results
    assert torch.equal(one.weights, two.weights)
    for name in one.metrics:
        assert torch.equal(torch.as_tensor(one.metrics[name]), torch.as_tensor(two.metrics[name]))
