"""``weightzoo export``, ``weightzoo import`` and ``weightzoo pack-weights`` end to end."""

import json
import subprocess
import sys

import numpy as np
import pytest
from helpers.smallcnnzoo_release import keras_variables, write_release

import zoo
from zoo.interchange import diff_stores


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "weightzoo.cli", *args], capture_output=True, text=True)


@pytest.mark.slow
def test_export_then_import_with_the_cli(tiny_zoo_path, tmp_path):
    for fmt, out in (("hdf5", "z.h5"), ("safetensors", "st")):
        r = _cli("export", str(tiny_zoo_path), "--format", fmt, "--out", str(tmp_path / out), "--quiet")
        assert r.returncode == 0, r.stderr
        r = _cli("import", "--from", fmt, str(tmp_path / out), "--out", str(tmp_path / f"{fmt}.zarr"), "--quiet")
        assert r.returncode == 0, r.stderr
        assert diff_stores(zoo.open(tiny_zoo_path), zoo.open(tmp_path / f"{fmt}.zarr")) == []
    r = _cli("export", str(tiny_zoo_path), "--format", "hdf5", "--out", str(tmp_path / "z.h5"))
    assert r.returncode == 2 and "weightzoo export: error:" in r.stderr and "already exists" in r.stderr


@pytest.mark.slow
def test_import_a_public_zoo_and_pack_it(tmp_path):
    rng = np.random.default_rng(0)
    write_release(tmp_path / "mnist", [("relu", "mnist", {e: keras_variables(rng) for e in (0, 1, 86)})
                                       for _ in range(3)])
    r = _cli("import", "--from", "smallcnnzoo", str(tmp_path / "mnist"), "--out", str(tmp_path / "s.zarr"),
             "--pack", "2", "--quiet")
    assert r.returncode == 0, r.stderr
    assert "imported from smallcnnzoo" in r.stdout and "smallcnn" in r.stdout
    z = zoo.open(tmp_path / "s.zarr")
    assert z.group[f"weights/{z.models.loc[0, 'arch_key']}"].chunks[0] == 2
    info = json.loads(_cli("info", str(tmp_path / "s.zarr"), "--json").stdout)
    assert info["kind"] == "imported" and info["status_counts"]["ok"] == 3
    r = _cli("import", "--from", "modelzoos", str(tmp_path / "mnist"), "--out", str(tmp_path / "m.zarr"))
    assert r.returncode == 2 and "weightzoo import: error:" in r.stderr and "no trial directories" in r.stderr


def test_cli_format_choices_are_the_registered_ones():
    # the CLI lists them without importing zoo (fast start); they must not drift from the registries
    from weightzoo.commands.interchange import PUBLIC_FORMATS, ROUND_TRIP_FORMATS
    from zoo.importers import zoo_importer_names
    from zoo.interchange import interchange_format_names

    assert sorted(ROUND_TRIP_FORMATS) == interchange_format_names()
    assert sorted(PUBLIC_FORMATS) == zoo_importer_names()
