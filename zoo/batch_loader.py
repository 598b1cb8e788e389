"""Fast training batches from a store: read many models per call, shuffle in a bounded buffer.

``DataLoader(ZooDataset(...), shuffle=True)`` reads one chunk per model, and Zarr's cost per chunk
(open, read, checksum, decode) dominates small models. :class:`ZooBatchLoader` instead reads *blocks* of
models that are contiguous in the weights array — one Zarr call per block, aligned to the array's
chunks, so on a packed store (:func:`zoo.rechunk.pack_weights`) a block is one chunk — and shuffles at two
levels: the order of blocks, and models within a buffer of ``buffer_blocks`` blocks (the scheme of
``tf.data`` shuffle buffers and WebDataset shards). The next buffer is read by a background thread
while the current one is served. Memory holds two buffers, independent of the zoo's size.

Every model of the split appears exactly once per epoch; batches are full except possibly the last.
Blocks are decoded straight into the buffer by :meth:`Zoo.read_weights <zoo.store.Zoo.read_weights>`
(the store's checked read: :mod:`zoo.chunkio`'s direct chunk reads where the array allows, else zarr),
and each batch is gathered from it with one ``index_select``; rows of other splits inside a block are
read but never served.
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Iterator

import numpy as np
import torch

from zoo.dataset import ZooDataset
from zoo.errors import ZooError

DEFAULT_BLOCK_MODELS = 256


class ZooBatchLoader:
    """Batches ``(x, y)`` of a :class:`~zoo.dataset.ZooDataset`, read block by block.

    Args:
        dataset: which models, checkpoint, targets, view, normalisation and transform.
        batch_size: models per batch.
        shuffle: shuffle blocks and models within buffers (seeded: ``seed`` + epoch).
        block_models: models per read; rounded up to a multiple of the weights chunk (default: the
            chunk's model count, at least 256).
        buffer_blocks: blocks mixed per shuffle buffer (more = better mixing, more memory).
        drop_last: drop a final partial batch.
        prefetch: read the next buffer in a background thread.

    ``x`` is ``[B, n_params]`` float32 (view ``flat``), ``{name: [B, *shape]}`` (``layers``) or the token
    dict (``tokens``); ``y`` is ``[B]`` / ``[B, k]`` float32 targets, or model ids ``[B]`` without a
    target: what :meth:`ZooDataset.examples <zoo.dataset.ZooDataset.examples>` makes of a batch, so the same
    as the dataset's items, stacked. ``transform`` must accept a batch ``[B, n_params]`` (those of
    :mod:`zoo.augment` do).
    """

    def __init__(self, dataset: ZooDataset, batch_size: int = 64, shuffle: bool = True, seed: int = 0,
                 block_models: int | None = None, buffer_blocks: int = 4, drop_last: bool = False,
                 prefetch: bool = True) -> None:
        if batch_size < 1 or buffer_blocks < 1:
            raise ZooError(f"batch_size and buffer_blocks must be >= 1, got {batch_size} and {buffer_blocks}")
        self.ds = dataset
        self.batch_size = int(batch_size)
        self.shuffle = bool(shuffle)
        self.seed = int(seed)
        self.buffer_blocks = int(buffer_blocks)
        self.drop_last = bool(drop_last)
        self.prefetch = bool(prefetch)
        self.epoch = 0
        self.array = dataset.z.weights_array(dataset.arch)
        chunk = int(self.array.metadata.chunk_grid.chunk_shape[0])
        want = int(block_models or max(chunk, DEFAULT_BLOCK_MODELS))
        self.block_rows = -(-want // chunk) * chunk
        rows = dataset.rows
        self._order = np.argsort(rows, kind="stable")  # dataset positions by storage row
        starts = rows[self._order] // self.block_rows
        bounds = np.flatnonzero(np.diff(starts)) + 1
        self._blocks = np.split(self._order, bounds) if len(rows) else []  # dataset positions of each block
        self._block_start = [int(rows[b[0]] // self.block_rows * self.block_rows) for b in self._blocks]

    def __len__(self) -> int:
        n = len(self.ds)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def set_epoch(self, epoch: int) -> None:
        """Choose the shuffle of the next iteration (it also advances by one after every epoch)."""
        self.epoch = int(epoch)

    # ------------------------------------------------------------------ reading
    def _read_buffer(self, blocks: list[int]) -> tuple[torch.Tensor, np.ndarray, np.ndarray]:
        """``(weights [rows read, n_params], row of each model in it [m], dataset positions [m])``.

        Each block is one contiguous, chunk-aligned read decoded straight into the buffer (no copies
        to select the split's rows: batches gather them)."""
        spans = [(self._block_start[b], min(self._block_start[b] + self.block_rows, self.array.shape[0]))
                 for b in blocks]
        buffer = np.empty((sum(stop - start for start, stop in spans), self.array.shape[2]), dtype=self.array.dtype)
        local, offset = [], 0
        for b, (start, stop) in zip(blocks, spans):
            target = buffer[offset:offset + stop - start]
            # the store's one checked read: damaged or missing chunks of complete models raise
            self.ds.z.read_weights(self.ds.arch, slice(start, stop), self.ds.checkpoint, out=target)
            local.append(self.ds.rows[self._blocks[b]] - start + offset)
            offset += stop - start
        return torch.from_numpy(buffer), np.concatenate(local), np.concatenate([self._blocks[b] for b in blocks])

    def _buffers(self, rng: np.random.Generator) -> Iterator[tuple[torch.Tensor, np.ndarray, np.ndarray]]:
        order = rng.permutation(len(self._blocks)) if self.shuffle else np.arange(len(self._blocks))
        groups = [order[i:i + self.buffer_blocks].tolist() for i in range(0, len(order), self.buffer_blocks)]
        if not self.prefetch:
            for g in groups:
                yield self._read_buffer(g)
            return
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="zoo-prefetch") as pool:
            pending: Future | None = pool.submit(self._read_buffer, groups[0]) if groups else None
            for i in range(len(groups)):
                current = pending.result()
                pending = pool.submit(self._read_buffer, groups[i + 1]) if i + 1 < len(groups) else None
                yield current

    # ------------------------------------------------------------------ batches
    def __iter__(self) -> Iterator[tuple[Any, Any]]:
        rng = np.random.default_rng((self.seed, self.epoch))
        b = self.batch_size
        carry_w, carry_p = torch.empty(0, self.array.shape[2]), np.empty(0, dtype=np.int64)
        for weights, local, positions in self._buffers(rng):
            order = rng.permutation(len(positions)) if self.shuffle else np.arange(len(positions))
            rows, positions = torch.from_numpy(local[order]), positions[order]
            i = 0
            if len(carry_p):
                i = min(b - len(carry_p), len(rows))
                carry_w = torch.cat([carry_w, weights.index_select(0, rows[:i])])
                carry_p = np.concatenate([carry_p, positions[:i]])
                if len(carry_p) < b:
                    continue
                yield self.ds.examples(carry_w, carry_p)
            while i + b <= len(rows):
                yield self.ds.examples(weights.index_select(0, rows[i:i + b]), positions[i:i + b])
                i += b
            carry_w, carry_p = weights.index_select(0, rows[i:]), positions[i:]
            del weights  # only the prefetched buffer stays alive while the next one is read
        if len(carry_p) and not self.drop_last:
            yield self.ds.examples(carry_w, carry_p)
        self.epoch += 1
