"""Item 12: --version; a closed pipe ends quietly; output to a file is not wrapped at 80 columns; a
truncated .zarr.zip says so; the offline error advises only what can work; an incomplete store says
generation is unfinished."""

import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

import zoo
from weightzoo.cli import main
from zoo.architectures import architecture_record
from zoo.archive import write_zip
from zoo.errors import NotAZooError, OfflineError, ZooError


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0 and capsys.readouterr().out.strip() == f"weightzoo {zoo.__version__}"


def test_a_reader_that_stops_early_ends_the_command_quietly(tiny_zoo_path):
    read, write = os.pipe()
    os.close(read)  # like 'head' that has already exited
    proc = subprocess.run([sys.executable, "-m", "weightzoo.cli", "info", str(tiny_zoo_path), "--json"], stdout=write,
                          stderr=subprocess.PIPE, text=True, timeout=120)
    os.close(write)
    assert proc.returncode == 141 and proc.stderr == ""


def test_output_to_a_file_is_not_wrapped(tiny_zoo_path, capsys, monkeypatch):
    monkeypatch.delenv("COLUMNS", raising=False)
    assert main(["info", str(tiny_zoo_path)]) == 0
    out = capsys.readouterr().out.splitlines()
    key = zoo.open(tiny_zoo_path).models["arch_key"].iloc[0]
    row = [line for line in out if key in line]
    assert row and '"activation": "relu"' in row[0] and max(len(line) for line in out) > 80
    assert "COLUMNS" not in os.environ


def test_a_truncated_zip_says_truncated(tiny_zoo_path, tmp_path):
    path = write_zip(tiny_zoo_path, tmp_path / "t.zarr.zip", progress=False)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(NotAZooError, match="truncated or corrupt zip archive"):
        zoo.open(path)


def test_offline_advice_lists_only_what_can_work(tmp_path, monkeypatch):
    monkeypatch.setenv("WEIGHTZOO_OFFLINE", "1")
    with pytest.raises(OfflineError) as err:  # 'demo' has a recipe and no mirror
        zoo.load("demo", root=tmp_path)
    text = str(err.value)
    assert "'weightzoo download demo --build'" in text and "unset WEIGHTZOO_OFFLINE" not in text
    assert "'weightzoo download demo'" not in text


def test_an_incomplete_store_says_generation_is_unfinished(tmp_path):
    key, arch = architecture_record("mlp", (40,), 10, {"width": 4, "depth": 1})
    z = zoo.create_zoo(tmp_path / "half.zarr", models=pd.DataFrame({"model_id": np.arange(3), "arch_key": key,
                                                                    "task": "t"}),
                       architectures={key: arch}, tasks={"t": {"source": "mnist1d"}}, checkpoint_epochs=[0, 1],
                       metric_names=["test_acc"], n_epochs=1, attrs={"kind": "phase_grid", "name": "half"})
    z.write_model(0, weights=np.zeros((2, z.layout(key).n_params)), metrics={}, status="ok", record={})
    for call in (lambda: zoo.ZooDataset(zoo.open(z.path), split="train"), lambda: z.phases(),
                 lambda: z.landscape("alpha")):
        with pytest.raises(ZooError, match=r"generation is unfinished: 2 of 3 models are still pending.*"
                                           r"weightzoo generate half --out"):
            call()


def test_a_directory_named_like_a_shipped_spec_does_not_shadow_it(tmp_path, monkeypatch):
    """'weightzoo demo --out demo' creates ./demo; its rerun (resume) read the directory as the spec file."""
    from generators.spec import SPEC_DIR, resolve_spec_path

    monkeypatch.chdir(tmp_path)
    (tmp_path / "demo").mkdir()
    assert resolve_spec_path("demo") == SPEC_DIR / "demo.yaml"
