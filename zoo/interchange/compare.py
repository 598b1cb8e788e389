"""Compare two stores node by node: metadata documents as dicts, array data exactly (NaN equals NaN)."""

from __future__ import annotations

import copy

import numpy as np

from zoo.chunkio import row_blocks
from zoo.format import ROOT_ATTR
from zoo.interchange.skeleton import StoreSkeleton, as_numpy
from zoo.store import CONSOLIDATED_ATTR, SNAPSHOT, Zoo


def _equal(a: np.ndarray, b: np.ndarray) -> bool:
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    if a.dtype == object:
        return bool((a == b).all()) if a.size else True
    if a.dtype.kind in "fc":
        # bitwise comparison would separate NaN payloads; equal values or both NaN is what round trips promise
        return bool(np.array_equal(a, b, equal_nan=True))
    return bool(np.array_equal(a, b))


def _content(skel: StoreSkeleton) -> StoreSkeleton:
    """The skeleton without a consolidated store's seal (the snapshot array, zarr's consolidated metadata
    and the root attribute with the snapshot's hash): derived data that every writing command rebuilds."""
    nodes = {p: d for p, d in skel.nodes.items() if p != SNAPSHOT}
    root = copy.deepcopy(nodes[""])
    root.pop("consolidated_metadata", None)
    root.get("attributes", {}).get(ROOT_ATTR, {}).pop(CONSOLIDATED_ATTR, None)
    nodes[""] = root
    return StoreSkeleton(nodes)


def diff_stores(a: Zoo, b: Zoo, max_differences: int = 20) -> list[str]:
    """Differences between two stores, as sentences (empty list: identical).

    Compares the set of groups and arrays, each node's ``zarr.json`` document (shape, dtype, chunks,
    codecs, fill value, attributes — so also the root attributes), and every array's values, reading
    large arrays block by block. A consolidated store's seal (``docs/FORMAT.md``) is derived, not
    content: whether a store has one is not a difference.
    """
    sa, sb = _content(StoreSkeleton.of(a)), _content(StoreSkeleton.of(b))
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
