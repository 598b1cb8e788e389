"""Reading ``torch.save``d state dicts safely: ``torch.load(..., weights_only=True)`` only.

``weights_only`` restricts unpickling to tensors and plain containers, so a checkpoint cannot run code
when it is read. Anything else in the file (a pickled model object, a custom class) is refused.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Mapping

import torch

from zoo.errors import ZooError

MODULE_PREFIX = "module."  # added by nn.DataParallel / DistributedDataParallel


def load_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """``{name: tensor}`` from ``path``; a ``module.`` prefix on every key is stripped, and a dict that
    wraps the state dict under ``state_dict`` or ``model`` is unwrapped."""
    if not path.is_file():
        raise ZooError(f"{path}: checkpoint file is missing")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, AttributeError, TypeError, EOFError) as exc:
        raise ZooError(f"{path}: refused: not a plain state dict that torch.load(weights_only=True) can read "
                       f"({type(exc).__name__}: {str(exc).splitlines()[0][:200]})") from exc
    if isinstance(obj, Mapping) and not any(isinstance(v, torch.Tensor) for v in obj.values()):
        for wrapper in ("state_dict", "model"):
            if isinstance(obj.get(wrapper), Mapping):
                obj = obj[wrapper]
                break
    if not isinstance(obj, Mapping):
        raise ZooError(f"{path}: expected a state dict (a mapping of names to tensors), got {type(obj).__name__}")
    bad = [k for k, v in obj.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise ZooError(f"{path}: entries {bad[:5]} are not tensors; expected a state dict")
    state = {str(k): v for k, v in obj.items()}
    if state and all(k.startswith(MODULE_PREFIX) for k in state):
        state = {k[len(MODULE_PREFIX):]: v for k, v in state.items()}
    return state
