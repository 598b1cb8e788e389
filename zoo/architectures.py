"""Architectures a zoo can hold, registered by name, each exposing its parameter layout.

An architecture is an ordinary ``nn.Module`` built by a function ``(input_shape, n_classes, **config)``.
Register your own with :func:`register_architecture`; the population trainer and the store work for it
without changes. Two optional methods make more tools available:

* ``permutation_spec() -> (perm_axes, group_sizes)`` declares which axes index permutable hidden units
  or channels (needed for permutation augmentation and SANE-style tokens);
* ``population_forward(params, x)`` evaluates ``P`` models at once from stacked parameters
  ``{name: [P, *shape]}`` on ``x [P, B, *input_shape]`` and returns logits ``[P, B, n_classes]``. Without
  it the trainer uses ``torch.func.vmap`` over ``functional_call``;
* ``forward(x, unit_masks=None)`` (with ``permutation_spec``) lets instances of different widths train
  in one population: a narrower instance is zero-padded to a wider one's shapes and ``unit_masks[g]``
  (``[units of group g]``, 1 for a real unit, 0 for padding) multiplies the outputs of permutation
  group ``g``'s units after their activation, so padded units output exactly zero whatever the
  activation (``sigmoid(0) = 0.5``) and the padded instance computes exactly the narrower one. A
  ``population_forward`` then takes ``unit_masks`` too, as ``[P, units]`` per group. Architectures
  without it are trained in populations of one shape (:func:`supports_unit_masks`).

Not supported under the vectorised trainer: modules with buffers that change during training
(BatchNorm running statistics) and in-place randomness that must differ per model (dropout draws are
shared across a vmapped population).
"""

from __future__ import annotations

import inspect
import math
from typing import Callable, Mapping, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from kernels.activations import ACTIVATIONS, DERIVATIVE_FROM_OUTPUT
from kernels.layout import ParamLayout, PermAxis
from kernels.registry import Registry
from zoo.errors import ArchitectureMismatchError, SpecError, UnknownNameError
from zoo.format import architecture_key

ArchitectureBuilder = Callable[..., nn.Module]
_ARCHITECTURES: Registry[ArchitectureBuilder] = Registry("architecture", error=UnknownNameError)
get_architecture = _ARCHITECTURES.get
architecture_names = _ARCHITECTURES.names



def register_architecture(name: str) -> Callable[[ArchitectureBuilder], ArchitectureBuilder]:
    """Decorator: register ``builder(input_shape, n_classes, **config) -> nn.Module`` under ``name``."""
    return _ARCHITECTURES.register(name)


def build_architecture(
    name: str, input_shape: Sequence[int], n_classes: int, config: Mapping | None = None
) -> nn.Module:
    """Instantiate the registered architecture ``name`` (random init from torch's global RNG)."""
    builder = get_architecture(name)
    try:
        return builder(tuple(int(s) for s in input_shape), int(n_classes), **dict(config or {}))
    except TypeError as exc:
        raise SpecError(f"architecture {name!r}: bad config {dict(config or {})}: {exc}") from exc


def supports_unit_masks(module: nn.Module) -> bool:
    """Whether ``module`` declares its units (``permutation_spec``) and its ``forward`` takes
    ``unit_masks`` (see the module docstring): the condition for zero-padding it to a wider instance."""
    return hasattr(module, "permutation_spec") and "unit_masks" in inspect.signature(module.forward).parameters


def _masked(h: torch.Tensor, mask: torch.Tensor | None, axis: int = -1) -> torch.Tensor:
    """``h`` with its unit axis ``axis`` multiplied by ``mask [units]`` (unchanged when ``mask`` is None)."""
    if mask is None:
        return h
    shape = [1] * h.dim()
    shape[axis] = mask.shape[-1]
    return h * mask.reshape(shape)


def _group_mask(unit_masks: Sequence[torch.Tensor] | None, g: int) -> torch.Tensor | None:
    return None if unit_masks is None else unit_masks[g]


def layout_of(module: nn.Module) -> ParamLayout:
    """The :class:`~kernels.layout.ParamLayout` of a module, with the permutation groups it declares
    (:meth:`ParamLayout.of_module <kernels.layout.ParamLayout.of_module>`)."""
    return ParamLayout.of_module(module)


