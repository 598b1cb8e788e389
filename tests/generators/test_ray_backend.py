"""The Ray backend against a local Ray instance that these tests start (``num_cpus=2``) and stop.

Each test drives generation through the Ray head's address, so the tests pay for one head; what Ray
trains must equal the local backend bit for bit.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import textwrap
import time

import pytest
from tqdm import tqdm

ray = pytest.importorskip("ray", reason="the Ray backend needs the 'ray' extra: pip install 'weightzoo[ray]'")

from helpers.killing import grid_spec_with_reference, kill_after_models_written  # noqa: E402
from helpers.same_zoo import assert_same_models, assert_same_zoo  # noqa: E402
from helpers.specs import TINY_SPEC  # noqa: E402

import zoo  # noqa: E402
from generators.driver import create_or_resume, generate, pending_populations, train_population_job  # noqa: E402
from generators.ray_backend import POLL_S, PopulationsLostError, run_ray  # noqa: E402
from generators.spec import load_spec  # noqa: E402
from zoo.errors import ZooError  # noqa: E402

pytestmark = pytest.mark.slow

# The head runs until the test closes its stdin, then shuts Ray down (which stops the processes it started).
HEAD = textwrap.dedent("""
    import sys, ray
    context = ray.init(num_cpus=2, include_dashboard=False)
    print(context.address_info["gcs_address"], flush=True)
    sys.stdin.read()
    ray.shutdown()
""")

@pytest.fixture(scope="module")
def ray_head(tmp_path_factory):
    """The GCS address (``HOST:PORT``) of a Ray head with 2 CPUs. Token authentication is off for this
    short-lived test head (the mode is read when ray is imported, so this process could not follow it)."""
    log = tmp_path_factory.mktemp("ray") / "head.log"
    with open(log, "w") as err:
        head = subprocess.Popen([sys.executable, "-c", HEAD], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=err, text=True, env=dict(os.environ, RAY_AUTH_MODE="disabled"))
    try:
        address = head.stdout.readline().strip()
        assert address, f"the Ray head did not start:\n{log.read_text()}"
        yield address
    finally:
        head.stdin.close()
        try:
            head.wait(timeout=60)
        except subprocess.TimeoutExpired:
            head.kill()
            head.wait()


def tree_spec():
    return load_spec("tree_quick")


class CountingBar(tqdm):
    """A real bar (written to a buffer) that remembers each update."""

    def __init__(self, total: int) -> None:
        super().__init__(total=total, file=io.StringIO(), mininterval=0)
        self.updates: list[int] = []

    def update(self, n=1):
        self.updates.append(n)
        return super().update(n)


def test_ray_stage_equals_local_and_reports_each_epoch(ray_head, tiny_zoo_path, tmp_path):
    spec = load_spec(TINY_SPEC)
    z = create_or_resume(spec, tmp_path / "ray.zarr")
    pops = pending_populations(z, spec)
    total = sum(len(p.model_ids) * p.epochs for p in pops)
    bar = CountingBar(total)

    def pause_after_first_epoch(store, spec_dict, model_ids, *, on_epoch, **kw):  # so the driver sees epoch 1
        def report(epoch):
            on_epoch(epoch)
            if epoch == 1:
                time.sleep(2 * POLL_S)
        return train_population_job(store, spec_dict, model_ids, on_epoch=report, **kw)

    run_ray(z, spec, [pops], bar, address=ray_head, job=pause_after_first_epoch)
    assert bar.n == total and z.status_counts()["ok"] == z.n_models
    one_epoch = len(pops[0].model_ids)
    assert one_epoch in bar.updates and len(bar.updates) > len(pops)  # per epoch, not per finished population
    assert_same_models(z, zoo.open(tiny_zoo_path))  # splits and statistics come from the driver afterwards


def test_ray_generate_equals_local_on_a_two_stage_model_tree(ray_head, tmp_path):
    spec = tree_spec()
    assert sorted({p.stage for p in pending_populations(create_or_resume(spec, tmp_path / "plan.zarr"), spec)}) \
        == [0, 1]
    local = generate(spec, tmp_path / "local.zarr", progress=False)
    remote = generate(spec, tmp_path / "ray.zarr", progress=False, backend="ray", address=ray_head)
    assert remote.status_counts()["pending"] == 0
    assert_same_zoo(zoo.open(tmp_path / "ray.zarr"), zoo.open(tmp_path / "local.zarr"))
    assert local.status_counts() == remote.status_counts()

    # children alone while their parents are still pending: they stay pending, as with the local backend
    early = generate(spec, tmp_path / "children_first.zarr", progress=False, backend="ray", address=ray_head,
                     stages=[1])
    assert early.status_counts()["pending"] == early.n_models


def test_a_dead_task_loses_only_its_population_and_a_retry_completes_it(ray_head, tmp_path):
    two = dict(TINY_SPEC, population={"max_size": 4})  # the planner pools the tiny grid: cut it in two populations
    spec = load_spec(two)
    z = create_or_resume(spec, tmp_path / "ray.zarr")
    pops = pending_populations(z, spec)
    victim = pops[1].model_ids
    marker = tmp_path / "crashed-once"

    def crash_once(store, spec_dict, model_ids, **kw):  # the worker process dies as in a crash or OOM kill
        if model_ids == victim and not marker.exists():
            marker.write_text("x")
            os._exit(1)
        return train_population_job(store, spec_dict, model_ids, **kw)

    with pytest.raises(PopulationsLostError, match="Rerun the same command") as err:
        run_ray(z, spec, [pops], CountingBar(1), address=ray_head, max_retries=0, job=crash_once)
    assert err.value.model_ids == victim
    status = z.models.set_index("model_id")["status"]
    assert (status[victim] == "pending").all() and (status.drop(victim) == "ok").all()

    marker.unlink()  # crashes again, and Ray's retry trains it
    left = pending_populations(z, spec)
    assert [p.model_ids for p in left] == [victim]
    run_ray(z, spec, [left], CountingBar(1), address=ray_head, max_retries=1, job=crash_once)
    assert marker.exists() and z.status_counts()["ok"] == z.n_models

    generate(spec, tmp_path / "ray.zarr", progress=False, backend="ray", address=ray_head)  # post-generation steps
    assert_same_zoo(zoo.open(tmp_path / "ray.zarr"), generate(two, tmp_path / "local.zarr", progress=False))


def test_cli_generation_on_ray_killed_part_way_resumes_to_the_local_zoo(ray_head, tmp_path):
    spec_file, ref = grid_spec_with_reference(tmp_path, epochs=3)
    n = ref.n_models
    target = tmp_path / "ray.zarr"
    cmd = [sys.executable, "-m", "weightzoo.cli", "generate", str(spec_file), "--out", str(target), "--quiet",
           "--backend", "ray", "--address", ray_head]

    done_at_kill = kill_after_models_written(cmd, target, 2)
    assert done_at_kill is not None and done_at_kill < n, "generation finished before it could be killed"
    partial = zoo.open(target).status_counts()
    assert 0 < partial["ok"] < n and partial["pending"] > 0

    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert zoo.open(target).status_counts() == {"pending": 0, "ok": n, "diverged": 0, "failed": 0}
    assert_same_zoo(zoo.open(target), ref)


def test_an_address_ray_cannot_use_is_a_clear_error(tmp_path):
    from generators.ray_backend import ray_session

    with pytest.raises(ZooError, match="cannot start or connect to the Ray cluster at 'no-port-here'"):
        with ray_session("no-port-here"):
            pass
    assert not ray.is_initialized()
