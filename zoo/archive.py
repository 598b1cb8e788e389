"""Zoo archives: write a store as ``.zarr.zip`` or ``.zarr.tar``, hash them, unpack a tar atomically.

``zarr.zip``
    The store's files at the root of a zip (``zarr.json``, ``weights/<key>/c/0/0/0``, ...), stored
    without compression (the chunks are float32 that barely compress, and stored members can be read
    in place with random access). ``zoo.open("x.zarr.zip")`` reads it through ``zarr.storage.ZipStore``.
``zarr.tar``
    A tar (optionally gzip-compressed) holding one directory ``<name>.zarr/``; it is unpacked into the
    cache and opened as a directory store.

Both writers are reproducible: members sorted by name, fixed timestamps and owners, so packing the
same store twice gives the same bytes and the same sha256.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tarfile
import uuid
import zipfile
from pathlib import Path
from typing import Iterator

from tqdm.auto import tqdm

from zoo.atomic import atomic_output
from zoo.errors import ZooError

ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)  # the earliest timestamp a zip can hold


def sha256_of(path: str | os.PathLike, block: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in ``block``-byte pieces."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(block):
            h.update(chunk)
    return h.hexdigest()


def _store_files(store: Path) -> Iterator[tuple[Path, str]]:
    """``(file, name relative to the store)`` of every file of a directory store, sorted by name;
    hidden temporaries (``.name``) are skipped."""
    files = []
    for dirpath, dirnames, filenames in os.walk(store):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        for fn in filenames:
            if not fn.startswith("."):
                full = Path(dirpath) / fn
                files.append((full, full.relative_to(store).as_posix()))
    return iter(sorted(files, key=lambda t: t[1]))


def write_zip(store: str | os.PathLike, out: str | os.PathLike, *, progress: bool = True) -> Path:
    """Zip a directory store into ``out`` (a ``.zarr.zip`` readable in place by ``zoo.open``)."""
    store, out = _check_store_dir(store), Path(out)
    files = list(_store_files(store))

    with atomic_output(out, overwrite=True) as tmp:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
            for full, name in tqdm(files, desc=f"zipping {store.name}", unit="file", disable=not progress):
                info = zipfile.ZipInfo(name, date_time=ZIP_EPOCH)
                info.external_attr = 0o644 << 16
                with open(full, "rb") as src, zf.open(info, "w", force_zip64=True) as dst:
                    shutil.copyfileobj(src, dst, 1 << 20)
    return out


def write_tar(store: str | os.PathLike, out: str | os.PathLike, *, progress: bool = True) -> Path:
    """Tar a directory store into ``out``: one top-level directory named like the store (``x.zarr/``).

    Only files are stored (every Zarr v3 directory holds a ``zarr.json``, so no directory is empty).
    """
    store, out = _check_store_dir(store), Path(out)
    top = store.name if store.name.endswith(".zarr") else store.name + ".zarr"
    files = list(_store_files(store))

    with atomic_output(out, overwrite=True) as tmp:
        with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tf:
            for full, name in tqdm(files, desc=f"packing {store.name}", unit="file", disable=not progress):
                info = tarfile.TarInfo(f"{top}/{name}")
                info.size, info.mode = full.stat().st_size, 0o644
                with open(full, "rb") as f:
                    tf.addfile(info, f)  # TarInfo defaults: mtime 0, uid/gid 0, no owner names
    return out


def unpack_tar(archive: str | os.PathLike, dest: str | os.PathLike) -> Path:
    """Unpack a ``.zarr.tar`` (plain or gzip) into the directory ``dest``, atomically.

    The archive must hold regular files under exactly one top-level ``*.zarr`` directory; it is
    extracted into a hidden temporary directory beside ``dest``, then renamed to ``dest``, so a
    half-unpacked store never exists under ``dest``.
    """
    archive, dest = Path(archive), Path(dest)
    tmp = dest.with_name(f".{dest.name}.unpack-{uuid.uuid4().hex[:8]}")
    try:
        with tarfile.open(archive, "r:*") as tf:
            members = tf.getmembers()
            tops = {m.name.split("/", 1)[0] for m in members}
            if len(tops) != 1 or not next(iter(tops)).endswith(".zarr"):
                raise ZooError(f"{archive}: a .zarr.tar holds one top-level '<name>.zarr/' directory, "
                               f"found {sorted(tops)[:5]}")
            for m in members:
                parts = Path(m.name).parts
                if not (m.isfile() or m.isdir()) or m.name.startswith("/") or ".." in parts:
                    raise ZooError(f"{archive}: member {m.name!r} is not a plain file inside the store")
            kwargs = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
            tf.extractall(tmp, **kwargs)
        os.replace(tmp / next(iter(tops)), dest)
    except tarfile.TarError as exc:
        raise ZooError(f"{archive}: not a readable tar archive ({exc})") from exc
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


def _check_store_dir(store: str | os.PathLike) -> Path:
    p = Path(store)
    if not (p / "zarr.json").is_file():
        raise ZooError(f"{p}: not a directory store (no zarr.json); pack a zoo directory such as runs/demo/zoo.zarr")
    return p