def architecture_record(name: str, input_shape: Sequence[int], n_classes: int, config: Mapping | None = None
                        ) -> tuple[str, dict]:
    """``(arch_key, record)`` of one instance of the registered architecture ``name``: the record a store
    keeps under ``architectures[arch_key]`` (``name``, ``config``, ``input_shape``, ``n_classes`` and
    ``layout``, the :class:`ParamLayout` record). Builds the module once (drawing from torch's global RNG)."""
    config = dict(config or {})
    layout = layout_of(build_architecture(name, input_shape, n_classes, config))
    shape = [int(s) for s in input_shape]
    return architecture_key(name, config, shape, int(n_classes)), {
        "name": name, "config": config, "input_shape": shape, "n_classes": int(n_classes),
        "layout": layout.to_record()}


def load_flat_weights(module: nn.Module, flat: torch.Tensor, where: str = "weights") -> nn.Module:
    """Copy a flat vector ``[n_params]`` into ``module``'s parameters (checked against its layout)."""
    layout = layout_of(module)
    if flat.dim() != 1 or flat.shape[0] != layout.n_params:
        raise ArchitectureMismatchError(
            f"{where}: got a weight vector of shape {list(flat.shape)}, "
            f"but {type(module).__name__} has {layout.n_params} parameters"
        )
    tensors = layout.unflatten(flat)
    with torch.no_grad():
        for name, p in module.named_parameters():
            p.copy_(tensors[name])
    return module



def _activation(name: str, table: Mapping[str, Callable[[torch.Tensor], torch.Tensor]] = ACTIVATIONS
                ) -> Callable[[torch.Tensor], torch.Tensor]:
    """The activation ``name`` of ``table`` (error listing the choices)."""
    if name not in table:
        raise UnknownNameError(f"unknown activation {name!r}; choose from {sorted(table)}")
    return table[name]


def chain_permutation_spec(prefixes: Sequence[str], units: Sequence[int], repeats: Sequence[int] | None = None
                           ) -> tuple[dict[str, list[PermAxis]], list[int]]:
    """Permutation spec of a chain of layers ``prefixes[0] -> ... -> prefixes[-1]``.

    The ``units[i]`` outputs of every layer but the last form group ``i``: axis 0 of
    ``<prefix>.weight`` and ``<prefix>.bias``, and axis 1 of the next layer's weight, where each unit
    owns ``repeats[i]`` consecutive inputs (a flattened conv output feeding a linear layer).
    """
    repeats = list(repeats) if repeats is not None else [1] * len(prefixes)
    spec: dict[str, list[PermAxis]] = {}
    for g, (prefix, nxt) in enumerate(zip(prefixes[:-1], prefixes[1:])):
        spec.setdefault(f"{prefix}.weight", []).append(PermAxis(g, 0))
        spec.setdefault(f"{prefix}.bias", []).append(PermAxis(g, 0))
        spec.setdefault(f"{nxt}.weight", []).append(PermAxis(g, 1, int(repeats[g])))
    return spec, [int(u) for u in units[:-1]]


