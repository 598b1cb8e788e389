"""zoo.open of zipped stores and of directory stores behind fsspec URLs, read in place."""

import importlib.util
import json
import pickle
import shutil
import zipfile

import fsspec
import pytest
import torch
from helpers.range_http_server import RangeHTTPServer

import zoo
from weightzoo.cli import main
from zoo.archive import write_zip
from zoo.errors import NotAZooError, ZooError


@pytest.fixture(scope="module")
def served(tiny_zoo_path, tmp_path_factory):
    """A directory served over HTTP holding the tiny zoo as a directory store."""
    root = tmp_path_factory.mktemp("remote")
    shutil.copytree(tiny_zoo_path, root / "tiny.zarr")
    return root


@pytest.fixture()
def server(served):
    with RangeHTTPServer(served) as srv:
        yield srv


def _assert_same_zoo(z, ref):
    assert z.n_models == ref.n_models and z.checkpoint_epochs == ref.checkpoint_epochs
    assert z.models.equals(ref.models)
    for key in ref.architectures:
        ids = ref.planned.index[ref.planned["arch_key"] == key].tolist()
        for c in range(len(ref.checkpoint_epochs)):
            assert torch.equal(z.weights(ids, checkpoint=c), ref.weights(ids, checkpoint=c))


def test_zipped_store_is_read_in_place(tiny_zoo_path, tmp_path):
    path = write_zip(tiny_zoo_path, tmp_path / "tiny.zarr.zip", progress=False)
    z = zoo.open(path)
    _assert_same_zoo(z, zoo.open(tiny_zoo_path))
    assert z.info()["status_counts"] == zoo.open(tiny_zoo_path).info()["status_counts"]
    assert list(tmp_path.iterdir()) == [path]  # nothing was unpacked
    assert pickle.loads(pickle.dumps(z)).weights([0]).shape == z.weights([0]).shape
    with pytest.raises(ZooError, match="zipped store is read-only"):
        zoo.open(path, mode="r+")
    with pytest.raises(ZooError, match="read-only"):
        z.write_split("x", [0] * z.n_models, {})


def test_zip_errors_name_the_file(tmp_path):
    (tmp_path / "fake.zip").write_bytes(b"not a zip")
    with pytest.raises(NotAZooError, match="fake.zip: not a zip archive"):
        zoo.open(tmp_path / "fake.zip")
    with zipfile.ZipFile(tmp_path / "other.zip", "w") as zf:
        zf.writestr("readme.txt", "hello")
    with pytest.raises(NotAZooError, match="other.zip is not a zoo"):
        zoo.open(tmp_path / "other.zip")


def test_http_directory_store_reads_equal_weights(tiny_zoo_path, server):
    z = zoo.open(f"{server.url}/tiny.zarr")
    _assert_same_zoo(z, zoo.open(tiny_zoo_path))
    assert z.path == f"{server.url}/tiny.zarr"
    again = pickle.loads(pickle.dumps(z))  # DataLoader workers reopen by URL
    assert torch.equal(again.weights([1]), z.weights([1]))


def test_http_store_fetches_only_the_chunks_it_needs(tiny_zoo_path, server):
    z = zoo.open(f"{server.url}/tiny.zarr")
    ref = zoo.open(tiny_zoo_path)
    key = str(ref.planned.loc[5, "arch_key"])
    row = int(ref.planned.loc[5, "arch_row"])
    n_chunks = ref.group[f"weights/{key}"].nchunks
    before = len(server.requests)
    w = z.weights([5], checkpoint=1)
    assert torch.equal(w, ref.weights([5], checkpoint=1))
    with server.lock:
        new = server.requests[before:]
    weight_chunks = [r.path for r in new if "/weights/" in r.path and "/c/" in r.path]
    assert weight_chunks == [f"/tiny.zarr/weights/{key}/c/{row}/1/0"] and n_chunks > 1
    status_chunks = [r.path for r in new if "/results/status/c/" in r.path]
    snapshot = [r.path for r in new if "/consolidated/" in r.path]
    # a consolidated store's status comes with its snapshot (read once per zoo); no chunk per model
    assert status_chunks == [] and len(snapshot) <= 1
    assert all(r.method == "GET" for r in new)


def test_http_store_is_read_only_and_missing_stores_are_named(server):
    with pytest.raises(ZooError, match="read-only"):
        zoo.open(f"{server.url}/tiny.zarr", mode="r+")
    with pytest.raises(NotAZooError, match=f"{server.url}/nothing.zarr is not a zoo"):
        zoo.open(f"{server.url}/nothing.zarr")


def test_cli_info_reads_a_url(server, capsys):
    assert main(["info", f"{server.url}/tiny.zarr", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["n_models"] == 8 and info["checkpoints"] == [0, 1, 2]


def test_file_and_memory_urls(tiny_zoo_path):
    ref = zoo.open(tiny_zoo_path)
    _assert_same_zoo(zoo.open(tiny_zoo_path.resolve().as_uri()), ref)
    fs = fsspec.filesystem("memory")
    fs.put(str(tiny_zoo_path), "/zoos/tiny.zarr", recursive=True)
    try:
        _assert_same_zoo(zoo.open("memory://zoos/tiny.zarr"), ref)
    finally:
        fs.rm("/zoos", recursive=True)


def test_unknown_protocols_and_missing_backends_are_clear():
    with pytest.raises(NotAZooError, match="nosuchproto://x/y.zarr"):
        zoo.open("nosuchproto://x/y.zarr")
    if importlib.util.find_spec("s3fs") is None:
        with pytest.raises(ZooError, match=r"s3://bucket/z.zarr: reading s3:// URLs needs an fsspec backend"):
            zoo.open("s3://bucket/z.zarr")
