"""A variational autoencoder of one architecture's weight vectors (the first stage of latent diffusion).

The vector a generator learns (a child's task vector, or a model's weights; see
:mod:`weightnets.generative.data`) is standardised per parameter tensor with statistics of the training
models (:func:`zoo.normalization.compute_norm_stats`; stored in the checkpoint), cut into a sequence —
SANE-style tokens, one per neuron / output channel (:mod:`zoo.tokens`, Schürholt et al. 2024), or
fixed-size chunks of the flat vector (p-diff, Wang et al. 2024; D2NWG, Soro et al. 2025) — and encoded by
a transformer into one latent vector. The decoder maps the latent back to the sequence and the sequence
back to the flat vector exactly (:func:`zoo.tokens.detokenize`).

Training follows p-diff's autoencoder (Sec. 3.2: Gaussian noise on the input, 0.001, and on the latent,
0.1) with D2NWG's VAE objective (a Gaussian posterior with a small KL weight), so the latent space is
smooth enough for diffusion and for kernel density sampling (SANE). Reconstruction is judged in function
space: decoded models' accuracy as a fraction of the originals' (``val/acc_ratio``, ``test/acc_ratio``).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from lightning.pytorch import LightningModule

from kernels import ParamLayout
from weightnets.generative.data import GenerationContext, GenerationData
from zoo import ZooError
from zoo.normalization import NormStats, compute_norm_stats
from zoo.tokens import detokenize, token_map, tokenize

VIEWS = ("tokens", "chunks")
CHECKPOINT_KEY = "weightzoo_generative"


class WeightSequence(nn.Module):
    """Flat vectors ``[B, n_params]`` ↔ sequences ``[B, n_tokens, token_dim]`` (exact inverse).

    ``tokens``: :func:`zoo.tokens.token_map` (one token per unit, ``token_dim`` defaults to the largest
    unit); ``chunks``: consecutive pieces of ``chunk_size`` values, the last zero-padded.
    """

    def __init__(self, layout: ParamLayout, view: str = "tokens", token_dim: int | None = None,
                 chunk_size: int = 64) -> None:
        super().__init__()
        if view not in VIEWS:
            raise ZooError(f"view: unknown view {view!r}; choose from {list(VIEWS)}")
        self.view = view
        self.n_params = layout.n_params
        if view == "tokens":
            self.tmap = token_map(layout, token_dim)
            self.n_tokens, self.token_dim = self.tmap.n_tokens, self.tmap.token_dim
        else:
            if chunk_size < 1:
                raise ZooError(f"chunk_size must be >= 1, got {chunk_size}")
            self.tmap = None
            self.token_dim = int(chunk_size)
            self.n_tokens = math.ceil(self.n_params / self.token_dim)

    def forward(self, flat: torch.Tensor) -> torch.Tensor:
        if self.tmap is not None:
            return tokenize(flat, self.tmap)
        pad = self.n_tokens * self.token_dim - self.n_params
        return F.pad(flat, (0, pad)).reshape(*flat.shape[:-1], self.n_tokens, self.token_dim)

    def inverse(self, seq: torch.Tensor) -> torch.Tensor:
        if self.tmap is not None:
            return detokenize(seq, self.tmap)
        return seq.reshape(*seq.shape[:-2], -1)[..., :self.n_params]


def _transformer(d_model: int, n_heads: int, n_layers: int) -> nn.TransformerEncoder:
    layer = nn.TransformerEncoderLayer(d_model, n_heads, dim_feedforward=2 * d_model, dropout=0.0,
                                       batch_first=True, norm_first=True)
    return nn.TransformerEncoder(layer, n_layers, enable_nested_tensor=False)


class WeightAutoencoder(LightningModule):
    """VAE over one architecture's weight (or task) vectors; see the module docstring.

    Args:
        view: ``tokens`` (SANE-style, :mod:`zoo.tokens`) or ``chunks``.
        token_dim: token width for ``tokens`` (default: the largest unit); chunk_size: for ``chunks``.
        d_model, n_heads, n_layers: the transformer of encoder and decoder.
        latent_dim: size of the latent vector.
        kl_weight: weight of the KL term (per latent dimension) against the mean squared error (per value).
        input_noise, latent_noise: standard deviations of the training noise on the standardised input and
            on the latent sample (p-diff: 0.001 and 0.1).
        lr, weight_decay: AdamW.
        warmup_steps: linear learning-rate warm-up, then cosine decay to 0 at the last step.

    Shapes: ``encode(x [B, n_params]) -> (mu, logvar) [B, latent_dim]``; ``decode(z) -> [B, n_params]``
    (standardised); :meth:`reconstruct` works on raw vectors. The checkpoint holds the
    :class:`~weightnets.generative.data.GenerationContext` and the standardisation statistics, so
    ``WeightAutoencoder.load_from_checkpoint(path)`` needs no data.
    """

    monitor = "val/loss"
    monitor_mode = "min"

    def __init__(self, view: str = "tokens", token_dim: int | None = None, chunk_size: int = 64, d_model: int = 64,
                 n_heads: int = 4, n_layers: int = 2, latent_dim: int = 64, kl_weight: float = 1e-4,
                 input_noise: float = 0.001, latent_noise: float = 0.1, lr: float = 1e-3, weight_decay: float = 0.0,
                 warmup_steps: int = 100) -> None:
        super().__init__()
        if view not in VIEWS:
            raise ZooError(f"model.view: unknown view {view!r}; choose from {list(VIEWS)}")
        self.save_hyperparameters()
        self.context: GenerationContext | None = None
        self.norm: NormStats | None = None
        self._outputs: list[tuple[torch.Tensor, torch.Tensor]] = []

    # ------------------------------------------------------------------ building
    @property
    def built(self) -> bool:
        return self.context is not None

    def build(self, context: GenerationContext, norm: NormStats) -> None:
        """Create the layers for ``context``'s architecture with standardisation statistics ``norm``."""
        h = self.hparams
        self.context, self.norm = context, norm
        self.layout = ParamLayout.from_record(context.arch["layout"])
        mean, std = norm.vectors(self.layout)
        self.register_buffer("norm_mean", mean.clone())
        self.register_buffer("norm_std", std.clone())
        self.seq = WeightSequence(self.layout, h.view, h.token_dim, h.chunk_size)
        T, D, d = self.seq.n_tokens, self.seq.token_dim, h.d_model
        self.embed = nn.Linear(D, d)
        self.pos_enc = nn.Parameter(torch.randn(T, d) * 0.02)
        self.encoder = _transformer(d, h.n_heads, h.n_layers)
        self.to_latent = nn.Linear(T * d, 2 * h.latent_dim)
        self.from_latent = nn.Linear(h.latent_dim, T * d)
        self.pos_dec = nn.Parameter(torch.randn(T, d) * 0.02)
        self.decoder = _transformer(d, h.n_heads, h.n_layers)
        self.out = nn.Sequential(nn.LayerNorm(d), nn.Linear(d, D))

    def setup(self, stage: str) -> None:
        if self.built:
            return
        dm = self.trainer.datamodule if self.trainer is not None else None
        if not isinstance(dm, GenerationData):
            raise ZooError("WeightAutoencoder trains on a weightnets.generative.GenerationData data module "
                           f"(got {type(dm).__name__})")
        dm.setup(stage)
        layout = ParamLayout.from_record(dm.context.arch["layout"])
        self.build(dm.context, compute_norm_stats([dm.train_targets()], layout))

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint[CHECKPOINT_KEY] = {"kind": "weight_autoencoder", "context": self.context.to_record(),
                                      "norm": self.norm.to_record()}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        rec = checkpoint.get(CHECKPOINT_KEY)
        if rec is None or rec.get("kind") != "weight_autoencoder":
            raise ZooError("not a weight-autoencoder checkpoint (no weightzoo_generative record of kind "
                           "'weight_autoencoder')")
        if not self.built:
            self.build(GenerationContext.from_record(rec["context"]), NormStats.from_record(rec["norm"]))

    # ------------------------------------------------------------------ the model
    def normalize(self, raw: torch.Tensor) -> torch.Tensor:
        return (raw - self.norm_mean) / self.norm_std

    def denormalize(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.norm_std + self.norm_mean

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Posterior mean and log-variance ``[B, latent_dim]`` of standardised vectors ``x [B, n_params]``."""
        h = self.encoder(self.embed(self.seq(x)) + self.pos_enc)
        mu, logvar = self.to_latent(h.flatten(1)).chunk(2, dim=-1)
        return mu, logvar.clamp(-20.0, 10.0)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Standardised vectors ``[B, n_params]`` from latents ``z [B, latent_dim]``."""
        T, d = self.seq.n_tokens, self.hparams.d_model
        h = self.decoder(self.from_latent(z).view(-1, T, d) + self.pos_dec)
        return self.seq.inverse(self.out(h))

    @torch.no_grad()
    def latent(self, raw: torch.Tensor) -> torch.Tensor:
        """Posterior means ``[B, latent_dim]`` of raw vectors (what diffusion and KDE sample)."""
        return self.encode(self.normalize(raw))[0]

    def decode_raw(self, z: torch.Tensor) -> torch.Tensor:
        """Raw vectors (task vectors or weights) ``[B, n_params]`` from latents."""
        return self.denormalize(self.decode(z))

    @torch.no_grad()
    def reconstruct(self, raw: torch.Tensor) -> torch.Tensor:
        """``decode(encode(raw).mean)``: raw vectors in, raw vectors out, ``[B, n_params]``."""
        return self.decode_raw(self.latent(raw))

    def forward(self, raw: torch.Tensor) -> torch.Tensor:
        return self.reconstruct(raw)

    # ------------------------------------------------------------------ training
    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        h = self.hparams
        x = self.normalize(batch["target"])
        mu, logvar = self.encode(x + h.input_noise * torch.randn_like(x))
        z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
        z = z + h.latent_noise * torch.randn_like(z)
        mse = F.mse_loss(self.decode(z), x)
        kl = (-0.5 * (1 + logvar - mu.pow(2) - logvar.exp())).mean()
        loss = mse + h.kl_weight * kl
        b = len(x)
        self.log_dict({"train/mse": mse, "train/kl": kl, "train/loss": loss}, on_step=False, on_epoch=True,
                      batch_size=b)
        return loss

    def _eval_step(self, batch: dict[str, torch.Tensor], prefix: str) -> None:
        x = self.normalize(batch["target"])
        rec = self.decode(self.encode(x)[0])
        self.log(f"{prefix}/loss", F.mse_loss(rec, x), on_epoch=True, batch_size=len(x))
        self._outputs.append((batch["row"].cpu(), self.denormalize(rec).cpu()))

    def _eval_end(self, prefix: str) -> None:
        if not self._outputs:
            return
        rows = torch.cat([r for r, _ in self._outputs]).numpy()
        raw = torch.cat([w for _, w in self._outputs])
        self._outputs = []
        dm: GenerationData = self.trainer.datamodule
        part = "val" if prefix == "val" else "test"
        base = dm.base_pos[torch.from_numpy(rows)]
        acc = dm.evaluate(self.context.to_weights(raw, base), rows, part)
        ref = dm.reference_accuracy(rows, part)
        self.log(f"{prefix}/acc", float(np.nanmean(acc)))
        self.log(f"{prefix}/acc_original", float(np.nanmean(ref)))
        self.log(f"{prefix}/acc_ratio", float(np.nanmean(acc) / np.nanmean(ref)))

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self._eval_step(batch, "val")

    def on_validation_epoch_end(self) -> None:
        self._eval_end("val")

    def test_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self._eval_step(batch, "test")

    def on_test_epoch_end(self) -> None:
        self._eval_end("test")

    def configure_optimizers(self) -> Any:
        return adamw_with_schedule(self, self.hparams.lr, self.hparams.weight_decay, self.hparams.warmup_steps)


def adamw_with_schedule(module: LightningModule, lr: float, weight_decay: float, warmup_steps: int) -> Any:
    """AdamW with a linear warm-up over ``warmup_steps`` and a cosine decay to 0 at the trainer's last
    step (``torch.optim.lr_scheduler.LambdaLR``, stepped every optimiser step)."""
    opt = torch.optim.AdamW([p for p in module.parameters() if p.requires_grad], lr=lr, weight_decay=weight_decay)
    total = max(int(module.trainer.estimated_stepping_batches), 1)
    warm = max(min(int(warmup_steps), total - 1), 0)

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        return 0.5 * (1.0 + math.cos(math.pi * min(step - warm, total - warm) / max(total - warm, 1)))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
    return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
