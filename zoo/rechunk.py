"""Packing a complete store for fast reading: weights chunked by many models instead of one.

A store is written with one chunk per model and checkpoint (``(1, 1, n_params)``), so that concurrent
writers of distinct models never touch the same chunk. Reading a batch of models then costs one chunk
(one file, one checksum, one decode) per model. Once every model is complete, :func:`pack_weights`
rewrites each ``weights/<arch_key>`` array with chunks of ``models_per_chunk`` models
(``(M, 1, n_params)``), so a batch loader reads hundreds of models per chunk. Values, dtype, codecs
(CRC32C checksums) and fill value are unchanged; only the chunk shape differs, which every Zarr reader
handles. A packed store must not be written by several processes at once (a write rewrites the whole
chunk it falls in), so packing refuses stores that still have pending models.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from zoo.chunkio import row_blocks
from zoo.errors import ZooError
from zoo.lock import locks_store
from zoo.store import CHECKED_CODECS, Zoo, open_zoo

DEFAULT_MODELS_PER_CHUNK = 256


@locks_store("path")  # rewrites arrays in place: one writer at a time (zoo.lock)
def pack_weights(path: str | os.PathLike, models_per_chunk: int = DEFAULT_MODELS_PER_CHUNK,
                 progress: bool = True) -> Zoo:
    """Rechunk every weights array of the complete local store at ``path`` to ``(models_per_chunk, 1,
    n_params)``. Each array is copied beside the old one and swapped in by renaming; an interrupted pack
    leaves the store readable and a rerun finishes it. Returns the store, open read-only."""
    if int(models_per_chunk) < 1:
        raise ZooError(f"models_per_chunk must be >= 1, got {models_per_chunk}")
    if "://" in str(path):
        raise ZooError(f"{path}: packing rewrites arrays in place and needs a local store")
    z = open_zoo(path, mode="r+")
    pending = z.status_counts()["pending"]
    if pending:
        raise ZooError(f"{path}: {pending} models are still pending; pack a store only once every model is "
                       "written (packed chunks are shared by many models, so concurrent writers would collide)")
    z.unseal()  # arrays are replaced below through zarr: no reader may keep the old consolidated metadata
    base = Path(path) / "weights"
    for key in sorted(z.architectures):
        _finish_interrupted_swap(base, key)
        arr = z.group[f"weights/{key}"]
        m = min(int(models_per_chunk), max(arr.shape[0], 1))
        if tuple(arr.chunks) == (m, 1, arr.shape[2]):
            continue
        tmp_name = f".{key}.packing"
        shutil.rmtree(base / tmp_name, ignore_errors=True)
        new = z.group["weights"].create_array(tmp_name, shape=arr.shape, chunks=(m, 1, arr.shape[2]),
                                              dtype=arr.dtype, fill_value=np.nan, **CHECKED_CODECS)
        blocks = list(row_blocks(arr.shape, arr.dtype, new.chunks))
        for sel in tqdm(blocks, desc=f"pack {key}", unit="block", disable=not progress):
            new[sel] = z.read_weights(key, sel)  # checked: a damaged or missing chunk stops the pack
        os.rename(base / key, base / f".{key}.unpacked")
        os.rename(base / tmp_name, base / key)
        shutil.rmtree(base / f".{key}.unpacked")
    return open_zoo(path)


def _finish_interrupted_swap(base: Path, key: str) -> None:
    old, new = base / f".{key}.unpacked", base / f".{key}.packing"
    if old.exists() and not (base / key).exists():
        os.rename(new if new.exists() else old, base / key)
    shutil.rmtree(old, ignore_errors=True)
