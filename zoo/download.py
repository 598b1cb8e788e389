"""Fetch one zoo archive into the cache: resumable, verified, atomic, safe under concurrency.

``fetch(url, dest, sha256=..., size=...)`` downloads into a hidden ``.<dest>.part`` file beside
``dest`` and renames it to ``dest`` only once its size and sha256 match, all under a file lock
(``filelock``), so a partial or corrupt download never looks complete and two processes loading the
same zoo end with one intact copy (the second finds ``dest`` when it gets the lock).

- ``http(s)://`` through ``requests``: a tqdm bar, and an interrupted transfer resumes from the
  ``.part`` file with an HTTP ``Range: bytes=<have>-`` request (within the same call, and on the next
  call if every retry failed). The body is written where the response's ``Content-Range`` says it
  starts, whatever the status (some servers answer with 200 and a ``Content-Range``); a server that
  ignores the range, or skips bytes, restarts the file from byte 0 in the same call.
- ``hf://datasets/<owner>/<repo>[@<revision>]/<path>`` through ``huggingface_hub.hf_hub_download``
  (its own resume and progress bar), then verified like any other download.

``fetch_first(mirrors, ...)`` tries mirrors in order and, if all fail, raises one error listing
every mirror's failure.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import sys
import time
import urllib.parse
from pathlib import Path
from typing import Iterator, Mapping, Sequence

from tqdm.auto import tqdm

from zoo.archive import sha256_of
from zoo.errors import ChecksumError, DownloadError

_HF = re.compile(r"^hf://datasets/(?P<repo>[^/@]+/[^/@]+)(?:@(?P<rev>[^/]+))?/(?P<path>.+)$")
_BLOCK = 1 << 16


def parse_hf_url(url: str) -> tuple[str, str | None, str]:
    """``hf://datasets/<owner>/<repo>[@<revision>]/<path>`` -> ``(repo_id, revision, path)``.

    The revision may be URL-quoted (``@refs%2Fpr%2F1``), as in ``huggingface_hub.HfFileSystem``.
    """
    m = _HF.match(url)
    if m is None:
        raise ValueError(f"expected hf://datasets/<owner>/<repo>[@<revision>]/<path in repo>, got {url!r}")
    rev = urllib.parse.unquote(m["rev"]) if m["rev"] else None
    return m["repo"], rev, m["path"]


@contextlib.contextmanager
def file_lock(path: str | os.PathLike, what: str) -> Iterator[None]:
    """Hold an exclusive inter-process lock on ``path`` (created if needed); say so when waiting."""
    from filelock import FileLock, Timeout

    lock = FileLock(str(path))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        print(f"weightzoo: waiting for another process to finish {what} (lock {path})", file=sys.stderr)
        lock.acquire()
    try:
        yield
    finally:
        lock.release()


def part_path(dest: str | os.PathLike) -> Path:
    """The hidden file a download of ``dest`` is written to until it is verified."""
    dest = Path(dest)
    return dest.with_name(f".{dest.name}.part")


def fetch(url: str, dest: str | os.PathLike, *, sha256: str, size: int | None = None, progress: bool = True,
          retries: int = 3, timeout: float = 30.0) -> Path:
    """Download ``url`` to ``dest`` unless ``dest`` exists; verify ``size`` (bytes) and ``sha256``.

    Raises :class:`DownloadError` naming the URL (HTTP status, connection failure) and
    :class:`ChecksumError` when the bytes differ from the catalog (the ``.part`` file is deleted).
    An interrupted transfer keeps its ``.part`` file so the next call resumes it.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    with file_lock(dest.with_name(f".{dest.name}.lock"), f"downloading {dest}"):
        if dest.exists():
            return dest
        part = part_path(dest)
        if url.startswith(("http://", "https://")):
            _http_download(url, part, size=size, progress=progress, retries=retries, timeout=timeout)
        elif url.startswith("hf://"):
            _hf_download(url, part)
        else:
            raise DownloadError(f"{url}: unsupported URL scheme (mirrors are http://, https:// or hf://)")
        verify(part, url, sha256=sha256, size=size)
        os.replace(part, dest)
    return dest


def fetch_first(mirrors: Sequence[str], dest: str | os.PathLike, *, sha256: str, size: int | None = None,
                progress: bool = True, retries: int = 3) -> Path:
    """Try ``mirrors`` in order until one delivers a verified ``dest``; the error lists every failure."""
    if not mirrors:
        raise DownloadError(f"{dest}: no mirrors to download from")
    failures = []
    for url in mirrors:
        try:
            return fetch(url, dest, sha256=sha256, size=size, progress=progress, retries=retries)
        except DownloadError as exc:
            failures.append(str(exc))
            if progress:
                print(f"weightzoo: mirror failed: {exc}", file=sys.stderr)
    listed = "\n  - ".join(failures)
    raise DownloadError(f"no mirror delivered {Path(dest).name} ({len(failures)} tried):\n  - {listed}")


def verify(path: Path, url: str, *, sha256: str, size: int | None) -> None:
    """Check a finished download; on a mismatch delete it and raise :class:`ChecksumError`."""
    have = path.stat().st_size
    if size is not None and have != size:
        path.unlink(missing_ok=True)
        raise ChecksumError(f"{url}: downloaded {have} bytes but the catalog says {size}; the download was deleted")
    digest = sha256_of(path)
    if digest != sha256:
        path.unlink(missing_ok=True)
        raise ChecksumError(f"{url}: sha256 mismatch: expected {sha256}, got {digest}; the download was deleted "
                            "(a corrupt or changed archive, or a wrong catalog entry)")


