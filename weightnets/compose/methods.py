"""Merge methods: one generalised task-arithmetic core behind a registry of names (mergekit's design).

Every method computes, from task vectors ``τ_t = θ_t − θ_base`` (``stack [T, N]``) and per-task weights
``w_t`` (default 1), a merged task vector ``τ_m [N]`` and returns ``θ_base + λ · τ_m``:

1. **Sparsify** each ``τ_t`` (optional):
   ``"magnitude"`` keeps the ``ceil(density · n_k)`` largest ``|τ_t|`` of every block ``k`` (ties at the
   threshold kept; TIES' trim, :func:`kernels.ties_merge`); ``"random"`` drops each entry with
   probability ``p`` and rescales the rest by ``1 / (1 − p)`` (DARE, :func:`kernels.dare`, a
   counter-based mask that depends only on ``(seed, t, i)``).
2. **Consensus** (optional): ``"sum"`` elects ``γ[i] = sign(Σ_t w_t τ'_t[i])`` (TIES' "total mass"),
   ``"count"`` the majority of signs; only entries agreeing with ``γ`` are merged, nothing where
   ``γ = 0`` (exact ties; mergekit and PEFT elect + there, see ``docs/KERNELS.md``).
3. **Aggregation** of the (agreeing) weighted entries ``w_t τ'_t[i]``:
   ``"sum"`` adds them (task arithmetic; the TIES repository's "dis-sum"); ``"mean"`` divides by the
   number of contributing tasks (all ``T`` without consensus; the agreeing ones with consensus — the
   TIES paper's disjoint mean); ``"weighted_mean"`` divides by the sum of their weights (mergekit's
   ``normalize: true``).
4. ``θ = θ_base + λ · τ_m`` (``scale`` = λ).

Registered methods (:func:`method_names`; sources in ``docs/COMPOSE.md``):

=================== =========== ========= ============= ======================================
name                sparsify    consensus aggregation   anchor
=================== =========== ========= ============= ======================================
``task_arithmetic`` —           —         sum           Ilharco et al. 2023, §2 (λ on validation)
``average``         —           —         mean          weight averaging / model soup (λ = 1)
``ties``            magnitude   sum       mean          Yadav et al. 2023, §3 (density 0.2)
``dare_linear``     random      —         sum           Yu et al. 2024, §3 (p = 0.5)
``dare_ties``       random      sum       mean          Yu et al. 2024 + TIES (p = 0.5)
=================== =========== ========= ============= ======================================

Any option can be overridden per call (``merge("ties", ..., aggregation="sum", scale=0.3)`` is the TIES
repository's dis-sum with λ = 0.3). Learned coefficients (AdaMerging, aTLAS) use the same core without
sparsification or consensus and with per-block weights ``[T, n_blocks]`` (:func:`kernels.compose`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any, Literal, Sequence

import torch

import kernels
from kernels.merge import ties_thresholds
from zoo import ParamLayout, SpecError, UnknownNameError

Sparsify = Literal["magnitude", "random"] | None
Consensus = Literal["sum", "count"] | None
Aggregation = Literal["sum", "mean", "weighted_mean"]

SPARSIFY = (None, "magnitude", "random")
CONSENSUS = (None, "sum", "count")
AGGREGATIONS = ("sum", "mean", "weighted_mean")
_TIES_MEAN = {"sum": "sum", "mean": "disjoint", "weighted_mean": "weighted"}


@dataclass(frozen=True)
class MergeMethod:
    """One named setting of the generalised core (see the module docstring for the semantics).

    ``tune`` names the options a caller selects on validation data (``scale`` always, where it
    matters; ``density`` or ``p`` for sparsifying methods), ``source`` the paper and section.
    """

    name: str
    sparsify: Sparsify = None
    consensus: Consensus = None
    aggregation: Aggregation = "sum"
    density: float = 1.0
    p: float = 0.0
    scale: float = 1.0
    tune: tuple[str, ...] = ("scale",)
    source: str = ""

    def __post_init__(self) -> None:
        if self.sparsify not in SPARSIFY:
            raise SpecError(f"merge method {self.name!r}: sparsify must be one of {list(SPARSIFY)}, got {self.sparsify!r}")
        if self.consensus not in CONSENSUS:
            raise SpecError(f"merge method {self.name!r}: consensus must be one of {list(CONSENSUS)}, got "
                            f"{self.consensus!r}")
        if self.aggregation not in AGGREGATIONS:
            raise SpecError(f"merge method {self.name!r}: aggregation must be one of {list(AGGREGATIONS)}, got "
                            f"{self.aggregation!r}")
        if not 0.0 <= float(self.density) <= 1.0:
            raise SpecError(f"merge method {self.name!r}: density must be in [0, 1], got {self.density}")
        if not 0.0 <= float(self.p) < 1.0:
            raise SpecError(f"merge method {self.name!r}: drop probability p must be in [0, 1), got {self.p}")

    def options(self) -> dict[str, Any]:
        """The method's settings as a plain dict (for stores and reports)."""
        out = asdict(self)
        out["tune"] = list(self.tune)
        return out


