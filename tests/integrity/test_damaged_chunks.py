"""Item 2: a damaged chunk (failed CRC32C, a zip member with a bad CRC, an undecodable record) reaches the
CLI as one line naming the chunk and exit code 2, in every command that reads it; no traceback, no
asyncio noise at exit."""

import json
import shutil
import struct
import subprocess
import sys
import zipfile

import pytest

import zoo
from weightzoo.cli import main
from zoo.archive import write_zip
from zoo.errors import CorruptChunkError


def _flip(path, offset=10):
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.fixture(scope="module")
def damaged(tiny_zoo_path, tmp_path_factory):
    """(directory store with one flipped byte in a weights chunk, zip with a bad CRC in that member, key)."""
    root = tmp_path_factory.mktemp("damaged")
    ref = zoo.open(tiny_zoo_path)
    key, row = str(ref.models.loc[3, "arch_key"]), int(ref.models.loc[3, "arch_row"])
    chunk = f"weights/{key}/c/{row}/2/0"
    zipped = write_zip(tiny_zoo_path, root / "crc.zarr.zip", progress=False)
    info = zipfile.ZipFile(zipped).getinfo(chunk)
    raw = zipped.read_bytes()
    name_len, extra_len = struct.unpack("<HH", raw[info.header_offset + 26:info.header_offset + 30])
    _flip(zipped, info.header_offset + 30 + name_len + extra_len + 10)  # a byte of the member's data
    directory = root / "flipped.zarr"
    shutil.copytree(tiny_zoo_path, directory)
    _flip(directory / chunk)
    return directory, zipped, chunk


def test_python_reads_raise_corrupt_chunk_error_naming_the_chunk(damaged):
    directory, zipped, chunk = damaged
    for path in (directory, zipped):
        with pytest.raises(CorruptChunkError, match=chunk):
            zoo.open(path).weights([3])


def test_cli_commands_print_one_line_and_exit_2(damaged, tmp_path, capsys):
    directory, zipped, chunk = damaged
    runs = [["export", str(src), "--format", fmt, "--out", str(tmp_path / f"{fmt}-{i}"), "--quiet"]
            for i, src in enumerate((directory, zipped)) for fmt in ("hdf5", "safetensors")]
    runs.append(["pack-weights", str(directory), "--quiet"])
    for argv in runs:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and chunk in err[0] and "damaged" in err[0], (argv, err)


def test_a_damaged_record_or_status_chunk_is_named(tiny_zoo_path, tmp_path, capsys):
    path = tmp_path / "records.zarr"
    shutil.copytree(tiny_zoo_path, path)
    zoo.open(path, mode="r+").unseal()  # read the chunks themselves, not a consolidated store's snapshot
    _flip(path / "results" / "record" / "c" / "4", 0)  # zstd frame: no checksum, decoding fails
    assert main(["info", str(path), "--json"]) == 0  # info does not read the records
    with pytest.raises(CorruptChunkError, match="results/record"):
        zoo.open(path).models
    _flip(path / "results" / "status" / "c" / "6", 0)
    assert main(["info", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "results/status/c/6" in err[0], err


def test_landscape_metrics_stop_at_a_damaged_chunk_instead_of_storing_nan(damaged, tmp_path, capsys):
    directory, _, chunk = damaged
    path = tmp_path / "m.zarr"
    shutil.copytree(directory, path)
    assert main(["metrics", str(path), "--only", "alpha", "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and chunk in err[0], err


def test_no_traceback_or_asyncio_noise_in_a_fresh_process(damaged, tmp_path):
    """The HF export (run inside 'datasets') of both damaged stores, in one interpreter that then exits."""
    directory, zipped, chunk = damaged
    code = ("import sys, json; from weightzoo.cli import main; "
            f"print(json.dumps([main(['export', s, '--format', 'hf', '--out', o, '--quiet']) for s, o in "
            f"[({str(directory)!r}, {str(tmp_path / 'a')!r}), ({str(zipped)!r}, {str(tmp_path / 'b')!r})]]))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == [2, 2]
    err = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(err) == 2 and all(chunk in line for line in err), proc.stderr


def test_a_file_system_refusal_is_one_line_too(tiny_zoo_path, tmp_path, capsys):
    (tmp_path / "a-file").write_text("not a directory")
    assert main(["export", str(tiny_zoo_path), "--format", "hdf5", "--out", str(tmp_path / "a-file" / "x.h5"),
                 "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "a-file" in err[0] and err[0].startswith("weightzoo export: error:"), err
