"""Compare two stores node by node: metadata documents as dicts, array data exactly (NaN equals NaN)."""

from __future__ import annotations

import numpy as np

from zoo.chunkio import row_blocks
from zoo.interchange.skeleton import StoreSkeleton, as_numpy
from zoo.store import Zoo


def _equal(a: np.ndarray, b: np.ndarray) -> bool:
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    if a.dtype == object:
        return bool((a == b).all()) if a.size else True
    if a.dtype.kind in "fc":
        # bitwise comparison would separate NaN payloads; equal values or both NaN is what round trips promise
        return bool(np.array_equal(a, b, equal_nan=True))
    return bool(np.array_equal(a, b))


def diff_stores(a: Zoo, b: Zoo, max_differences: int = 20) -> list[str]:
    """Differences between two stores, as sentences (empty list: identical).

    Compares the set of groups and arrays, each node's ``zarr.json`` document (shape, dtype, chunks,
    codecs, fill value, attributes — so also the root attributes), and every array's values, reading
    large arrays block by block.
    """
    sa, sb = StoreSkeleton.of(a), StoreSkeleton.of(b)
    out: list[str] = []
    for path in sorted(set(sa.nodes) ^ set(sb.nodes)):
        out.append(f"node {path or '/'!r} exists only in {a.path if path in sa.nodes else b.path}")
    for path in sorted(set(sa.nodes) & set(sb.nodes)):
        if sa.nodes[path] != sb.nodes[path]:
            keys = sorted(k for k in set(sa.nodes[path]) | set(sb.nodes[path])
                          if sa.nodes[path].get(k) != sb.nodes[path].get(k))
            out.append(f"metadata of {path or '/'!r} differs in {keys}")
    for path in sorted(set(sa.arrays) & set(sb.arrays)):
        if len(out) >= max_differences:
            break
        if sa.nodes[path] != sb.nodes[path]:
            continue
        dtype = sa.dtype(path)
        for sel in row_blocks(sa.shape(path), dtype, sa.chunks(path)):
            va = as_numpy(a.read_array(path, sel), dtype)
            vb = as_numpy(b.read_array(path, sel), dtype)
            if not _equal(va, vb):
                where = "" if sel is Ellipsis else f" (rows {sel.start}..{sel.stop - 1})"
                out.append(f"values of {path!r} differ{where}")
                break
    return out
