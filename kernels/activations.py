"""Hidden-unit activations by name: the ones the fused MLP kernels know, shared with the architectures
that build MLPs and CNNs (``zoo.architectures``) so that a name means one function everywhere."""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

Activation = Callable[[torch.Tensor], torch.Tensor]

ACTIVATIONS: dict[str, Activation] = {
    "relu": F.relu,
    "tanh": torch.tanh,
    "sigmoid": torch.sigmoid,
    "gelu": F.gelu,
    "leaky_relu": F.leaky_relu,
    "silu": F.silu,
}

#: The derivative of an activation written in terms of its output ``a = act(z)`` (for hand-written
#: backward passes); only activations whose derivative is a function of the output are listed.
DERIVATIVE_FROM_OUTPUT: dict[str, Activation] = {
    "relu": lambda a: (a > 0).to(a.dtype),
    "tanh": lambda a: 1 - a * a,
    "sigmoid": lambda a: a * (1 - a),
}


def activation_names() -> list[str]:
    return sorted(ACTIVATIONS)


def get_activation(name: str) -> Activation:
    """The activation ``name``; ``ValueError`` listing the choices for an unknown name."""
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; choose from {activation_names()}")
    return ACTIVATIONS[name]
