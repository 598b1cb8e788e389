"""How long population training takes: the cost model the planner and the trainer's schedule use.

One *call* of the trainer (:class:`generators.member_data.Schedule`) is one batched forward and
backward pass and one optimiser update of ``rows`` members on batches of ``length`` examples. It costs

    ``call_overhead_s + per_row_overhead_s * rows``         (launching ~35 small kernels from Python)
    ``+ rows * length * train_flops_per_sample / flop_rate``  (the matrix products)
    ``+ rows * n_params * bytes_per_param / byte_rate``      (the passes over parameters, gradients and
    optimiser state: forward and backward reads, gradient write and flattening, the update)

where ``train_flops_per_sample`` is ``train_flop_factor`` (3: forward, and a backward of twice its cost)
times the forward FLOPs of one example (:func:`module_flops`). The
defaults were measured on the project's 2-core CPU with one thread (``docs/SPECS.md``, "Planning
populations"): small calls cost their overhead (~0.2 ms), large-batch calls of wide MLPs run at about
50 GFLOP/s, small-batch calls of wide MLPs are bound by memory traffic (~20 GB/s). The numbers only
rank groupings; they never change a model's result.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import torch

from zoo.architectures import build_architecture


@dataclass(frozen=True)
class CostModel:
    """Seconds per training call (see the module docstring); ``CostModel(call_overhead_s=0,
    per_row_overhead_s=0)`` makes the schedule never pad a batch."""

    call_overhead_s: float = 2.0e-4
    per_row_overhead_s: float = 5.0e-6
    flop_rate: float = 5.0e10
    byte_rate: float = 2.0e10
    bytes_per_param: float = 40.0
    train_flop_factor: float = 3.0
    op_overhead_s: float = 5.0e-6

    def call_seconds(self, rows: int, length: int, flops_per_sample: float, n_params: int) -> float:
        """Estimated seconds of one call: ``rows`` members, ``length`` examples each, of a model with
        ``flops_per_sample`` forward FLOPs per example and ``n_params`` parameters (padded shape)."""
        return (self.call_overhead_s + self.per_row_overhead_s * rows
                + rows * length * flops_per_sample * self.train_flop_factor / self.flop_rate
                + rows * n_params * self.bytes_per_param / self.byte_rate)

    def eval_seconds(self, members: int, examples: int, flops_per_sample: float) -> float:
        """Estimated seconds to evaluate ``members`` models on ``examples`` shared examples."""
        return members * examples * flops_per_sample / self.flop_rate

    def overhead_in_samples(self, flops_per_sample: float) -> float:
        """A call's fixed overhead expressed as the number of example-rows (one member, one example)
        whose forward and backward pass cost as much: a padded batch row is worth its compute only
        while the overhead of a separate call is larger (:class:`generators.member_data.Schedule`)."""
        per_sample = max(flops_per_sample, 1.0) * self.train_flop_factor / self.flop_rate
        return self.call_overhead_s / per_sample

    def flat_update_limit(self, n_tensors: int) -> float:
        """Members x parameters up to which an optimiser update runs on one flat gradient: flattening
        costs a pass over the gradients (8 bytes a parameter), updating tensor by tensor costs about
        3 more kernel launches per extra tensor."""
        return 3 * max(n_tensors - 1, 0) * self.op_overhead_s * self.byte_rate / 8

    def memory_bytes(self, members: int, n_params: int, n_states: int, n_checkpoints: int) -> int:
        """Bytes a population keeps: float32 parameters, gradients, ``n_states`` optimiser states
        and ``n_checkpoints`` stored copies of every member's weights."""
        return int(members * n_params * 4 * (2 + n_states + n_checkpoints))


#: The cost model the trainer and the planner use unless given another.
DEFAULT_COST = CostModel()


def forward_flops(name: str, input_shape: Sequence[int], n_classes: int, config: Mapping | None = None) -> float:
    """Forward FLOPs of one example through architecture ``name`` (see :func:`module_flops`)."""
    with torch.random.fork_rng(devices=[]):
        module = build_architecture(name, input_shape, n_classes, config)
    return module_flops(module, input_shape)


def module_flops(module: torch.nn.Module, input_shape: Sequence[int]) -> float:
    """Forward FLOPs of one example through ``module``: 2 per multiply-add of its ``nn.Linear`` and
    ``nn.Conv1d/2d/3d`` layers (what ``torch.utils.flop_counter`` counts for them; that counter costs
    about 2 s on its first use in a process, too slow for a trainer's set-up), at least 1.

    Other layers (normalisation, activations, pooling) are not counted; a model without such layers
    gets ``2 * n_params``, every weight used once per example.
    """
    total = [0.0]

    def hook(layer: torch.nn.Module, _inputs: Any, output: torch.Tensor) -> None:
        if isinstance(layer, torch.nn.Linear):
            total[0] += 2.0 * layer.in_features * output.numel()
        else:
            per_output = layer.in_channels // layer.groups * math.prod(layer.kernel_size)
            total[0] += 2.0 * per_output * output.numel()

    kinds = (torch.nn.Linear, torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Conv3d)
    handles = [m.register_forward_hook(hook) for m in module.modules() if isinstance(m, kinds)]
    try:
        with torch.no_grad():
            module(torch.zeros(1, *[int(s) for s in input_shape]))
    finally:
        for h in handles:
            h.remove()
    if not handles:
        total[0] = 2.0 * sum(p.numel() for p in module.parameters())
    return float(max(total[0], 1.0))