_METHODS: dict[str, MergeMethod] = {}


def register_method(name: str, **options: Any) -> MergeMethod:
    """Register (or replace) merge method ``name`` with the core's ``options`` (fields of
    :class:`MergeMethod`); returns it."""
    method = MergeMethod(name=name, **options)
    _METHODS[name] = method
    return method


def get_method(name: str) -> MergeMethod:
    """The registered method ``name``; :class:`zoo.UnknownNameError` listing the names otherwise."""
    if name not in _METHODS:
        raise UnknownNameError(f"unknown merge method {name!r}; choose from {method_names()}")
    return _METHODS[name]


def method_names() -> list[str]:
    """Names of the registered merge methods, sorted."""
    return sorted(_METHODS)


register_method("task_arithmetic", aggregation="sum", scale=1.0, tune=("scale",),
                source="Ilharco et al. 2023, Editing Models with Task Arithmetic, §2")
register_method("average", aggregation="mean", scale=1.0, tune=(),
                source="weight averaging of fine-tuned models (Wortsman et al. 2022, model soups, uniform soup)")
register_method("ties", sparsify="magnitude", consensus="sum", aggregation="mean", density=0.2, scale=1.0,
                tune=("scale", "density"), source="Yadav et al. 2023, TIES-Merging, §3 (trim, elect sign, disjoint merge)")
register_method("dare_linear", sparsify="random", aggregation="sum", p=0.5, scale=1.0, tune=("scale", "p"),
                source="Yu et al. 2024, Language Models are Super Mario (DARE), §3, with task arithmetic")
register_method("dare_ties", sparsify="random", consensus="sum", aggregation="mean", p=0.5, scale=1.0,
                tune=("scale", "p"), source="Yu et al. 2024 (DARE) followed by TIES' sign election and disjoint merge")


def resolve(method: str | MergeMethod, **overrides: Any) -> MergeMethod:
    """``method`` (a name or a :class:`MergeMethod`) with ``overrides`` applied (unknown fields raise
    :class:`zoo.SpecError` naming the valid ones)."""
    m = get_method(method) if isinstance(method, str) else method
    fields = set(MergeMethod.__dataclass_fields__) - {"name"}
    bad = sorted(set(overrides) - fields)
    if bad:
        raise SpecError(f"merge method {m.name!r}: unknown options {bad}; valid options are {sorted(fields)}")
    return replace(m, **{k: v for k, v in overrides.items() if v is not None}) if overrides else m


def _as_spec(blocks: kernels.BlockSpec | ParamLayout | Sequence[int] | None, n: int) -> kernels.BlockSpec:
    if blocks is None:
        return kernels.BlockSpec.single(n)
    if isinstance(blocks, kernels.BlockSpec):
        spec = blocks
    elif isinstance(blocks, ParamLayout):
        spec = kernels.BlockSpec.from_layout(blocks)
    else:
        spec = kernels.BlockSpec.from_sizes(list(blocks))
    spec.check_covers(n, "task vectors")
    return spec


