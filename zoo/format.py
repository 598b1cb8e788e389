"""Constants and small encoders of the zoo store format (spec: ``docs/FORMAT.md``)."""

from __future__ import annotations

import base64
import hashlib
import json
import platform
from typing import Any, Mapping

import numpy as np

from zoo.errors import ZooError

FORMAT_VERSION = 2  # 2: consolidated stores (docs/FORMAT.md); stores of version 1 read the same
ROOT_ATTR = "weightzoo"

# results/status codes. A model's status chunk is written last: anything else means "not complete".
STATUS_CODES = {"pending": 0, "ok": 1, "diverged": 2, "failed": 3}
STATUS_NAMES = {v: k for k, v in STATUS_CODES.items()}
COMPLETE_STATUSES = ("ok", "diverged", "failed")

DEFAULT_METRICS = ("train_loss", "train_acc", "test_loss", "test_acc")


def canonical_json(obj: Any) -> str:
    """JSON with sorted keys and no whitespace: equal objects give equal strings (for hashing)."""
    return json.dumps(to_jsonable(obj), sort_keys=True, separators=(",", ":"))


def short_hash(obj: Any, n: int = 10) -> str:
    return hashlib.blake2b(canonical_json(obj).encode(), digest_size=16).hexdigest()[:n]


def to_jsonable(obj: Any) -> Any:
    """Convert numpy scalars/arrays and tuples to plain JSON types, recursively."""
    if isinstance(obj, Mapping):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    return obj


def architecture_key(name: str, config: Mapping, input_shape, n_classes: int) -> str:
    """Name of the weight array of one architecture instance, e.g. ``mlp-3f2a1b9c0d``."""
    return f"{name}-" + short_hash({"name": name, "config": config, "input_shape": list(input_shape),
                                   "n_classes": int(n_classes)})


def library_versions() -> dict[str, str]:
    """Versions of the libraries that determine a model's weights, recorded per model."""
    import torch
    import zarr

    from zoo.version import __version__

    return {
        "weightzoo": __version__,
        "torch": torch.__version__,
        "numpy": np.__version__,
        "zarr": zarr.__version__,
        "python": platform.python_version(),
    }


def encode_array(values: np.ndarray) -> dict:
    """A JSON-able record of a small array: raw little-endian bytes in base64 (strings as a list)."""
    if values.dtype == object:
        return {"dtype": "string", "shape": list(values.shape), "values": [str(v) for v in values.ravel()]}
    data = np.ascontiguousarray(values, dtype=values.dtype.newbyteorder("<"))
    return {"dtype": values.dtype.str.lstrip("<>|="), "shape": list(values.shape),
            "base64": base64.b64encode(data.tobytes()).decode("ascii")}


def decode_array(rec: Mapping[str, Any], where: str) -> np.ndarray:
    try:
        shape = tuple(int(s) for s in rec["shape"])
        if rec["dtype"] == "string":
            return np.asarray(list(rec["values"]), dtype=object).reshape(shape)
        dtype = np.dtype(rec["dtype"]).newbyteorder("<")
        return np.frombuffer(base64.b64decode(rec["base64"]), dtype=dtype).reshape(shape).astype(dtype.newbyteorder("="))
    except (KeyError, TypeError, ValueError) as exc:
        raise ZooError(f"{where}: malformed array record ({type(exc).__name__}: {exc})") from exc
