"""Block specs: how a flat vector ``[N]`` is cut into contiguous blocks that share a coefficient.

A :class:`BlockSpec` lists blocks in order; block ``k`` covers ``[offsets[k], offsets[k] + sizes[k])``.
Blocks must tile ``[0, N)`` exactly (contiguous, in order, no gaps, no overlap), which every op checks
before launching a kernel. Typical specs: one block per parameter tensor (:meth:`BlockSpec.from_layout`,
aTLAS), one per layer (layer-wise AdaMerging), one for the whole vector (task arithmetic), or finer
fixed-size blocks (:meth:`BlockSpec.split`).
"""

from __future__ import annotations

import bisect
import functools
import math
from dataclasses import dataclass, field
from typing import Literal, Sequence

import torch

from kernels.layout import ParamLayout


@dataclass(frozen=True)
class BlockSpec:
    """Contiguous blocks tiling a flat vector: ``names[k]``, ``offsets[k]``, ``sizes[k]`` (elements)."""

    names: tuple[str, ...]
    offsets: tuple[int, ...]
    sizes: tuple[int, ...]
    _cache: dict = field(default_factory=dict, compare=False, repr=False, hash=False)

    def __post_init__(self) -> None:
        if not (len(self.names) == len(self.offsets) == len(self.sizes)):
            raise ValueError(f"BlockSpec: names ({len(self.names)}), offsets ({len(self.offsets)}) and sizes "
                             f"({len(self.sizes)}) must have the same length")
        if not self.sizes:
            raise ValueError("BlockSpec: needs at least one block")
        expected = 0
        for name, off, size in zip(self.names, self.offsets, self.sizes):
            if size < 1:
                raise ValueError(f"BlockSpec: block {name!r} has size {size}; sizes must be >= 1")
            if off != expected:
                raise ValueError(f"BlockSpec: block {name!r} starts at {off}, expected {expected} "
                                 "(blocks must be contiguous and in order)")
            expected += size

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_sizes(cls, sizes: Sequence[int], names: Sequence[str] | None = None) -> "BlockSpec":
        """Blocks of the given ``sizes`` laid end to end from offset 0."""
        sizes = tuple(int(s) for s in sizes)
        offsets = tuple(int(o) for o in ([0] + list(_cumsum(sizes))[:-1]))
        names = tuple(names) if names is not None else tuple(f"block{k}" for k in range(len(sizes)))
        return cls(names, offsets, sizes)

    @classmethod
    def single(cls, n: int, name: str = "all") -> "BlockSpec":
        """One block covering the whole vector ``[n]``."""
        return cls((name,), (0,), (int(n),))

    @classmethod
    def uniform(cls, n: int, block_size: int) -> "BlockSpec":
        """Blocks of ``block_size`` elements (the last one shorter when ``n`` is not a multiple)."""
        if block_size < 1:
            raise ValueError(f"BlockSpec.uniform: block_size must be >= 1, got {block_size}")
        sizes = [block_size] * (n // block_size) + ([n % block_size] if n % block_size else [])
        return cls.from_sizes(sizes)

    @classmethod
    def from_layout(cls, layout: ParamLayout,
                    granularity: Literal["tensor", "layer", "model"] = "tensor") -> "BlockSpec":
        """Blocks from a :class:`~kernels.layout.ParamLayout`.

        ``"tensor"``: one block per parameter tensor (aTLAS); ``"layer"``: one per layer index, which
        must be contiguous in the flat vector (layer-wise AdaMerging); ``"model"``: one block.
        """
        if granularity == "tensor":
            return cls(tuple(e.name for e in layout), tuple(e.offset for e in layout),
                       tuple(e.numel for e in layout))
        if granularity == "layer":
            slices = layout.layer_slices()
            return cls(tuple(f"layer{k}" for k in range(len(slices))), tuple(s for s, _ in slices),
                       tuple(e - s for s, e in slices))
        if granularity == "model":
            return cls.single(layout.n_params)
        raise ValueError(f"granularity must be 'tensor', 'layer' or 'model', got {granularity!r}")

    def split(self, max_size: int) -> "BlockSpec":
        """A finer spec: every block cut into pieces of at most ``max_size`` elements."""
        names, sizes = [], []
        for name, size in zip(self.names, self.sizes):
            pieces = math.ceil(size / max_size)
            for j in range(pieces):
                names.append(f"{name}[{j}]" if pieces > 1 else name)
                sizes.append(min(max_size, size - j * max_size))
        return BlockSpec.from_sizes(sizes, names)

    # ------------------------------------------------------------------ queries
    @property
    def n_blocks(self) -> int:
        return len(self.sizes)

    @property
    def numel(self) -> int:
        """Length ``N`` of the vector the blocks tile."""
        return self.offsets[-1] + self.sizes[-1]

    def check_covers(self, n: int, what: str = "vector") -> None:
        """Raise ``ValueError`` unless the blocks tile a ``[n]`` vector exactly."""
        if self.numel != n:
            raise ValueError(f"block spec covers {self.numel} elements ({self.n_blocks} blocks) but the {what} "
                             f"has {n}; the blocks must tile the whole vector")

    def block_index(self, device: torch.device | str | None = None) -> torch.Tensor:
        """``[N]`` int64: the block of every element (for tests and small vectors)."""
        return torch.repeat_interleave(torch.arange(self.n_blocks, device=device),
                                       torch.tensor(self.sizes, device=device))

    def chunk_table(self, chunk: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Work items of at most ``chunk`` elements that never straddle a block boundary.

        Returns ``(block [C] int32, start [C] int64, end [C] int64)``; Triton programs read their block
        id and element range from these (integer offsets, so the CPU interpreter can run them too).
        """
        key = ("chunks", int(chunk), str(device))
        if key not in self._cache:
            sizes = torch.tensor(self.sizes, dtype=torch.int64)
            offsets = torch.tensor(self.offsets, dtype=torch.int64)
            per_block = (sizes + chunk - 1) // chunk
            block = torch.repeat_interleave(torch.arange(self.n_blocks, dtype=torch.int64), per_block)
            first = torch.cumsum(per_block, 0) - per_block
            local = torch.arange(int(per_block.sum()), dtype=torch.int64) - first[block]
            start = offsets[block] + local * chunk
            end = torch.minimum(start + chunk, offsets[block] + sizes[block])
            self._cache[key] = (block.to(torch.int32).to(device), start.to(device), end.to(device))
        return self._cache[key]

    def segments(self, seg: int) -> list[tuple[int, int, int, int, tuple[int, ...]]]:
        """Cut ``[0, N)`` into windows of ``seg`` elements for the chunked PyTorch references.

        Each item is ``(start, end, k0, k1, sizes)``: blocks ``k0 .. k1-1`` overlap the window and
        ``sizes`` are the lengths of those overlaps (they sum to ``end - start``).
        """
        key = ("segments", int(seg))
        if key not in self._cache:
            ends = list(_cumsum(self.sizes))
            out = []
            n = self.numel
            for s in range(0, n, seg):
                e = min(s + seg, n)
                k0 = bisect.bisect_right(ends, s)
                k1 = bisect.bisect_left(ends, e) + 1
                sizes = tuple(min(e, self.offsets[k] + self.sizes[k]) - max(s, self.offsets[k]) for k in range(k0, k1))
                out.append((s, e, k0, k1, sizes))
            self._cache[key] = out
        return self._cache[key]


@functools.lru_cache(maxsize=64)
def spec_from_sizes(sizes: tuple[int, ...]) -> BlockSpec:
    """Cached :meth:`BlockSpec.from_sizes` (the custom ops receive the spec as a list of sizes)."""
    return BlockSpec.from_sizes(sizes)


def as_block_spec(blocks: "BlockSpec | ParamLayout | Sequence[int] | None", n: int) -> BlockSpec:
    """Normalise ``blocks`` (a spec, a layout → one block per tensor, a list of sizes, or ``None`` → one
    block) and check that it tiles a ``[n]`` vector."""
    if blocks is None:
        spec = BlockSpec.single(n)
    elif isinstance(blocks, BlockSpec):
        spec = blocks
    elif isinstance(blocks, ParamLayout):
        spec = BlockSpec.from_layout(blocks)
    else:
        spec = BlockSpec.from_sizes([int(s) for s in blocks])
    spec.check_covers(n)
    return spec


def _cumsum(values: Sequence[int]) -> list[int]:
    out, total = [], 0
    for v in values:
        total += int(v)
        out.append(total)
    return out
