"""Item 3: a store being written is locked; a second writer exits 2 saying who holds it (pid, host,
command, since when) or waits with --wait; readers still open it. Tested with real processes."""

import os
import shutil
import socket
import subprocess
import sys
import threading
import time

import pytest
import yaml

import zoo
from weightzoo.cli import main
from zoo.lock import holder, store_lock

HOLD = """
import sys, time, pathlib
from zoo.lock import store_lock
with store_lock(sys.argv[1], command="holder-for-test"):
    pathlib.Path(sys.argv[2]).write_text("held")
    while not pathlib.Path(sys.argv[3]).exists():
        time.sleep(0.05)
"""


@pytest.fixture()
def held(tiny_zoo_path, tmp_path):
    """A copy of the tiny zoo whose writer lock another process holds until ``release()``."""
    path = tmp_path / "z.zarr"
    shutil.copytree(tiny_zoo_path, path)
    ready, go = tmp_path / "ready", tmp_path / "go"
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(path), str(ready), str(go)])
    deadline = time.time() + 120
    while not ready.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert ready.exists(), "the holder did not start"
    yield path, proc, lambda: go.write_text("go")
    go.write_text("go")
    proc.wait(timeout=60)


def test_a_second_writer_exits_2_naming_the_holder_or_waits_and_readers_still_read(held, capsys):
    path, proc, release = held
    assert zoo.open(path).models.shape[0] == 8  # readers take no lock
    info = holder(path)
    assert info["pid"] == proc.pid and info["command"] == "holder-for-test"
    for argv in (["pack-weights", str(path), "--quiet"], ["phases", str(path)],
                 ["metrics", str(path), "--only", "alpha", "--quiet"]):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and f"is being written by pid {proc.pid} on {socket.gethostname()}" in err[0], err
        assert "'holder-for-test', since 20" in err[0] and "--wait" in err[0]
    key = zoo.open(path).models.loc[0, "arch_key"]
    assert zoo.open(path).weights_array(key).chunks[0] == 1  # untouched
    timer = threading.Timer(1.0, release)
    timer.start()
    start = time.time()
    assert main(["pack-weights", str(path), "--models-per-chunk", "4", "--quiet", "--wait"]) == 0
    assert time.time() - start >= 0.9 and proc.wait(timeout=30) == 0
    assert "waiting for it to finish" in capsys.readouterr().err
    assert zoo.open(path).weights_array(key).chunks[0] == 4 and holder(path) is None  # released, info removed


def test_the_lock_is_reentrant_and_released_on_error(tmp_path):
    path = tmp_path / "x.zarr"
    with pytest.raises(RuntimeError):
        with store_lock(path):
            with store_lock(path):  # a locked function called inside a locked command
                assert holder(path)["pid"] == os.getpid()
            raise RuntimeError("boom")
    with store_lock(path):
        pass


def test_two_generations_of_one_store_started_together(tmp_path, tiny_spec):
    """The issue's case: before, one died with 'OSError: Directory not empty' or both trained the models."""
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump(tiny_spec))
    out = tmp_path / "g.zarr"
    cmd = [sys.executable, "-m", "weightzoo.cli", "generate", str(spec), "--out", str(out), "--quiet"]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [(p.wait(timeout=300), p.stderr.read()) for p in procs]
    for code, err in results:
        assert "Traceback" not in err and code in (0, 2), err
        if code == 2:
            assert "is being written by pid" in err
    assert any(code == 0 for code, _ in results)
    z = zoo.open(out)
    assert z.status_counts()["ok"] == 8 and holder(out) is None
    walls = z.models["wall_time_s"]
    assert walls.notna().all()
