"""Latent diffusion over a weight autoencoder's latents (p-diff, Wang et al. 2024; D2NWG, Soro et al. 2025).

* Noise schedules are **diffusers**' (:func:`make_schedulers`): ``DDPMScheduler`` adds noise in training
  (1000 linear-β steps as in p-diff, ε-prediction), ``DDIMScheduler`` samples (Song et al. 2021,
  deterministic with η = 0). Both are built with ``clip_sample=False`` and no thresholding: latents are
  standardised per dimension with the training latents' statistics (stored as buffers), so nothing is
  clamped — the anchors clamp latents to [-1, 1].
* Denoisers take the noisy latent, the timestep (diffusers' sinusoidal ``Timesteps`` and
  ``TimestepEmbedding``) and the condition vector of :class:`~weightnets.generative.conditioning.ConditionEncoder`:
  :class:`MLPDenoiser` (residual blocks with adaptive layer norm, the adaLN-Zero of DiT, Peebles & Xie
  2023) or :class:`TransformerDenoiser` (latent chunks as tokens plus one condition token).
* An exponential moving average of the denoiser and condition encoder (``torch.optim.swa_utils.AveragedModel``)
  is what samples and validation use.
* Condition dropout (``cond_dropout``) trains the unconditional branch; :meth:`LatentDiffusion.generate`
  mixes the branches with classifier-free guidance (Ho & Salimans 2022): ``ε = ε_u + w (ε_c − ε_u)``, so
  ``w = 0`` is the unconditional sampler and ``w = 1`` the plain conditional one.
"""

from __future__ import annotations

import inspect
import json
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from diffusers import DDIMScheduler, DDPMScheduler
from diffusers.models.embeddings import TimestepEmbedding, Timesteps
from lightning.pytorch import LightningModule
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from weightnets.generative.autoencoder import (
    CHECKPOINT_KEY,
    WeightAutoencoder,
    adamw_with_schedule,
)
from weightnets.generative.conditioning import CONDITIONINGS, ConditionEncoder
from weightnets.generative.data import GenerationContext, GenerationData
from zoo import ZooError
from zoo.normalization import NormStats

DENOISERS = ("mlp", "transformer")


def make_schedulers(num_train_timesteps: int = 1000, beta_schedule: str = "linear", beta_start: float = 1e-4,
                    beta_end: float = 0.02) -> tuple[DDPMScheduler, DDIMScheduler]:
    """The training (DDPM) and sampling (DDIM) schedulers of diffusers, sharing one β schedule, ε-prediction,
    and no clipping or thresholding of samples."""
    common = dict(num_train_timesteps=int(num_train_timesteps), beta_schedule=beta_schedule,
                  beta_start=float(beta_start), beta_end=float(beta_end), prediction_type="epsilon",
                  clip_sample=False, thresholding=False)
    return DDPMScheduler(**common), DDIMScheduler(**common, set_alpha_to_one=True)


@torch.no_grad()
def ddim_sample(eps_fn: Callable[[torch.Tensor, int], torch.Tensor], scheduler: DDIMScheduler, z: torch.Tensor,
                steps: int) -> torch.Tensor:
    """Run DDIM (η = 0) from ``z [B, L]`` (pure noise) for ``steps`` steps; ``eps_fn(z_t, t)`` predicts the noise
    ``[B, L]`` at integer timestep ``t``. Returns the final sample ``[B, L]``."""
    scheduler.set_timesteps(int(steps))
    for t in scheduler.timesteps:
        z = scheduler.step(eps_fn(z, int(t)), t, z, eta=0.0).prev_sample
    return z


