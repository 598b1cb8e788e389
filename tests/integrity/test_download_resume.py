"""Item 9: a resumed download is placed by the response's Content-Range whatever its status (a 200 that
names its range), restarted cleanly in the same call when the server sends the whole file or skips
bytes, and the bytes already received are never judged by a false size."""

import pytest
from helpers.range_http_server import RangeHTTPServer

from zoo.catalog import pack
from zoo.download import fetch, part_path


@pytest.fixture(scope="module")
def archive(tiny_zoo_path, tmp_path_factory):
    served = tmp_path_factory.mktemp("served")
    entry = pack(tiny_zoo_path, served / "tiny.zarr.zip", license="CC0-1.0", progress=False)
    return served, entry


@pytest.mark.parametrize("reply", ["200+range", "ignore", "206"])
def test_a_cut_transfer_resumes_in_the_same_call(tmp_path, archive, reply):
    served, entry = archive
    cut = entry.size * 2 // 5
    with RangeHTTPServer(served) as server:
        server.range_reply = reply
        server.cut_once["/tiny.zarr.zip"] = cut
        dest = fetch(f"{server.url}/tiny.zarr.zip", tmp_path / "tiny.zarr.zip", sha256=entry.sha256,
                     size=entry.size, progress=False)
        first, second = server.requests_for("/tiny.zarr.zip")
    assert dest.stat().st_size == entry.size and not part_path(dest).exists()
    assert first.sent == cut and second.range == f"bytes={cut}-"
    # a 200 with a Content-Range sends only the rest; a server ignoring Range sends the file again
    assert second.sent == (entry.size if reply == "ignore" else entry.size - cut)


def test_received_bytes_survive_a_200_with_content_range(tmp_path, archive):
    """The issue's case: the .part holds a prefix; the server answers the Range request with 200 and a
    Content-Range; before, that was 'the server has N bytes but the catalog says M' and the prefix was
    deleted."""
    served, entry = archive
    dest = tmp_path / "tiny.zarr.zip"
    keep = entry.size * 2 // 5
    part_path(dest).write_bytes((served / "tiny.zarr.zip").read_bytes()[:keep])
    with RangeHTTPServer(served) as server:
        server.range_reply = "200+range"
        fetch(f"{server.url}/tiny.zarr.zip", dest, sha256=entry.sha256, size=entry.size, progress=False)
        (request,) = server.requests_for("/tiny.zarr.zip")
    assert request.status == 200 and request.sent == entry.size - keep
    assert dest.read_bytes() == (served / "tiny.zarr.zip").read_bytes()
