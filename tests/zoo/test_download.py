"""zoo.load / weightzoo download against a real HTTP server on 127.0.0.1."""

import json
import shutil
import threading

import pytest
import torch
from helpers.range_http_server import RangeHTTPServer

import generators  # noqa: F401  (registers the recipe builder that zoo.load(build=True) uses)
import zoo
from weightzoo.cli import main
from zoo.catalog import pack
from zoo.download import fetch, parse_hf_url, part_path
from zoo.errors import ChecksumError, DownloadError, OfflineError, ZooError


@pytest.fixture(scope="module")
def archives(tiny_zoo_path, tmp_path_factory):
    """The tiny zoo packed as .zarr.zip and .zarr.tar in a directory the server serves."""
    served = tmp_path_factory.mktemp("served")
    entries = {fmt: pack(tiny_zoo_path, served / f"tiny.{fmt}", license="CC0-1.0", progress=False)
               for fmt in ("zarr.zip", "zarr.tar")}
    return served, entries


@pytest.fixture()
def server(archives):
    with RangeHTTPServer(archives[0]) as srv:
        yield srv


def _catalog(tmp_path, archives, server, *, fmt="zarr.zip", mirrors=None, **changes):
    """A user catalog with one entry 'tiny' whose mirrors point at the test server."""
    record = archives[1][fmt].to_record()
    record["mirrors"] = mirrors if mirrors is not None else [f"{server.url}/tiny.{fmt}"]
    record.update(changes)
    path = tmp_path / "catalog.json"
    path.write_text(json.dumps({"catalog_version": 1, "zoos": [record]}))
    return path


def _visible(folder):
    return sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))


def _same_weights(z, tiny_zoo_path):
    ref = zoo.open(tiny_zoo_path)
    for key in ref.architectures:
        ids = ref.planned.index[ref.planned["arch_key"] == key].tolist()
        assert torch.equal(z.weights(ids), ref.weights(ids))


@pytest.mark.parametrize("fmt", ["zarr.zip", "zarr.tar"])
def test_complete_download_is_verified_cached_and_reused(tmp_path, archives, server, tiny_zoo_path, fmt):
    cat = _catalog(tmp_path, archives, server, fmt=fmt)
    z = zoo.load("tiny", root=tmp_path / "cache", catalog=cat, progress=False)
    _same_weights(z, tiny_zoo_path)
    sha = archives[1][fmt].sha256
    folder = tmp_path / "cache" / "tiny"
    if fmt == "zarr.zip":  # opened in place, never unpacked
        assert z.path == str(folder / f"{sha[:16]}.zarr.zip") and _visible(folder) == [f"{sha[:16]}.zarr.zip"]
    else:  # unpacked atomically, the tar removed
        assert z.path == str(folder / f"{sha[:16]}.zarr") and _visible(folder) == [f"{sha[:16]}.zarr"]
    assert not list(folder.glob(".*.part"))
    again = zoo.load("tiny", root=tmp_path / "cache", catalog=cat, progress=False)
    assert again.path == z.path and len(server.requests_for(f"/tiny.{fmt}")) == 1  # the cache was reused


def test_cut_connection_resumes_with_a_range_request_for_the_remaining_bytes(tmp_path, archives, server):
    entry = archives[1]["zarr.zip"]
    server.cut_once["/tiny.zarr.zip"] = 30_000
    z = zoo.load("tiny", root=tmp_path / "cache", catalog=_catalog(tmp_path, archives, server), progress=False)
    first, second = server.requests_for("/tiny.zarr.zip")
    assert first.range is None and first.sent == 30_000
    assert second.range == "bytes=30000-" and second.status == 206 and second.sent == entry.size - 30_000
    assert z.n_models == 8


def test_interrupted_transfer_keeps_its_part_file_and_the_next_call_resumes(tmp_path, archives, server):
    entry = archives[1]["zarr.zip"]
    dest = tmp_path / "tiny.zarr.zip"
    server.cut_once["/tiny.zarr.zip"] = 20_000
    with pytest.raises(DownloadError, match=r"transfer failed.*20000 bytes received are kept.*resumes"):
        fetch(f"{server.url}/tiny.zarr.zip", dest, sha256=entry.sha256, size=entry.size, progress=False, retries=0)
    assert not dest.exists() and part_path(dest).stat().st_size == 20_000  # partial, never under the real name
    fetch(f"{server.url}/tiny.zarr.zip", dest, sha256=entry.sha256, size=entry.size, progress=False)
    assert server.requests_for("/tiny.zarr.zip")[-1].range == "bytes=20000-"
    assert dest.read_bytes() == (archives[0] / "tiny.zarr.zip").read_bytes() and not part_path(dest).exists()