def merged_task_vector(stack: torch.Tensor, method: str | MergeMethod = "task_arithmetic", *,
                       weights: torch.Tensor | None = None,
                       blocks: kernels.BlockSpec | ParamLayout | Sequence[int] | None = None, seed: int = 0,
                       backend: kernels.Backend = "auto", **overrides: Any) -> torch.Tensor:
    """The merged task vector ``τ_m [N]`` of ``stack [T, N]`` (steps 1–3 of the module docstring;
    λ is *not* applied).

    Args:
        stack: ``[T, N]`` task vectors (float16/bfloat16/float32/float64).
        method: a registered name or a :class:`MergeMethod`; ``overrides`` replace its options
            (``sparsify``, ``consensus``, ``aggregation``, ``density``, ``p``).
        weights: ``[T]`` per-task weights ``w_t`` (default 1). Without sparsification and consensus
            they may also be ``[T, n_blocks]`` (per-block coefficients, the learned methods' core).
        blocks: blocks for the magnitude trim (per parameter tensor when a ``ParamLayout`` is given,
            as mergekit and PEFT; ``None``: one block) and for ``[T, n_blocks]`` weights.
        seed: DARE's mask seed.

    Returns ``[N]`` in the stack's dtype. Non-finite entries follow the kernels' rule (their own
    position only, ``docs/KERNELS.md``). Raises :class:`zoo.SpecError` for bad options and
    ``ValueError`` for shapes that do not fit.
    """
    m = resolve(method, **overrides)
    if stack.dim() != 2 or stack.shape[0] == 0:
        raise ValueError(f"stack must be [T, N] with T >= 1, got shape {list(stack.shape)}")
    T, N = stack.shape
    spec = _as_spec(blocks, N)
    w = torch.ones(T, dtype=torch.float32, device=stack.device) if weights is None else weights.to(stack.device)
    if w.dim() == 2 and (m.sparsify is not None or m.consensus is not None):
        raise SpecError(f"merge method {m.name!r}: per-block weights [T, n_blocks] need sparsify=None and "
                        "consensus=None")
    if w.shape[0] != T:
        raise ValueError(f"weights have shape {list(w.shape)}, expected [{T}] or [{T}, n_blocks] (one row per task)")
    if m.consensus is not None:
        src = kernels.dare(stack, m.p, seed, backend=backend) if m.sparsify == "random" else stack
        density = m.density if m.sparsify == "magnitude" else 1.0
        return kernels.ties_merge(src, density, spec, weights=w, sign=m.consensus, mean=_TIES_MEAN[m.aggregation],
                                  backend=backend)
    if m.aggregation == "sum":
        c = w
    elif m.aggregation == "mean":
        c = w / T
    else:
        total = w.sum(0)
        c = w / torch.where(total.abs() > 0, total, torch.ones_like(total))
    if m.sparsify == "random":
        if c.dim() == 2:
            raise SpecError("dare with per-block weights is not supported; use per-task weights [T]")
        return kernels.dare_merge(stack, m.p, seed, weights=c, backend=backend)
    src = stack
    if m.sparsify == "magnitude":
        thr = ties_thresholds(stack, float(m.density), spec)  # [T, n_blocks]
        th = torch.repeat_interleave(thr, torch.tensor(spec.sizes, device=stack.device), dim=1)
        mag = stack.abs().to(th.dtype)
        src = torch.where((mag >= th) & (stack != 0) | ~torch.isfinite(stack), stack, torch.zeros_like(stack))
    return kernels.compose(None, src, c, spec, backend=backend)


def merge(base: torch.Tensor, stack: torch.Tensor, method: str | MergeMethod = "task_arithmetic", *,
          scale: float | None = None, weights: torch.Tensor | None = None,
          blocks: kernels.BlockSpec | ParamLayout | Sequence[int] | None = None, seed: int = 0,
          backend: kernels.Backend = "auto", **overrides: Any) -> torch.Tensor:
    """``θ_base + λ · τ_m`` ``[N]``: the merged model of method ``method`` (see
    :func:`merged_task_vector` for the arguments; ``scale`` is λ, default the method's).
    ``base [N]`` must match the stack's width and dtype (``ValueError``/``TypeError`` otherwise)."""
    m = resolve(method, **overrides)
    if base.dim() != 1 or base.shape[0] != stack.shape[-1]:
        raise ValueError(f"base has shape {list(base.shape)} but the task vectors have {stack.shape[-1]} entries")
    if base.dtype != stack.dtype:
        raise TypeError(f"dtype mismatch: base={base.dtype}, stack={stack.dtype}")
    tau = merged_task_vector(stack, m, weights=weights, blocks=blocks, seed=seed, backend=backend)
    lam = m.scale if scale is None else float(scale)
    return (base.to(torch.float64 if base.dtype == torch.float64 else torch.float32)
            + lam * tau.to(torch.float64 if base.dtype == torch.float64 else torch.float32)).to(base.dtype)


def scaled_models(base: torch.Tensor, tau: torch.Tensor, scales: Sequence[float]) -> torch.Tensor:
    """``[len(scales), N]`` models ``base + λ_b · τ_m`` for a λ grid (one composition per λ, batched
    through :func:`kernels.compose`)."""
    lam = torch.tensor([float(s) for s in scales], dtype=torch.float32, device=base.device)
    return kernels.compose(base.float(), tau.float()[None], lam[:, None, None])
