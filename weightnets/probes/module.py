"""Lightning modules that learn on weights: one base (:class:`WeightLearner`) and the learners.

=====================  ==========================================================  =====================
module                 what it learns                                              data view
=====================  ==========================================================  =====================
:class:`LayerProbe`    ProbeX or a Dense linear probe on one layer, a sweep over   ``flat`` or a layer
                       layers (``layer: auto``), optionally tree experts + router
:class:`StatNN`        StatNN statistics → MLP                                     ``stats``
:class:`StatNNBoosting` StatNN statistics → scikit-learn gradient boosting          ``stats``
:class:`NFN`           nfn NP / HNP invariant network                              ``layers``
=====================  ==========================================================  =====================

Every learner builds itself from the :class:`~weightnets.data.DataSpec` of the
:class:`~weightnets.data.ZooDataModule` it is fitted with (in ``setup``), saves that spec in its
checkpoints, and shares the losses (multi-label: BCE with logits; multi-class: cross-entropy;
regression: MSE on train-standardised targets) and the metrics of :mod:`weightnets.metrics`.

A learner has one or several *candidates* (a layer sweep has one per layer), all trained together on
the same batches with independent parameters. After each validation epoch every candidate's selection
metric is computed (``val/score`` is the best candidate's), and ``val/selection`` — the selection metric
minus ``1e-4 ×`` the validation loss, so that equal scores (a saturated accuracy) go to the lower loss —
picks the candidate and is the monitored value (``weightzoo fit`` keeps the best epoch on it). The test loop reports the candidate that was best on validation at the restored
checkpoint (``test/<metric>``), every candidate (``test/layer/<name>/<metric>``) and the validation
scores the choice was made on (``selection/<name>/val_score``). Nothing is chosen on test data.
"""

from __future__ import annotations

import math
import pickle
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from lightning.pytorch import LightningModule
from torchmetrics import MeanMetric

from weightnets.data import DataSpec
from weightnets.metrics import SELECTION, route_accuracy, scalar, task_metrics
from weightnets.probes.baselines import (
    BoostedTrees,
    DenseProbe,
    NFNEncoder,
    StatMLP,
    nfn_features,
    nfn_layers,
    nfn_network_spec,
)
from weightnets.probes.probex import ProbeX
from weightnets.probes.router import TreeRouter
from weightnets.views import (
    LayerRef,
    hidden_layer_names,
    layer_matrix,
    layer_names,
    output_layer_name,
    resolve_layer,
)
from zoo import ZooError

SPEC_KEY = "weightnets_data_spec"


def _key(name: str) -> str:
    """A ModuleDict key for a layer name (dots are not allowed there)."""
    return name.replace(".", "__") or "model"