def test_checksum_mismatch_is_a_clear_error_and_leaves_nothing_in_the_cache(tmp_path, archives, server):
    cat = _catalog(tmp_path, archives, server, sha256="0" * 64)
    with pytest.raises(DownloadError, match="sha256 mismatch: expected 0000") as err:
        zoo.load("tiny", root=tmp_path / "cache", catalog=cat, progress=False)
    assert f"{server.url}/tiny.zarr.zip" in str(err.value) and "deleted" in str(err.value)
    folder = tmp_path / "cache" / "tiny"
    assert _visible(folder) == [] and not list(folder.glob("*.part")) and not list(folder.glob(".*.part"))
    # a wrong size is caught from the server's Content-Length, before any byte is kept
    entry = archives[1]["zarr.zip"]
    with pytest.raises(ChecksumError, match=f"catalog says {entry.size + 1}"):
        fetch(f"{server.url}/tiny.zarr.zip", tmp_path / "x.zarr.zip", sha256=entry.sha256, size=entry.size + 1,
              progress=False)
    assert not part_path(tmp_path / "x.zarr.zip").exists()


def test_404_names_the_url_and_every_failed_mirror_is_reported(tmp_path, archives, server):
    bad1, bad2 = f"{server.url}/missing.zarr.zip", "http://127.0.0.1:9/nothing.zarr.zip"
    cat = _catalog(tmp_path, archives, server, mirrors=[bad1, bad2])
    with pytest.raises(DownloadError) as err:
        zoo.load("tiny", root=tmp_path / "cache", catalog=cat, progress=False)
    msg = str(err.value)
    assert f"{bad1}: HTTP 404" in msg and f"{bad2}: transfer failed" in msg and "2 tried" in msg
    assert "--build" in msg  # the entry has a recipe


def test_mirrors_are_tried_in_order(tmp_path, archives, server):
    cat = _catalog(tmp_path, archives, server, mirrors=[f"{server.url}/gone.zarr.zip", f"{server.url}/tiny.zarr.zip"])
    assert zoo.load("tiny", root=tmp_path / "cache", catalog=cat, progress=False).n_models == 8
    assert [r.path for r in server.requests] == ["/gone.zarr.zip", "/tiny.zarr.zip"]


def test_two_concurrent_loads_end_with_one_intact_copy(tmp_path, archives, server, tiny_zoo_path):
    cat = _catalog(tmp_path, archives, server)
    server.delay["/tiny.zarr.zip"] = 0.5  # both loads are under way before the first finishes
    barrier, results, errors = threading.Barrier(2), [], []

    def load():
        barrier.wait()
        try:
            results.append(zoo.load("tiny", root=tmp_path / "cache", catalog=cat, progress=False))
        except Exception as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=load) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors and len(results) == 2 and results[0].path == results[1].path
    assert len(server.requests_for("/tiny.zarr.zip")) == 1
    sha = archives[1]["zarr.zip"].sha256
    folder = tmp_path / "cache" / "tiny"
    assert _visible(folder) == [f"{sha[:16]}.zarr.zip"] and not list(folder.glob(".*.part"))
    for z in results:
        _same_weights(z, tiny_zoo_path)


def test_offline_mode_uses_the_cache_only(tmp_path, archives, server, monkeypatch):
    cat = _catalog(tmp_path, archives, server)
    monkeypatch.setenv("WEIGHTZOO_OFFLINE", "1")
    with pytest.raises(OfflineError, match=r"offline mode is on \(WEIGHTZOO_OFFLINE=1\).*not in the cache") as err:
        zoo.load("tiny", root=tmp_path / "cache", catalog=cat, progress=False)
    assert "weightzoo download tiny" in str(err.value) and server.requests == []
    monkeypatch.delenv("WEIGHTZOO_OFFLINE")
    zoo.load("tiny", root=tmp_path / "cache", catalog=cat, progress=False)
    monkeypatch.setenv("WEIGHTZOO_OFFLINE", "1")
    n = len(server.requests)
    assert zoo.load("tiny", root=tmp_path / "cache", catalog=cat, progress=False).n_models == 8
    assert len(server.requests) == n


