"""Direct reads of whole chunks of the store's weights arrays (a fast path for batch loading).

zarr-python decodes a chunk through an asynchronous codec pipeline that costs about 0.5-1 ms per chunk
on top of the bytes themselves; reading a 2.5 MB packed chunk and checking its CRC32C directly takes
about a fifth of that. :class:`DirectChunkReader` does exactly what the Zarr v3 spec says for the codec
chain weightzoo writes — ``bytes`` (little endian, C order) then ``crc32c`` (a 4-byte little-endian
CRC32C of the encoded bytes appended) — on a local store with the default chunk-key encoding, and
nothing else: :func:`direct_reader` returns None for any other array, and callers fall back to zarr.
A missing chunk reads as the fill value, as in zarr; a checksum mismatch raises
:class:`~zoo.errors.CorruptChunkError`. The tests compare it with zarr's reads.

It also says how to stream a large array in blocks of about :data:`BLOCK_BYTES`: :func:`block_rows` and
:func:`row_blocks` (used by packing, the interchange formats and store comparison). This module imports
nothing beyond numpy, zarr and google_crc32c, so ``zoo.rechunk`` and ``zoo.batch_loader`` stay free of the
interchange formats' dependencies (h5py, datasets, safetensors).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator, Sequence

import google_crc32c
import numpy as np
import zarr

from zoo.errors import CorruptChunkError

# about this many bytes per read when an array is streamed block by block
BLOCK_BYTES = 32 << 20


def block_rows(shape: Sequence[int], dtype: Any, chunks: Sequence[int]) -> int:
    """Rows per block when streaming an array of ``shape`` and ``dtype`` whose chunks (or shards, the
    unit a write touches) have shape ``chunks``: a whole number of chunks along the first axis, about
    :data:`BLOCK_BYTES` in all, at least one chunk. Strings (``object`` dtype) count 8 bytes a value."""
    itemsize = 8 if np.dtype(dtype) == object else np.dtype(dtype).itemsize
    row_bytes = int(np.prod(tuple(shape)[1:], dtype=np.int64)) * itemsize
    chunk_rows = max(int(chunks[0]), 1) if len(chunks) else 1
    return max(1, BLOCK_BYTES // max(row_bytes * chunk_rows, 1)) * chunk_rows


def row_blocks(shape: Sequence[int], dtype: Any, chunks: Sequence[int]) -> Iterator[Any]:
    """Selections that cover an array block by block: slices of its first axis, :func:`block_rows` long
    and aligned to its chunks (the last one shorter), or a single ``Ellipsis`` for a 0-d array."""
    if not len(shape):
        yield Ellipsis
        return
    per = block_rows(shape, dtype, chunks)
    for start in range(0, int(shape[0]), per):
        yield slice(start, min(start + per, int(shape[0])))


class DirectChunkReader:
    """Whole-chunk reads of one array (see the module docstring for when it applies)."""

    def __init__(self, array: zarr.Array, root: Path) -> None:
        self.dir = root / array.path
        self.chunks = tuple(int(c) for c in array.metadata.chunk_grid.chunk_shape)
        self.dtype = np.dtype(array.dtype).newbyteorder("<")
        self.fill = np.asarray(array.metadata.fill_value, dtype=self.dtype)
        self.nbytes = int(np.prod(self.chunks)) * self.dtype.itemsize

    def chunk(self, coords: tuple[int, ...]) -> np.ndarray:
        """Chunk ``coords`` as a new array of the full chunk shape (edge chunks include their padding;
        the fill value where the chunk was never written)."""
        out = np.empty(self.chunks, dtype=self.dtype)
        if not self._read_into(coords, out):
            out[...] = self.fill
        return out

    def _read_into(self, coords: tuple[int, ...], out: np.ndarray) -> bool:
        """Decode chunk ``coords`` straight into ``out`` (C-contiguous, one full chunk); False if missing."""
        path = self.dir.joinpath("c", *(str(int(c)) for c in coords))
        target = out.reshape(-1).view(np.uint8)
        try:
            with open(path, "rb", buffering=0) as f:
                got = f.readinto(target)
                tail = f.read(5)
        except FileNotFoundError:
            return False
        if got != self.nbytes or len(tail) != 4:
            raise CorruptChunkError(f"chunk {path} has {got + len(tail)} bytes, expected {self.nbytes + 4}")
        if google_crc32c.value(target) != int.from_bytes(tail, "little"):
            raise CorruptChunkError(f"chunk {path} fails its CRC32C checksum")
        return True

    def rows(self, start: int, stop: int, index: int, out: np.ndarray) -> None:
        """``out[:] = array[start:stop, index, :]`` for a 3-D array chunked ``(m, 1, n)``; whole chunks are
        read straight into ``out``, partial ones through a temporary."""
        m = self.chunks[0]
        for first in range(start // m * m, stop, m):
            if first >= start and first + m <= stop and out.dtype == self.dtype and out.flags.c_contiguous:
                part = out[first - start:first - start + m]
                if not self._read_into((first // m, index, 0), part):
                    part[...] = self.fill
                continue
            block = self.chunk((first // m, index, 0))[:, 0, :]
            lo, hi = max(start, first), min(stop, first + m)
            out[lo - start:hi - start] = block[lo - first:hi - first]


def direct_reader(array: zarr.Array) -> DirectChunkReader | None:
    """A :class:`DirectChunkReader` for ``array`` if it is a local, unsharded 3-D array chunked
    ``(m, 1, n)`` with exactly the codecs ``bytes`` (little endian) + ``crc32c``; else None."""
    meta = array.metadata
    store = array.store
    if not isinstance(store, zarr.storage.LocalStore) or getattr(meta, "zarr_format", 3) != 3:
        return None
    codecs = [c.to_dict() for c in meta.codecs]
    if codecs != [{"name": "bytes", "configuration": {"endian": "little"}}, {"name": "crc32c"}]:
        return None
    encoding = meta.chunk_key_encoding.to_dict()
    if encoding.get("name") != "default" or encoding.get("configuration", {}).get("separator", "/") != "/":
        return None
    chunks = tuple(int(c) for c in meta.chunk_grid.chunk_shape)
    if len(chunks) != 3 or chunks[1] != 1 or chunks[2] != array.shape[2]:
        return None
    return DirectChunkReader(array, Path(store.root))