class WeightLearner(LightningModule):
    """Base of the learners: building from the data spec, losses, metrics, selection and logging.

    Subclasses implement :meth:`build` (returns the candidate names) and :meth:`outputs` (raw outputs
    per candidate: logits for classes, standardised values for regression); they may override
    :meth:`training_loss`, :meth:`eval_predictions` and :meth:`candidate_params`.
    """

    monitor = "val/selection"
    monitor_mode = "max"
    #: weight of the validation loss in ``val/selection``: it only breaks ties of the selection metric
    TIE_BREAK = 1e-4

    def __init__(self, lr: float = 1e-3, weight_decay: float = 0.0) -> None:
        super().__init__()
        self.lr = float(lr)
        self.weight_decay = float(weight_decay)
        self.spec: DataSpec | None = None
        self.candidates: list[str] = []

    # ------------------------------------------------------------------ building
    def setup(self, stage: str | None = None) -> None:
        if self.spec is not None:
            return
        dm = getattr(self.trainer, "datamodule", None)
        spec = getattr(dm, "spec", None)
        if not isinstance(spec, DataSpec):
            raise ZooError(f"{type(self).__name__} learns from a weightnets.ZooDataModule (data.class_path: "
                           f"weightnets.ZooDataModule), got {type(dm).__name__}")
        self.build_from(spec)

    def build_from(self, spec: DataSpec) -> None:
        """Build the learner's networks and metrics for ``spec`` (once)."""
        self.spec = spec
        self.candidates = list(self.build(spec))
        kind, n = spec.target_kind, spec.n_outputs
        self.metric_sets = nn.ModuleDict({stage: nn.ModuleDict({_key(c): task_metrics(kind, n) for c in self.candidates})
                                          for stage in ("val", "test")})
        routes = {stage: {_key(c): route_accuracy(spec.n_groups) for c in self.candidates} for stage in ("val", "test")}
        self.route_sets = nn.ModuleDict({stage: nn.ModuleDict({k: m for k, m in v.items() if m is not None})
                                         for stage, v in routes.items()})
        self.loss_sets = nn.ModuleDict({stage: nn.ModuleDict({_key(c): MeanMetric() for c in self.candidates})
                                        for stage in ("val", "test")})
        self.register_buffer("val_selection", torch.full((len(self.candidates),), float("nan")))
        self.register_buffer("val_metric", torch.full((len(self.candidates),), float("nan")))

    def build(self, spec: DataSpec) -> list[str]:
        """Create the networks for ``spec``; return the candidate names (one per layer of a sweep).
        Every learner defines it."""
        raise NotImplementedError(f"{type(self).__name__} must define build()")

    def outputs(self, batch: dict[str, Any], train: bool) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """``({candidate: raw outputs [B, n_outputs]}, {candidate: routed tree [B]})`` (routes may be empty).
        Gradient-trained learners define it; :class:`StatNNBoosting` predicts in :meth:`eval_predictions`."""
        raise NotImplementedError(f"{type(self).__name__} must define outputs() or override eval_predictions()")

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if self.spec is not None:
            checkpoint[SPEC_KEY] = self.spec.to_record()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if self.spec is None and SPEC_KEY in checkpoint:
            self.build_from(DataSpec.from_record(checkpoint[SPEC_KEY]))

    # ------------------------------------------------------------------ losses and predictions
    def _standardise(self, y: torch.Tensor) -> torch.Tensor:
        mean = torch.tensor(self.spec.target_mean, dtype=y.dtype, device=y.device)
        std = torch.tensor(self.spec.target_std, dtype=y.dtype, device=y.device)
        return (y.reshape(len(y), -1) - mean) / std

    def loss(self, raw: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        kind = self.spec.target_kind
        if kind == "multilabel":
            return F.binary_cross_entropy_with_logits(raw, y.float())
        if kind == "multiclass":
            return F.cross_entropy(raw, y.long())
        return F.mse_loss(raw, self._standardise(y.float()))

    def to_predictions(self, raw: torch.Tensor) -> torch.Tensor:
        """Raw outputs → what the metrics take: probabilities, or values on the target's scale."""
        kind = self.spec.target_kind
        if kind == "multilabel":
            return torch.sigmoid(raw)
        if kind == "multiclass":
            return torch.softmax(raw, dim=-1)
        mean = torch.tensor(self.spec.target_mean, dtype=raw.dtype, device=raw.device)
        std = torch.tensor(self.spec.target_std, dtype=raw.dtype, device=raw.device)
        values = raw * std + mean
        return values[:, 0] if values.shape[1] == 1 else values

    def prediction_loss(self, preds: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The loss of predictions in metric space (probabilities, or values on the target's scale)."""
        kind = self.spec.target_kind
        if kind == "multilabel":
            return F.binary_cross_entropy(preds.float().clamp(1e-7, 1 - 1e-7), y.float())
        if kind == "multiclass":
            return F.nll_loss(torch.log(preds.float().clamp_min(1e-7)), y.long())
        std = torch.tensor(self.spec.target_std, dtype=torch.float32, device=preds.device)
        return (((preds.float() - y.float()).reshape(len(y), -1) / std) ** 2).mean()

    def training_loss(self, batch: dict[str, Any]) -> torch.Tensor:
        raw, _ = self.outputs(batch, train=True)
        return sum(self.loss(r, batch["y"]) for r in raw.values())

    def eval_predictions(self, batch: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        raw, routes = self.outputs(batch, train=False)
        return {c: self.to_predictions(r) for c, r in raw.items()}, routes

    # ------------------------------------------------------------------ loops
    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        loss = self.training_loss(batch)
        self.log("train/loss", loss, batch_size=len(batch["model_id"]), prog_bar=True)
        return loss

    def _update(self, stage: str, batch: dict[str, Any]) -> None:
        preds, routes = self.eval_predictions(batch)
        y = batch["y"]
        target = y.long() if self.spec.target_kind in ("multilabel", "multiclass") else y.float()
        for c, p in preds.items():
            self.metric_sets[stage][_key(c)].update(p, target)
            self.loss_sets[stage][_key(c)].update(self.prediction_loss(p, y))
        for c, r in routes.items():
            if _key(c) in self.route_sets[stage]:
                self.route_sets[stage][_key(c)].update(r, batch["group"])

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._update("val", batch)

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._update("test", batch)

    def _compute(self, stage: str) -> tuple[list[dict[str, float]], list[float | None]]:
        values, routes = [], []
        for c in self.candidates:
            metrics = self.metric_sets[stage][_key(c)]
            values.append({k: float(scalar(v)) for k, v in metrics.compute().items()})
            metrics.reset()
            loss = self.loss_sets[stage][_key(c)]
            values[-1]["loss"] = float(loss.compute()) if loss.update_count else float("nan")
            loss.reset()
            route = self.route_sets[stage][_key(c)] if _key(c) in self.route_sets[stage] else None
            routes.append(float(route.compute()) if route is not None and route.update_count else None)
            if route is not None:
                route.reset()
        return values, routes

    def _log_candidates(self, stage: str, values: list[dict[str, float]], routes: list[float | None], chosen: int) -> None:
        for name, v in values[chosen].items():
            self.log(f"{stage}/{name}", v)
        if routes[chosen] is not None:
            self.log(f"{stage}/route_acc", routes[chosen])
        if len(self.candidates) > 1:
            for c, vals, route in zip(self.candidates, values, routes):
                for name, v in vals.items():
                    self.log(f"{stage}/layer/{c}/{name}", v)
                if route is not None:
                    self.log(f"{stage}/layer/{c}/route_acc", route)

    def on_validation_epoch_end(self) -> None:
        values, routes = self._compute("val")
        if self.trainer.sanity_checking:
            return
        key = SELECTION[self.spec.target_kind]
        scores = torch.tensor([v[key] - self.TIE_BREAK * min(v["loss"], 10.0) for v in values], dtype=torch.float64)
        self.val_selection.copy_(scores.float())
        self.val_metric.copy_(torch.tensor([v[key] for v in values]))
        chosen = _argmax(scores)
        best = float(scores[chosen])
        self.log("val/selection", best if math.isfinite(best) else -1.0)
        self.log("val/score", values[chosen][key], prog_bar=True)
        self._log_candidates("val", values, routes, chosen)

    def on_test_epoch_end(self) -> None:
        values, routes = self._compute("test")
        chosen = self.selected_candidate
        self._log_candidates("test", values, routes, chosen)
        if len(self.candidates) > 1:
            self.log("test/selected_layer_index", float(chosen))
            for c, s in zip(self.candidates, self.val_metric.tolist()):
                self.log(f"selection/{c}/val_score", s)

    @property
    def selected_candidate(self) -> int:
        """Index of the candidate that was best on validation (the first one before any validation)."""
        return _argmax(self.val_selection.detach().cpu())

    @property
    def selected_name(self) -> str:
        return self.candidates[self.selected_candidate]

    # ------------------------------------------------------------------ reporting
    def candidate_params(self, name: str) -> int:
        """Trained parameters of one candidate (default: every trainable parameter)."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)

    @property
    def trained_params(self) -> int:
        """Trained parameters of the selected candidate (what the learner deploys)."""
        return int(self.candidate_params(self.selected_name)) if self.candidates else 0

    def configure_optimizers(self):
        params = [p for p in self.parameters() if p.requires_grad]
        return torch.optim.AdamW(params, lr=self.lr, weight_decay=self.weight_decay)


def _argmax(scores: torch.Tensor) -> int:
    finite = torch.where(torch.isfinite(scores), scores, torch.full_like(scores, -math.inf))
    return int(torch.argmax(finite)) if len(finite) else 0


# ---------------------------------------------------------------------------- layer probes
class LayerProbe(WeightLearner):
    """ProbeX (``learner: probex``) or a Dense linear probe (``learner: dense``) on one layer's matrix.

    Args:
        learner: ``probex`` or ``dense``.
        layer: a layer name (``layers.1``), a parameter name (``layers.1.weight``: that tensor alone),
            ``auto`` (a probe per hidden layer, the best on validation is reported), ``all`` (every layer,
            the output layer included), ``output`` (the output layer), or a list of names. With a
            single-layer data view the probe reads that layer and ``layer`` must be ``auto`` or its name.
        experts: one expert per model tree (the data module's groups, ``tree_id``) and a
            :class:`~weightnets.probes.router.TreeRouter`; training uses each model's own tree, validation
            and test the router's choice, and ``route_acc`` is logged.
        center: subtract the tree's centroid (experts) or the training mean (one probe) from the matrix.
        r_u, d_v, r_t, dropout: ProbeX's sizes (:class:`~weightnets.probes.probex.ProbeX`).
        lr, weight_decay: AdamW.
    """

    def __init__(self, learner: str = "probex", layer: str | list[str] = "auto", experts: bool = False,
                 center: bool = True, r_u: int = 16, d_v: int = 16, r_t: int = 32, dropout: float = 0.0,
                 lr: float = 1e-3, weight_decay: float = 1e-4) -> None:
        super().__init__(lr=lr, weight_decay=weight_decay)
        if learner not in ("probex", "dense"):
            raise ZooError(f"LayerProbe learner must be 'probex' or 'dense', got {learner!r}")
        self.save_hyperparameters()
        self.learner = learner
        self.layer = layer
        self.experts = bool(experts)
        self.center = bool(center)

    def _layer_refs(self, spec: DataSpec) -> list[LayerRef]:
        if spec.view not in ("flat",) and spec.layer is None:
            raise ZooError(f"LayerProbe reads data.view 'flat' (with model.layer) or a single layer, got view "
                           f"{spec.view!r}")
        layout = spec.layout()
        if spec.layer is not None:
            if self.layer not in ("auto", spec.layer, None):
                raise ZooError(f"the data view is layer {spec.layer!r} but model.layer is {self.layer!r}; use "
                               "data.view: flat to sweep layers, or set model.layer to the view's layer")
            return [spec.layer_ref()]
        if isinstance(self.layer, (list, tuple)):
            names = list(self.layer)
        elif self.layer == "auto":
            names = hidden_layer_names(layout) or layer_names(layout)
        elif self.layer == "all":
            names = layer_names(layout)
        elif self.layer == "output":
            names = [output_layer_name(layout)]
        else:
            names = [self.layer]
        return [resolve_layer(layout, n) for n in names]

    def build(self, spec: DataSpec) -> list[str]:
        if self.experts and spec.n_groups < 1:
            raise ZooError("experts: true needs groups of models (the trees of a model-tree zoo, data.group_by)")
        self.refs = {r.name: r for r in self._layer_refs(spec)}
        g = spec.n_groups if self.experts else 1
        hp = self.hparams
        encoders, routers = {}, {}
        for name, ref in self.refs.items():
            d_out, cols = ref.shape
            if self.learner == "probex":
                encoders[_key(name)] = ProbeX(d_out, cols, spec.n_outputs, hp.r_u, hp.d_v, hp.r_t, g, hp.dropout)
            else:
                encoders[_key(name)] = DenseProbe(d_out, cols, spec.n_outputs, g)
            routers[_key(name)] = TreeRouter(g, ref.shape)
        self.encoders = nn.ModuleDict(encoders)
        self.routers = nn.ModuleDict(routers)
        return list(self.refs)

    def _matrix(self, batch: dict[str, Any], name: str) -> torch.Tensor:
        x = batch["x"]
        return x if self.spec.layer is not None else layer_matrix(x, self.refs[name])

    def on_fit_start(self) -> None:
        if all(bool(r.fitted) for r in self.routers.values()):
            return
        dm = self.trainer.datamodule
        for batch in dm.loader("train", shuffle=False, augment=False):
            group = batch["group"].to(self.device)
            for name in self.candidates:
                self.routers[_key(name)].accumulate(self._matrix(batch, name).to(self.device), group)
        for router in self.routers.values():
            router.finish(self.spec.groups if self.experts else None)

    def outputs(self, batch, train):
        out, routes = {}, {}
        for name in self.candidates:
            x = self._matrix(batch, name)
            router = self.routers[_key(name)]
            if not self.experts:
                group = torch.zeros(len(x), dtype=torch.int64, device=x.device)
            elif train:
                group = batch["group"]
            else:
                group = router(x)
                routes[name] = group
            if self.center:
                x = router.center(x, group)
            out[name] = self.encoders[_key(name)](x, group if self.experts else None)
        return out, routes

    def candidate_params(self, name: str) -> int:
        return sum(p.numel() for p in self.encoders[_key(name)].parameters())


# ---------------------------------------------------------------------------- StatNN
def _stat_entries(spec: DataSpec, tensors: str | Sequence[str]) -> dict[str, list[int]]:
    """Indices of the layout entries StatNN reads, per architecture (same count for every one)."""
    out = {}
    for arch in spec.arch_keys:
        layout = spec.layout(arch)
        names = layout.names
        if tensors == "all":
            chosen = names
        elif tensors in ("hidden", "output"):
            layers = hidden_layer_names(layout) if tensors == "hidden" else [output_layer_name(layout)]
            refs = [resolve_layer(layout, n) for n in layers]
            chosen = [e.name for r in refs for e in (r.weight, r.bias) if e is not None]
        else:
            chosen = list(tensors)
            missing = [n for n in chosen if n not in names]
            if missing:
                raise ZooError(f"StatNN tensors {missing} are not parameters of {arch}; it has {names}")
        out[arch] = [names.index(n) for n in chosen]
    counts = {a: len(v) for a, v in out.items()}
    if len(set(counts.values())) != 1:
        raise ZooError(f"StatNN tensors={tensors!r} picks different numbers of tensors per architecture {counts}; "
                       "select one architecture")
    return out


class StatNN(WeightLearner):
    """StatNN with an MLP head (Unterthiner et al. 2020): the 7 statistics of each chosen tensor → MLP.

    Args:
        tensors: ``all`` (every weight and bias tensor), ``hidden`` (the hidden layers' tensors),
            ``output`` (the output layer's), or a list of parameter names.
        hidden, dropout: the MLP's hidden widths and dropout. lr, weight_decay: AdamW.
    Takes several architectures (e.g. the widths of a phase grid) when they have the same number of tensors.
    """

    def __init__(self, tensors: str | list[str] = "all", hidden: list[int] = (64, 64), dropout: float = 0.1,
                 lr: float = 1e-3, weight_decay: float = 1e-4) -> None:
        super().__init__(lr=lr, weight_decay=weight_decay)
        self.save_hyperparameters()
        self.tensors = tensors

    def build(self, spec: DataSpec) -> list[str]:
        if spec.view != "stats":
            raise ZooError(f"StatNN reads data.view 'stats', got {spec.view!r}")
        self.entries = _stat_entries(spec, self.tensors)
        n_features = 7 * len(next(iter(self.entries.values())))
        self.head = StatMLP(n_features, spec.n_outputs, list(self.hparams.hidden), self.hparams.dropout)
        return ["model"]

    def features(self, batch: dict[str, Any]) -> torch.Tensor:
        idx = torch.tensor(self.entries[batch["arch"]], device=batch["x"].device)
        return batch["x"].index_select(1, idx).flatten(1)

    def outputs(self, batch, train):
        return {"model": self.head(self.features(batch))}, {}


class StatNNBoosting(WeightLearner):
    """StatNN with gradient-boosted trees: the statistics into scikit-learn's
    ``HistGradientBoostingClassifier`` (classes, one per label for class sets) or ``...Regressor``.

    Fitted once, on every training example, at the last batch of the first training epoch (use
    ``trainer.max_epochs: 1``); nothing is trained by gradient. The fit counts as one optimiser step (of
    an optimiser over a single frozen marker parameter) so that Lightning's checkpointing saves it.
    ``trained_params`` is an upper bound on the fitted numbers of the trees (:meth:`BoostedTrees.max_nodes`). Args: ``tensors`` as :class:`StatNN`;
    the rest are scikit-learn's parameters.
    """

    def __init__(self, tensors: str | list[str] = "all", max_iter: int = 200, learning_rate: float = 0.1,
                 max_leaf_nodes: int = 31, min_samples_leaf: int = 20, l2_regularization: float = 0.0,
                 random_state: int = 0) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.automatic_optimization = False
        self.tensors = tensors
        self.step_marker = nn.Parameter(torch.zeros(()), requires_grad=False)
        self.boosted: BoostedTrees | None = None
        self._x: list[np.ndarray] = []
        self._y: list[np.ndarray] = []

    def build(self, spec: DataSpec) -> list[str]:
        if spec.view != "stats":
            raise ZooError(f"StatNNBoosting reads data.view 'stats', got {spec.view!r}")
        self.entries = _stat_entries(spec, self.tensors)
        return ["model"]

    def features(self, batch: dict[str, Any]) -> np.ndarray:
        idx = torch.tensor(self.entries[batch["arch"]], device=batch["x"].device)
        return batch["x"].index_select(1, idx).flatten(1).double().cpu().numpy()

    def training_step(self, batch, batch_idx):
        if self.boosted is None:
            self._x.append(self.features(batch))
            self._y.append(batch["y"].cpu().numpy())
            if batch_idx == self.trainer.num_training_batches - 1:
                self._fit()
                self.optimizers().step()  # counts the fit as a step: checkpoints are saved after steps only
        return None

    def _fit(self) -> None:
        if self.boosted is not None or not self._x:
            return
        hp = self.hparams
        params = dict(max_iter=hp.max_iter, learning_rate=hp.learning_rate, max_leaf_nodes=hp.max_leaf_nodes,
                      min_samples_leaf=hp.min_samples_leaf, l2_regularization=hp.l2_regularization,
                      random_state=hp.random_state, early_stopping=False)
        self.boosted = BoostedTrees(self.spec.target_kind, self.spec.n_outputs, **params).fit(
            np.concatenate(self._x), np.concatenate(self._y))
        self._x, self._y = [], []

    def on_train_epoch_end(self) -> None:
        self._fit()

    def on_validation_epoch_start(self) -> None:
        if not self.trainer.sanity_checking:
            self._fit()

    def eval_predictions(self, batch):
        if self.boosted is None:
            raise ZooError("StatNNBoosting has not been fitted (no training batch was seen)")
        p = torch.from_numpy(self.boosted.predict(self.features(batch))).float().to(batch["x"].device)
        if self.spec.target_kind == "regression" and p.shape[1] == 1:
            p = p[:, 0]
        return {"model": p}, {}

    def on_validation_epoch_end(self) -> None:
        if self.boosted is None:  # sanity check before any training: nothing to evaluate yet
            for m in self.metric_sets["val"].values():
                m.reset()
            return
        super().on_validation_epoch_end()

    def validation_step(self, batch, batch_idx):
        if self.boosted is not None:
            super().validation_step(batch, batch_idx)

    def on_save_checkpoint(self, checkpoint):
        super().on_save_checkpoint(checkpoint)
        if self.boosted is not None:
            checkpoint["boosted_trees"] = pickle.dumps(self.boosted)

    def on_load_checkpoint(self, checkpoint):
        super().on_load_checkpoint(checkpoint)
        if "boosted_trees" in checkpoint:
            self.boosted = pickle.loads(checkpoint["boosted_trees"])

    def candidate_params(self, name: str) -> int:
        return self.boosted.max_nodes() if self.boosted is not None else 0

    def configure_optimizers(self):
        return torch.optim.SGD([self.step_marker], lr=0.0)


# ---------------------------------------------------------------------------- NFN
class NFN(WeightLearner):
    """Neural functional (Zhou et al. 2023) from the ``nfn`` package: NP or HNP equivariant layers,
    invariant pooling and an MLP head, on every weight and bias of an MLP or 2-D CNN.

    Args:
        mode: ``np`` (all neurons permutable) or ``hnp`` (hidden neurons only).
        channels, depth: width and number of the equivariant layers. head_hidden, dropout: the MLP head.
        lr, weight_decay: AdamW.
    Takes several widths at once (the NP/HNP layers do not depend on hidden sizes); batches hold one
    architecture each. 1-D CNNs are refused with an error (nfn has no 1-D convolution layers).
    """

    def __init__(self, mode: str = "np", channels: int = 16, depth: int = 2, head_hidden: int = 64,
                 dropout: float = 0.0, lr: float = 1e-3, weight_decay: float = 0.0) -> None:
        super().__init__(lr=lr, weight_decay=weight_decay)
        if mode not in ("np", "hnp"):
            raise ZooError(f"NFN mode must be 'np' or 'hnp', got {mode!r}")
        self.save_hyperparameters()

    def build(self, spec: DataSpec) -> list[str]:
        if spec.view != "layers":
            raise ZooError(f"NFN reads data.view 'layers', got {spec.view!r}")
        self.nfn_layers = {a: nfn_layers(spec.layout(a), a) for a in spec.arch_keys}
        shapes = {a: (len(ls), ls[0].shape[1], ls[-1].shape[0], tuple(l.shape[2:] for l in ls))
                  for a, ls in self.nfn_layers.items()}
        if len(set(shapes.values())) > 1:
            raise ZooError(f"NFN takes architectures that differ only in hidden sizes; these differ in depth, "
                           f"inputs, outputs or filters: {sorted(shapes)}; select one architecture")
        first = self.nfn_layers[spec.arch_keys[0]]
        hp = self.hparams
        self.net = NFNEncoder(nfn_network_spec(first), spec.n_outputs, hp.mode, hp.channels, hp.depth,
                              hp.head_hidden, hp.dropout)
        return ["model"]

    def outputs(self, batch, train):
        return {"model": self.net(nfn_features(batch["x"], self.nfn_layers[batch["arch"]]))}, {}