# ---------------------------------------------------------------------------- MLP
class MLP(nn.Module):
    """Fully connected network: ``depth`` hidden layers of ``width`` units, then a linear classifier.

    Input ``[B, *input_shape]`` is flattened to ``[B, prod(input_shape)]``.
    """

    def __init__(self, input_shape: Sequence[int], n_classes: int, width: int = 32, depth: int = 2,
                 activation: str = "relu") -> None:
        super().__init__()
        if width < 1 or depth < 0:
            raise ValueError(f"MLP needs width >= 1 and depth >= 0, got width={width}, depth={depth}")
        self.act_name = activation
        self.act = _activation(activation)
        self.in_features = int(math.prod(input_shape))
        dims = [self.in_features] + [int(width)] * int(depth) + [int(n_classes)]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))

    def forward(self, x: torch.Tensor, unit_masks: Sequence[torch.Tensor] | None = None) -> torch.Tensor:
        h = x.reshape(x.shape[0], -1)
        for i, layer in enumerate(self.layers):
            h = layer(h)
            if i < len(self.layers) - 1:
                h = _masked(self.act(h), _group_mask(unit_masks, i))
        return h

    def permutation_spec(self) -> tuple[dict[str, list[PermAxis]], list[int]]:
        n = len(self.layers)
        return chain_permutation_spec([f"layers.{i}" for i in range(n)], [layer.out_features for layer in self.layers])

    @property
    def manual_backward(self) -> bool:
        """Whether :meth:`population_loss_and_grads` supports this MLP's activation."""
        return self.act_name in DERIVATIVE_FROM_OUTPUT

    def population_loss_and_grads(self, params: Mapping[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor,
                                  unit_masks: Sequence[torch.Tensor] | None = None,
                                  sample_weights: torch.Tensor | None = None
                                  ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Mean cross-entropy ``[P]`` of P MLPs on their own batches ``x [P, B, ...]``, ``y [P, B]``, and
        its gradients ``{name: [P, *shape]}``, with a hand-written backward pass (batched matmuls only;
        about 10% faster than autograd for small MLPs, equal to it up to float rounding).
        ``unit_masks[i] [P, width_i]`` masks hidden layer ``i``'s units (zero-padded members);
        ``sample_weights [P, B]`` replaces the mean over the batch by a weighted sum (a member's
        batch padded to ``B`` examples: ``1 / its length`` on its examples, 0 on the padding)."""
        n = len(self.layers)
        b = y.shape[1]
        masks = [None] * (n - 1) if unit_masks is None else [m.unsqueeze(1) for m in unit_masks]
        acts = [x.reshape(x.shape[0], b, -1)]
        for i in range(n - 1):
            z = self.act(torch.baddbmm(params[f"layers.{i}.bias"].unsqueeze(1), acts[-1],
                                       params[f"layers.{i}.weight"].transpose(1, 2)))
            if masks[i] is not None:
                z = z.mul_(masks[i])
            acts.append(z)
        # the output layer class-major, [P, C, B]: torch's CPU log_softmax over an innermost axis of ~10
        # classes is several times slower than over an outer one
        out = f"layers.{n - 1}"
        logp = torch.log_softmax(torch.baddbmm(params[f"{out}.bias"].unsqueeze(2), params[f"{out}.weight"],
                                               acts[-1].transpose(1, 2)), dim=1)
        target = y.unsqueeze(1)
        nll = logp.gather(1, target).squeeze(1)
        g_out = logp.exp_()  # softmax, then minus one-hot, over the batch size: d(mean CE)/d(logits)
        g_out.scatter_add_(1, target, torch.full_like(target, -1, dtype=g_out.dtype))
        if sample_weights is None:
            loss = -nll.mean(1)
            g_out.div_(b)
        else:
            loss = -(nll * sample_weights).sum(1)
            g_out.mul_(sample_weights.unsqueeze(1))
        deriv = DERIVATIVE_FROM_OUTPUT[self.act_name]
        grads: dict[str, torch.Tensor] = {f"{out}.weight": torch.bmm(g_out, acts[n - 1]), f"{out}.bias": g_out.sum(2)}
        g = g_out.transpose(1, 2)  # [P, B, C]
        for i in range(n - 1, -1, -1):
            if i < n - 1:
                grads[f"layers.{i}.weight"] = torch.bmm(g.transpose(1, 2), acts[i])
                grads[f"layers.{i}.bias"] = g.sum(1)
            if i > 0:
                g = torch.bmm(g, params[f"layers.{i}.weight"]).mul_(deriv(acts[i]))
                if masks[i - 1] is not None:
                    g = g.mul_(masks[i - 1])
        return loss, grads

    def population_forward(self, params: Mapping[str, torch.Tensor], x: torch.Tensor,
                           shared: bool = False, unit_masks: Sequence[torch.Tensor] | None = None) -> torch.Tensor:
        """Logits ``[P, B, n_classes]`` of P MLPs with stacked ``params`` on ``x [P, B, ...]`` (or, with
        ``shared``, one input ``[B, ...]`` for all members); ``unit_masks[i] [P, width_i]`` masks hidden
        layer ``i``'s units (zero-padded members).

        Batched matrix products (``baddbmm``): one kernel per layer for the whole population; a shared
        input goes through the first layer as a single ``[B, in] @ [in, P * out]`` product.
        """
        n = len(self.layers)
        masks = [None] * (n - 1) if unit_masks is None else [m.unsqueeze(1) for m in unit_masks]
        w0, b0 = params["layers.0.weight"], params["layers.0.bias"]
        if shared:
            P, out_f, in_f = w0.shape
            h = torch.addmm(b0.reshape(1, P * out_f), x.reshape(x.shape[0], -1), w0.reshape(P * out_f, in_f).t())
            h = h.view(x.shape[0], P, out_f).transpose(0, 1)
        else:
            h = torch.baddbmm(b0.unsqueeze(1), x.reshape(x.shape[0], x.shape[1], -1), w0.transpose(1, 2))
        for i in range(1, n):
            w, b = params[f"layers.{i}.weight"], params[f"layers.{i}.bias"]
            a = self.act(h)
            if masks[i - 1] is not None:
                a = a * masks[i - 1]  # not in place: autograd keeps the activation's output
            h = torch.baddbmm(b.unsqueeze(1), a, w.transpose(1, 2))
        return h


@register_architecture("mlp")
def _build_mlp(input_shape, n_classes, width=32, depth=2, activation="relu") -> nn.Module:
    return MLP(input_shape, n_classes, width=width, depth=depth, activation=activation)


# ---------------------------------------------------------------------------- CNN for sequences
class CNN1D(nn.Module):
    """1-D CNN for sequences such as MNIST-1D: ``depth`` conv layers of ``width`` channels, then linear.

    Input ``[B, L]`` (one channel) or ``[B, C, L]``.
    """

    def __init__(self, input_shape: Sequence[int], n_classes: int, width: int = 16, depth: int = 2,
                 kernel_size: int = 5, stride: int = 2, activation: str = "relu") -> None:
        super().__init__()
        shape = tuple(input_shape)
        self.in_channels, length = (1, shape[0]) if len(shape) == 1 else (shape[0], shape[1])
        self.act = _activation(activation)
        convs = []
        c_in = self.in_channels
        for _ in range(int(depth)):
            convs.append(nn.Conv1d(c_in, int(width), int(kernel_size), stride=int(stride), padding=int(kernel_size) // 2))
            length = (length + 2 * (int(kernel_size) // 2) - int(kernel_size)) // int(stride) + 1
            c_in = int(width)
        if length < 1:
            raise ValueError(f"CNN1D: input length {input_shape} is too short for {depth} conv layers")
        self.convs = nn.ModuleList(convs)
        self.out_length = length
        self.head = nn.Linear(c_in * length, int(n_classes))

    def forward(self, x: torch.Tensor, unit_masks: Sequence[torch.Tensor] | None = None) -> torch.Tensor:
        h = x.reshape(x.shape[0], self.in_channels, -1)
        for g, conv in enumerate(self.convs):
            h = _masked(self.act(conv(h)), _group_mask(unit_masks, g), axis=1)
        return self.head(h.flatten(1))

    def permutation_spec(self) -> tuple[dict[str, list[PermAxis]], list[int]]:
        n = len(self.convs)
        return chain_permutation_spec([f"convs.{i}" for i in range(n)] + ["head"],
                                      [c.out_channels for c in self.convs] + [self.head.out_features],
                                      [1] * (n - 1) + [self.out_length])


@register_architecture("cnn1d")
def _build_cnn1d(input_shape, n_classes, width=16, depth=2, kernel_size=5, stride=2, activation="relu"):
    return CNN1D(input_shape, n_classes, width=width, depth=depth, kernel_size=kernel_size, stride=stride,
                 activation=activation)


# ---------------------------------------------------------------------------- CNN of the Model Zoos paper
class CNN2D(nn.Module):
    """Small 2-D CNN of the Model Zoos paper (Schürholt et al. 2022).

    Defaults: conv 8 (5x5) → maxpool 2 → conv 6 (5x5) → maxpool 2 → conv 4 (2x2) → flatten → fc 20 →
    fc ``n_classes``; on ``28x28x1`` inputs that is 36 flattened features and 2,464 parameters.
    Input ``[B, C, H, W]``, ``[B, H, W]`` or ``[B, H*W*C]`` (reshaped to ``input_shape``).

    ``pool_first`` applies the max-pool before the activation, as the Model Zoos code does
    (``Conv2d → MaxPool2d → nonlinearity``). For monotone activations (tanh, relu, sigmoid, leaky relu)
    both orders compute the same function; for GELU and SiLU they differ.
    """

    def __init__(self, input_shape: Sequence[int], n_classes: int, channels: Sequence[int] = (8, 6, 4),
                 kernels: Sequence[int] = (5, 5, 2), pools: Sequence[int] = (2, 2, 1), hidden: int = 20,
                 activation: str = "tanh", pool_first: bool = False) -> None:
        super().__init__()
        shape = tuple(input_shape)
        if len(shape) == 2:
            shape = (1, *shape)
        if len(shape) != 3:
            raise ValueError(f"CNN2D needs input_shape (C, H, W) or (H, W), got {input_shape}")
        if not (len(channels) == len(kernels) == len(pools)):
            raise ValueError("CNN2D: channels, kernels and pools must have the same length")
        self.input_shape = shape
        self.act = _activation(activation)
        self.pool_first = bool(pool_first)
        self.pools = [int(p) for p in pools]
        c, h, w = shape
        convs = []
        for c_out, k, p in zip(channels, kernels, self.pools):
            convs.append(nn.Conv2d(c, int(c_out), int(k)))
            h, w = (h - int(k) + 1) // p, (w - int(k) + 1) // p
            c = int(c_out)
        if h < 1 or w < 1:
            raise ValueError(f"CNN2D: input {input_shape} is too small for kernels {list(kernels)}")
        self.convs = nn.ModuleList(convs)
        self.spatial = h * w
        self.fc1 = nn.Linear(c * h * w, int(hidden))
        self.fc2 = nn.Linear(int(hidden), int(n_classes))

    def forward(self, x: torch.Tensor, unit_masks: Sequence[torch.Tensor] | None = None) -> torch.Tensor:
        h = x.reshape(x.shape[0], *self.input_shape)
        for g, (conv, p) in enumerate(zip(self.convs, self.pools)):
            h = conv(h)
            if self.pool_first and p > 1:
                h = F.max_pool2d(h, p)
            h = self.act(h)
            if not self.pool_first and p > 1:
                h = F.max_pool2d(h, p)
            h = _masked(h, _group_mask(unit_masks, g), axis=1)
        h = _masked(self.act(self.fc1(h.flatten(1))), _group_mask(unit_masks, len(self.convs)))
        return self.fc2(h)

    def permutation_spec(self) -> tuple[dict[str, list[PermAxis]], list[int]]:
        n = len(self.convs)
        return chain_permutation_spec([f"convs.{i}" for i in range(n)] + ["fc1", "fc2"],
                                      [c.out_channels for c in self.convs] + [self.fc1.out_features,
                                                                               self.fc2.out_features],
                                      [1] * (n - 1) + [self.spatial, 1])


@register_architecture("cnn2d")
def _build_cnn2d(input_shape, n_classes, channels=(8, 6, 4), kernels=(5, 5, 2), pools=(2, 2, 1), hidden=20,
                 activation="tanh", pool_first=False):
    return CNN2D(input_shape, n_classes, channels=channels, kernels=kernels, pools=pools, hidden=hidden,
                 activation=activation, pool_first=pool_first)


# ---------------------------------------------------------------------------- CNN of the Small CNN Zoo
def identity(x: torch.Tensor) -> torch.Tensor:
    """Keras' ``linear`` activation (a module-level function, so modules using it can be pickled)."""
    return x


SMALLCNN_ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    **ACTIVATIONS,
    "selu": F.selu,  # Keras and PyTorch use the same SELU constants
    "elu": F.elu,  # alpha = 1 in both
    "softplus": F.softplus,
    "linear": identity,
}


class SmallCNN(nn.Module):
    """CNN of the Small CNN Zoo (Unterthiner et al. 2020, ``dnn_predict_accuracy``).

    ``depth`` conv layers of ``width`` channels, ``kernel_size`` x ``kernel_size``, stride ``stride``,
    no padding (Keras ``padding="valid"``), each followed by the activation; then global average
    pooling and a linear classifier. The defaults (3 layers of 16 channels, 3x3, stride 2) on one input
    channel give the zoo's 4,970 parameters. Input ``[B, C, H, W]`` or ``[B, H, W]`` (one channel).
    """

    def __init__(self, input_shape: Sequence[int], n_classes: int, width: int = 16, depth: int = 3,
                 kernel_size: int = 3, stride: int = 2, activation: str = "relu") -> None:
        super().__init__()
        shape = tuple(int(s) for s in input_shape)
        if len(shape) not in (2, 3):
            raise ValueError(f"SmallCNN needs input_shape (C, H, W) or (H, W), got {input_shape}")
        self.in_channels = 1 if len(shape) == 2 else shape[0]
        self.act = _activation(activation, SMALLCNN_ACTIVATIONS)
        c_in, convs = self.in_channels, []
        for _ in range(int(depth)):
            convs.append(nn.Conv2d(c_in, int(width), int(kernel_size), stride=int(stride)))
            c_in = int(width)
        self.convs = nn.ModuleList(convs)
        self.head = nn.Linear(c_in, int(n_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x if x.dim() == 4 else x.reshape(x.shape[0], self.in_channels, *x.shape[-2:])
        for conv in self.convs:
            h = self.act(conv(h))
        return self.head(h.mean(dim=(2, 3)))

    def permutation_spec(self) -> tuple[dict[str, list[PermAxis]], list[int]]:
        n = len(self.convs)
        return chain_permutation_spec([f"convs.{i}" for i in range(n)] + ["head"],
                                      [c.out_channels for c in self.convs] + [self.head.out_features])


@register_architecture("smallcnn")
def _build_smallcnn(input_shape, n_classes, width=16, depth=3, kernel_size=3, stride=2, activation="relu"):
    return SmallCNN(input_shape, n_classes, width=width, depth=depth, kernel_size=kernel_size, stride=stride,
                    activation=activation)