def test_download_false_uses_the_cache_only(tmp_path, archives, server):
    cat = _catalog(tmp_path, archives, server)
    with pytest.raises(ZooError, match="not in the cache.*download=True"):
        zoo.load("tiny", root=tmp_path / "cache", download=False, catalog=cat)
    assert server.requests == []


def test_cache_from_environment_variable_and_cli_download(tmp_path, archives, server, monkeypatch, capsys):
    cat = _catalog(tmp_path, archives, server)
    monkeypatch.setenv("WEIGHTZOO_CACHE", str(tmp_path / "envcache"))
    monkeypatch.setenv("WEIGHTZOO_CATALOG", str(cat))
    assert main(["download", "tiny", "--quiet"]) == 0
    sha = archives[1]["zarr.zip"].sha256
    assert str(tmp_path / "envcache" / "tiny" / f"{sha[:16]}.zarr.zip") in capsys.readouterr().out
    assert zoo.load("tiny", download=False).n_models == 8


def test_hf_mirror_goes_through_huggingface_hub(tmp_path, archives, monkeypatch):
    """The network call is replaced; everything around it (URL parsing, moving, verifying) is real."""
    import huggingface_hub

    calls = []

    def fake_hf_hub_download(*, repo_id, filename, repo_type, revision, local_dir):
        calls.append((repo_id, filename, repo_type, revision))
        target = tmp_path / "hf-cache" / filename
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(archives[0] / "tiny.zarr.zip", target)
        return str(target)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_hf_hub_download)
    url = "hf://datasets/someone/zoos@refs%2Fpr%2F1/archives/tiny.zarr.zip"
    assert parse_hf_url(url) == ("someone/zoos", "refs/pr/1", "archives/tiny.zarr.zip")
    cat = tmp_path / "hf.json"
    record = dict(archives[1]["zarr.zip"].to_record(), mirrors=[url])
    cat.write_text(json.dumps({"zoos": [record]}))
    assert zoo.load("tiny", root=tmp_path / "cache", catalog=cat, progress=False).n_models == 8
    assert calls == [("someone/zoos", "archives/tiny.zarr.zip", "dataset", "refs/pr/1")]


def test_build_from_the_recipe_when_no_mirror_is_reachable(tmp_path, archives, server, tiny_zoo_path, capsys):
    cat = _catalog(tmp_path, archives, server, mirrors=[f"{server.url}/missing.zarr.zip"])
    root = tmp_path / "cache"
    assert main(["download", "tiny", "--catalog", str(cat), "--root", str(root), "--quiet"]) == 2
    assert "HTTP 404" in capsys.readouterr().err
    assert main(["download", "tiny", "--catalog", str(cat), "--root", str(root), "--build", "--quiet"]) == 0
    assert str(root / "tiny" / "built.zarr") in capsys.readouterr().out
    assert _visible(root / "tiny") == ["built.zarr"]
    built, ref = zoo.load("tiny", root=root, catalog=cat, download=False), zoo.open(tiny_zoo_path)
    assert built.meta["spec_hash"] == ref.meta["spec_hash"] and built.status_counts() == ref.status_counts()
    assert built.models["grid_cell"].tolist() == ref.models["grid_cell"].tolist()
    _same_weights(built, tiny_zoo_path)  # training is seeded: the rebuilt zoo is the same zoo


def test_offline_build_skips_the_mirrors_and_regenerates(tmp_path, archives, server, monkeypatch):
    monkeypatch.setenv("WEIGHTZOO_OFFLINE", "1")
    cat = _catalog(tmp_path, archives, server)
    z = zoo.load("tiny", root=tmp_path / "cache", catalog=cat, build=True, progress=False)
    assert z.path == str(tmp_path / "cache" / "tiny" / "built.zarr") and z.status_counts()["pending"] == 0
    assert server.requests == []


def test_offline_build_without_a_recipe_says_offline_mode_is_on(tmp_path, archives, server, monkeypatch):
    path = _catalog(tmp_path, archives, server)
    doc = json.loads(path.read_text())
    del doc["zoos"][0]["recipe"]  # mirrors only: nothing to build from
    path.write_text(json.dumps(doc))
    monkeypatch.setenv("WEIGHTZOO_OFFLINE", "1")
    with pytest.raises(OfflineError, match=r"offline mode is on .*'tiny' is not in the cache"):
        zoo.load("tiny", root=tmp_path / "cache", catalog=path, build=True, progress=False)
    assert server.requests == []