# ---------------------------------------------------------------------- http(s)
def _http_download(url: str, part: Path, *, size: int | None, progress: bool, retries: int, timeout: float) -> None:
    """Fill ``part`` with the body of ``url``, resuming what it holds; retry after a cut transfer."""
    import requests
    import urllib3

    attempt = 0
    while True:
        before = part.stat().st_size if part.exists() else 0
        try:
            _http_transfer(url, part, size=size, progress=progress, timeout=timeout)
            return
        except (requests.ConnectionError, requests.Timeout, urllib3.exceptions.HTTPError, _ShortBody) as exc:
            have = part.stat().st_size if part.exists() else 0
            if have <= before or attempt >= retries:  # nothing arrived, or out of retries: give up
                kept = f"; the {have} bytes received are kept in {part} and the next attempt resumes" if have else ""
                raise DownloadError(f"{url}: transfer failed ({type(exc).__name__}: {exc}){kept}") from exc
            attempt += 1
            time.sleep(min(0.2 * attempt, 2.0))


class _ShortBody(Exception):
    """The connection closed before the announced number of bytes arrived."""


def _http_transfer(url: str, part: Path, *, size: int | None, progress: bool, timeout: float) -> None:
    import requests

    have = part.stat().st_size if part.exists() else 0
    if size is not None and have > size:  # not a prefix of the archive we want
        part.unlink()
        have = 0
    # identity encoding: byte offsets (Range) and the sha256 refer to the archive file itself
    headers = {"Accept-Encoding": "identity", **({"Range": f"bytes={have}-"} if have else {})}
    with requests.get(url, headers=headers, stream=True, timeout=timeout) as r:
        if r.status_code == 416 and have:  # nothing left to send: the .part is already whole
            return
        if r.status_code >= 400:
            raise DownloadError(f"{url}: HTTP {r.status_code} {r.reason}")
        start, total = _body_span(url, r.status_code, r.headers)
        if start > have:  # the server skips bytes we do not have: start over with the whole file
            if not have:
                raise DownloadError(f"{url}: asked for the whole file but the server sent "
                                    f"Content-Range {r.headers.get('Content-Range')!r}")
            r.close()
            part.unlink()
            _http_transfer(url, part, size=size, progress=progress, timeout=timeout)
            return
        if size is not None and total is not None and total != size:
            part.unlink(missing_ok=True)
            raise ChecksumError(f"{url}: the server has {total} bytes but the catalog says {size}; not downloaded")
        length = r.headers.get("Content-Length")
        received = 0
        # the body goes where the server says it starts: after our bytes (a resumed 206, or a 200 that
        # still names its range), or at 0 (a server that ignores Range sends the whole file again)
        with open(part, "r+b" if start else "wb") as f, tqdm(
                total=size or total, initial=start, unit="B", unit_scale=True, unit_divisor=1024,
                desc=part.name[1:].removesuffix(".part"), disable=not progress) as bar:
            f.seek(start)
            f.truncate()
            # raw.stream hands over every block as it arrives, so a cut keeps all bytes received
            for block in r.raw.stream(_BLOCK, decode_content=False):
                f.write(block)
                received += len(block)
                bar.update(len(block))
        if length is not None and received != int(length):
            raise _ShortBody(f"received {received} of {length} bytes")


def _body_span(url: str, status: int, headers: Mapping[str, str]) -> tuple[int, int | None]:
    """``(offset of the body in the file, size of the file or None)`` of a 200 or 206 response.

    ``Content-Range`` decides where the body starts whatever the status (some servers answer a Range
    request with 200 *and* a ``Content-Range``); without it, a 206 is malformed and a 200 is the whole
    file from byte 0 (its size is then ``Content-Length``).
    """
    value = headers.get("Content-Range")
    length = headers.get("Content-Length")
    if value:
        m = re.match(r"bytes (\d+)-(\d+)/(\d+|\*)$", value.strip())
        if m is None:
            raise DownloadError(f"{url}: unreadable Content-Range {value!r}")
        start, end = int(m.group(1)), int(m.group(2))
        if length is not None and int(length) != end - start + 1:
            raise DownloadError(f"{url}: Content-Range {value!r} and Content-Length {length} disagree")
        return start, None if m.group(3) == "*" else int(m.group(3))
    if status == 206:
        raise DownloadError(f"{url}: a 206 Partial Content response without a Content-Range header")
    return 0, int(length) if length is not None else None


# ---------------------------------------------------------------------- hf://
def _hf_download(url: str, part: Path) -> None:
    """Fetch an ``hf://datasets/...`` file with ``huggingface_hub`` and move it to ``part``.

    ``hf_hub_download`` keeps its own ``.incomplete`` file in ``local_dir`` and resumes it; the
    folder is removed once the file has been moved out.
    """
    repo_id, revision, filename = parse_hf_url(url)
    try:
        from huggingface_hub import hf_hub_download
    except ImportError as exc:  # pragma: no cover - a declared dependency
        raise DownloadError(f"{url}: hf:// mirrors need the package huggingface_hub ({exc})") from exc
    local_dir = part.with_name(f"{part.name}.hf")
    try:
        local = hf_hub_download(repo_id=repo_id, filename=filename, repo_type="dataset", revision=revision,
                                local_dir=str(local_dir))
    except Exception as exc:  # huggingface_hub raises many types (HTTP, offline, not found, auth)
        raise DownloadError(f"{url}: {type(exc).__name__}: {exc}") from exc
    os.replace(local, part)
    shutil.rmtree(local_dir, ignore_errors=True)