class _AdaBlock(nn.Module):
    """Residual MLP block modulated by the conditioning (shift, scale and a zero-initialised gate)."""

    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(hidden, elementwise_affine=False)
        self.film = nn.Linear(hidden, 3 * hidden)
        nn.init.zeros_(self.film.weight)
        nn.init.zeros_(self.film.bias)
        self.mlp = nn.Sequential(nn.Linear(hidden, 2 * hidden), nn.SiLU(), nn.Linear(2 * hidden, hidden))

    def forward(self, h: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        shift, scale, gate = self.film(c).chunk(3, dim=-1)
        return h + gate * self.mlp(self.norm(h) * (1 + scale) + shift)


class MLPDenoiser(nn.Module):
    """ε-prediction ``[B, L]`` from ``z_t [B, L]``, timesteps ``t [B]`` and conditions ``[B, cond_dim]``."""

    def __init__(self, latent_dim: int, cond_dim: int, hidden: int = 512, n_blocks: int = 4, time_dim: int = 128) -> None:
        super().__init__()
        self.time_proj = Timesteps(time_dim, flip_sin_to_cos=True, downscale_freq_shift=0)
        self.time_emb = TimestepEmbedding(time_dim, hidden)
        self.cond_emb = nn.Linear(cond_dim, hidden)
        self.inp = nn.Linear(latent_dim, hidden)
        self.blocks = nn.ModuleList(_AdaBlock(hidden) for _ in range(n_blocks))
        self.out = nn.Sequential(nn.LayerNorm(hidden), nn.Linear(hidden, latent_dim))

    def forward(self, z: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        c = F.silu(self.time_emb(self.time_proj(t).to(z.dtype)) + self.cond_emb(cond))
        h = self.inp(z)
        for block in self.blocks:
            h = block(h, c)
        return self.out(h)


class TransformerDenoiser(nn.Module):
    """ε-prediction from latents cut into tokens of ``token_size`` values, with one extra token carrying
    timestep and condition; same signature as :class:`MLPDenoiser`."""

    def __init__(self, latent_dim: int, cond_dim: int, hidden: int = 128, n_blocks: int = 4, time_dim: int = 128,
                 token_size: int = 8, n_heads: int = 4) -> None:
        super().__init__()
        self.latent_dim, self.token_size = latent_dim, token_size
        self.n_tokens = -(-latent_dim // token_size)
        self.time_proj = Timesteps(time_dim, flip_sin_to_cos=True, downscale_freq_shift=0)
        self.time_emb = TimestepEmbedding(time_dim, hidden)
        self.cond_emb = nn.Linear(cond_dim, hidden)
        self.inp = nn.Linear(token_size, hidden)
        self.pos = nn.Parameter(torch.randn(self.n_tokens + 1, hidden) * 0.02)
        layer = nn.TransformerEncoderLayer(hidden, n_heads, dim_feedforward=2 * hidden, dropout=0.0, batch_first=True,
                                           norm_first=True)
        self.body = nn.TransformerEncoder(layer, n_blocks, enable_nested_tensor=False)
        self.out = nn.Sequential(nn.LayerNorm(hidden), nn.Linear(hidden, token_size))

    def forward(self, z: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        b = z.shape[0]
        pad = self.n_tokens * self.token_size - self.latent_dim
        tokens = self.inp(F.pad(z, (0, pad)).view(b, self.n_tokens, self.token_size))
        c = self.time_emb(self.time_proj(t).to(z.dtype)) + self.cond_emb(cond)
        h = self.body(torch.cat([c[:, None], tokens], dim=1) + self.pos)
        return self.out(h[:, 1:]).reshape(b, -1)[:, :self.latent_dim]


class GeneratorNet(nn.Module):
    """Condition encoder + denoiser: the part that trains and whose moving average samples."""

    def __init__(self, condition: ConditionEncoder, denoiser: nn.Module) -> None:
        super().__init__()
        self.condition, self.denoiser = condition, denoiser


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint file from a file path or a ``weightzoo fit`` run folder (its ``test_metrics.json``
    names the best checkpoint)."""
    p = Path(path)
    if p.is_dir():
        metrics = p / "test_metrics.json"
        if not metrics.is_file():
            raise ZooError(f"{p}: a run folder needs test_metrics.json naming its best checkpoint")
        best = json.loads(metrics.read_text()).get("best_checkpoint")
        if not best:
            raise ZooError(f"{metrics}: no best_checkpoint recorded")
        p = Path(best)
    if not p.is_file():
        raise ZooError(f"{p}: no such checkpoint file")
    return p


class LatentDiffusion(LightningModule):
    """Conditional latent diffusion over a trained :class:`WeightAutoencoder`'s latent space.

    Args:
        autoencoder: checkpoint (or ``weightzoo fit`` run folder) of the autoencoder; read when training
            starts. A saved ``LatentDiffusion`` checkpoint holds the autoencoder itself.
        conditioning: ``descriptor`` (task descriptor), ``support`` (k labelled examples; the data module's
            ``support_k`` sets k) or ``none`` (unconditional on the task, p-diff).
        denoiser: ``mlp`` or ``transformer``; hidden, n_blocks: its width and depth.
        cond_dim: width of the condition vector; cond_dropout: probability of dropping the task condition
            of a training example (classifier-free guidance needs it > 0).
        ema_decay: decay of the moving average of the network.
        lr, weight_decay, warmup_steps: AdamW with warm-up and cosine decay.
        num_train_timesteps, beta_schedule, beta_start, beta_end: the diffusers schedule.
        sample_steps: DDIM steps when sampling; guidance: guidance scale of validation and test samples.
        val_samples, test_samples: samples per model drawn in the validation and test loops.

    Validation logs ``val/loss`` (denoising loss of the moving average on fixed noise) and ``val/acc``,
    the accuracy of generated models on their tasks' validation examples (a held-out part of each task's
    training split), which selects the checkpoint.
    """

    monitor = "val/acc"
    monitor_mode = "max"

    def __init__(self, autoencoder: str | None = None, conditioning: str = "descriptor", denoiser: str = "mlp",
                 hidden: int = 512, n_blocks: int = 4, cond_dim: int = 128, cond_dropout: float = 0.1,
                 ema_decay: float = 0.999, lr: float = 1e-3, weight_decay: float = 0.0, warmup_steps: int = 200,
                 num_train_timesteps: int = 1000, beta_schedule: str = "linear", beta_start: float = 1e-4,
                 beta_end: float = 0.02, sample_steps: int = 50, guidance: float = 1.0, val_samples: int = 1,
                 test_samples: int = 4) -> None:
        super().__init__()
        if conditioning not in CONDITIONINGS:
            raise ZooError(f"model.conditioning: unknown conditioning {conditioning!r}; choose from {list(CONDITIONINGS)}")
        if denoiser not in DENOISERS:
            raise ZooError(f"model.denoiser: unknown denoiser {denoiser!r}; choose from {list(DENOISERS)}")
        if not 0.0 <= cond_dropout < 1.0:
            raise ZooError(f"model.cond_dropout must be in [0, 1), got {cond_dropout}")
        self.save_hyperparameters()
        self.ddpm, self.ddim = make_schedulers(num_train_timesteps, beta_schedule, beta_start, beta_end)
        self.autoencoder: WeightAutoencoder | None = None
        self.support_k = 0
        self._outputs: list[torch.Tensor] = []

    # ------------------------------------------------------------------ building
    @property
    def context(self) -> GenerationContext:
        return self.autoencoder.context

    def build(self, autoencoder: WeightAutoencoder, latent_mean: torch.Tensor, latent_std: torch.Tensor,
              support_k: int = 0) -> None:
        """Attach a trained (frozen) autoencoder and the latent statistics, and create the networks."""
        h = self.hparams
        autoencoder.freeze()
        self.autoencoder = autoencoder
        self.support_k = int(support_k)
        ctx = autoencoder.context
        self.register_buffer("latent_mean", latent_mean.detach().clone().float())
        self.register_buffer("latent_std", latent_std.detach().clone().float())
        latent_dim = int(latent_mean.numel())
        cond = ConditionEncoder(h.conditioning, len(ctx.base_ids), ctx.n_classes, ctx.in_features, h.cond_dim)
        cls = MLPDenoiser if h.denoiser == "mlp" else TransformerDenoiser
        self.net = GeneratorNet(cond, cls(latent_dim, h.cond_dim, hidden=h.hidden, n_blocks=h.n_blocks))
        self.ema = AveragedModel(self.net, multi_avg_fn=get_ema_multi_avg_fn(h.ema_decay), use_buffers=True)

    def setup(self, stage: str) -> None:
        if self.autoencoder is not None:
            return
        if self.hparams.autoencoder is None:
            raise ZooError("model.autoencoder: give the checkpoint (or run folder) of a trained WeightAutoencoder")
        dm = self.trainer.datamodule if self.trainer is not None else None
        if not isinstance(dm, GenerationData):
            raise ZooError(f"LatentDiffusion trains on a GenerationData data module (got {type(dm).__name__})")
        ae = load_autoencoder(self.hparams.autoencoder)
        dm.setup(stage)
        diff = dm.context.same_data(ae.context)
        if diff:
            raise ZooError(f"the autoencoder was trained on other data than data.* selects: {diff} differ")
        if self.hparams.conditioning == "support" and dm.support_k < 1:
            raise ZooError("conditioning 'support' needs support sets: set data.support_k >= 1")
        lat = ae.latent(dm.train_targets())
        self.build(ae, lat.mean(0), lat.std(0).clamp_min(1e-6), dm.support_k)
        # the autoencoder is frozen, so every row's latent is fixed: encode the data once
        self.register_buffer("row_latents", torch.cat([ae.latent(dm.targets[i:i + 256])
                                                       for i in range(0, len(dm.targets), 256)]), persistent=False)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        ae = self.autoencoder
        checkpoint[CHECKPOINT_KEY] = {"kind": "latent_diffusion", "support_k": self.support_k,
                                      "autoencoder": {"hparams": dict(ae.hparams), "context": ae.context.to_record(),
                                                      "norm": ae.norm.to_record()}}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        rec = checkpoint.get(CHECKPOINT_KEY)
        if rec is None or rec.get("kind") != "latent_diffusion":
            kind = rec.get("kind") if rec else None
            raise ZooError(f"not a latent-diffusion generator checkpoint (its weightzoo record is {kind!r})")
        if self.autoencoder is None:
            a = rec["autoencoder"]
            ae = WeightAutoencoder(**a["hparams"])
            ae.build(GenerationContext.from_record(a["context"]), NormStats.from_record(a["norm"]))
            dim = int(ae.hparams.latent_dim)
            self.build(ae, torch.zeros(dim), torch.ones(dim), rec.get("support_k", 0))

    # ------------------------------------------------------------------ conditions
    def _condition(self, net: GeneratorNet, batch: dict[str, Any], keep: torch.Tensor | None) -> torch.Tensor:
        b = len(batch["base"])
        return net.condition(b, base=batch["base"], descriptor=batch.get("descriptor"),
                             support_x=batch.get("support_x"), support_y=batch.get("support_y"), keep=keep)

    def _z0(self, batch: dict[str, Any]) -> torch.Tensor:
        cached = getattr(self, "row_latents", None)
        lat = cached[batch["row"]] if cached is not None else self.autoencoder.latent(batch["target"])
        return (lat - self.latent_mean) / self.latent_std

    # ------------------------------------------------------------------ training
    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        z0 = self._z0(batch)
        b = len(z0)
        noise = torch.randn_like(z0)
        t = torch.randint(0, self.ddpm.config.num_train_timesteps, (b,), device=z0.device)
        zt = self.ddpm.add_noise(z0, noise, t)
        keep = torch.rand(b, device=z0.device) >= self.hparams.cond_dropout
        cond = self._condition(self.net, batch, keep)
        loss = F.mse_loss(self.net.denoiser(zt, t, cond), noise)
        self.log("train/loss", loss, on_step=False, on_epoch=True, batch_size=b)
        return loss

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        self.ema.update_parameters(self.net)

    # ------------------------------------------------------------------ sampling
    @torch.no_grad()
    def generate(self, n: int | None = None, *, base: torch.Tensor | None = None,
                 descriptor: torch.Tensor | None = None, support_x: torch.Tensor | None = None,
                 support_y: torch.Tensor | None = None, guidance: float | None = None, steps: int | None = None,
                 seed: int = 0, unconditional: bool = False, use_ema: bool = True) -> torch.Tensor:
        """Flat model weights ``[B, n_params]`` of ``B`` generated models.

        Args:
            n: number of samples when no per-sample condition is given (else ``B`` = their length).
            base: ``[B]`` long positions in ``context.base_ids`` (required when the generator has bases).
            descriptor: ``[B, d]`` task descriptors; support_x/support_y: ``[B, k, *input_shape]`` / ``[B, k]``.
            guidance: classifier-free guidance scale ``w`` (default: the module's ``guidance``); ``w = 0`` is the
                unconditional sampler, ``w = 1`` the conditional one.
            steps: DDIM steps (default ``sample_steps``); seed: seed of the initial noise.
            unconditional: sample with the null task condition (the p-diff mode of a conditional model).
        """
        ctx = self.context
        sizes = [len(v) for v in (base, descriptor, support_y) if v is not None]
        b = sizes[0] if sizes else int(n or 0)
        if b < 1:
            raise ZooError(f"generate: the number of samples must be >= 1, got {b}")
        if base is None:
            base = torch.zeros(b, dtype=torch.long)
        w = float(self.hparams.guidance if guidance is None else guidance)
        net = self.ema.module if use_ema else self.net
        net.eval()
        batch = {"base": base.to(self.device), "descriptor": None if descriptor is None else descriptor.to(self.device),
                 "support_x": None if support_x is None else support_x.to(self.device),
                 "support_y": None if support_y is None else support_y.to(self.device)}
        null = torch.zeros(b, dtype=torch.bool, device=self.device)
        cond_u = self._condition(net, batch, null)
        conditional = self.hparams.conditioning != "none" and not unconditional
        cond_c = self._condition(net, batch, None) if conditional else cond_u

        def eps(z: torch.Tensor, t: int) -> torch.Tensor:
            tt = torch.full((len(z),), t, dtype=torch.long, device=z.device)
            if not conditional:
                return net.denoiser(z, tt, cond_u)
            if w == 1.0:
                return net.denoiser(z, tt, cond_c)
            both = net.denoiser(torch.cat([z, z]), torch.cat([tt, tt]), torch.cat([cond_c, cond_u]))
            e_c, e_u = both.chunk(2)
            return e_u + w * (e_c - e_u)

        gen = torch.Generator().manual_seed(int(seed))
        z = torch.randn(b, self.latent_mean.numel(), generator=gen).to(self.device)
        z = ddim_sample(eps, self.ddim, z, int(steps or self.hparams.sample_steps))
        raw = self.autoencoder.decode_raw(z * self.latent_std + self.latent_mean)
        return ctx.to_weights(raw, base.to(self.device) if ctx.target == "delta" else None)

    # ------------------------------------------------------------------ validation and test
    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        z0 = self._z0(batch)
        gen = torch.Generator().manual_seed(1000 + batch_idx)
        noise = torch.randn(z0.shape, generator=gen).to(z0)
        t = torch.randint(0, self.ddpm.config.num_train_timesteps, (len(z0),), generator=gen).to(z0.device)
        net = self.ema.module
        pred = net.denoiser(self.ddpm.add_noise(z0, noise, t), t, self._condition(net, batch, None))
        self.log("val/loss", F.mse_loss(pred, noise), on_epoch=True, batch_size=len(z0))
        self._outputs.append(batch["row"].cpu())

    def _function_space(self, prefix: str, samples: int) -> None:
        if not self._outputs:
            return
        rows = torch.cat(self._outputs).numpy()
        self._outputs = []
        dm: GenerationData = self.trainer.datamodule
        part = "val" if prefix == "val" else "test"
        accs = []
        for s in range(samples):
            weights = self.generate_for_rows(dm, rows, seed=s)
            accs.append(dm.evaluate(weights, rows, part))
        acc = np.stack(accs)  # [samples, R]
        ref = dm.reference_accuracy(rows, part)
        self.log(f"{prefix}/acc", float(np.nanmean(acc)))
        self.log(f"{prefix}/acc_original", float(np.nanmean(ref)))
        self.log(f"{prefix}/acc_ratio", float(np.nanmean(acc) / np.nanmean(ref)))

    def generate_for_rows(self, dm: GenerationData, rows: np.ndarray, seed: int = 0, **kwargs: Any) -> torch.Tensor:
        """One generated model ``[R, n_params]`` for each data row's base and task (support sets drawn with
        the data module's fixed evaluation seed)."""
        idx = torch.from_numpy(np.asarray(rows, dtype=np.int64))
        support_x = support_y = None
        if self.hparams.conditioning == "support":
            sets = [dm.support(dm.task_keys[r], self.support_k, torch.Generator().manual_seed(dm.seed * 1_000_003 + int(r)))
                    for r in rows]
            support_x = torch.stack([s[0] for s in sets])
            support_y = torch.stack([s[1] for s in sets])
        return self.generate(base=dm.base_pos[idx], descriptor=dm.descriptors[idx], support_x=support_x,
                             support_y=support_y, seed=seed, **kwargs)

    def on_validation_epoch_end(self) -> None:
        self._function_space("val", self.hparams.val_samples)

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._outputs.append(batch["row"].cpu())

    def on_test_epoch_end(self) -> None:
        self._function_space("test", self.hparams.test_samples)

    def configure_optimizers(self) -> Any:
        return adamw_with_schedule(self, self.hparams.lr, self.hparams.weight_decay, self.hparams.warmup_steps)


def _read_checkpoint(p: Path) -> Any:
    try:
        return torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for files that are not checkpoints
        first = (str(exc).strip().splitlines() or [""])[0]
        raise ZooError(f"{p}: not a readable checkpoint ({type(exc).__name__}: {first})") from exc


def load_autoencoder(path: str | Path) -> WeightAutoencoder:
    """A trained :class:`WeightAutoencoder` from its checkpoint or ``weightzoo fit`` run folder. Raises
    :class:`zoo.ZooError` for a file that is not a checkpoint or holds another module (named)."""
    p = resolve_checkpoint(path)
    ckpt = _read_checkpoint(p)
    hparams = ckpt.get("hyper_parameters", {}) if isinstance(ckpt, dict) else {}
    held = hparams.get("_class_path") if isinstance(hparams, dict) else None
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt or (held and not held.endswith("WeightAutoencoder")):
        raise ZooError(f"{p}: not a WeightAutoencoder checkpoint (it holds {held or 'something else'})")
    return WeightAutoencoder.load_from_checkpoint(p, map_location="cpu")


def load_generator(path: str | Path) -> LatentDiffusion:
    """A trained :class:`LatentDiffusion` (eval mode, on CPU) from its checkpoint or ``weightzoo fit`` run
    folder. Raises :class:`zoo.ZooError` for files that are not generator checkpoints."""
    p = resolve_checkpoint(path)
    ckpt = _read_checkpoint(p)
    if not isinstance(ckpt, dict) or CHECKPOINT_KEY not in ckpt:
        raise ZooError(f"{p}: not a weightzoo generator checkpoint (no '{CHECKPOINT_KEY}' record)")
    names = set(inspect.signature(LatentDiffusion.__init__).parameters) - {"self"}
    hparams = {k: v for k, v in ckpt.get("hyper_parameters", {}).items() if k in names}
    model = LatentDiffusion(**{**hparams, "autoencoder": None})
    model.on_load_checkpoint(ckpt)
    model.load_state_dict(ckpt["state_dict"])
    return model.eval()
