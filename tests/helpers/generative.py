"""Shared by the generative tests: the tree_quick store and tiny generators trained with 'weightzoo fit'
(built once per session, whichever test module asks first)."""

from __future__ import annotations

from pathlib import Path

from helpers.trees import one_thread, tree_quick_path  # noqa: F401  (re-exported for the tests)
from weightzoo.cli import main

_CACHE: dict[str, Path] = {}

AE = """
seed_everything: 0
model:
  class_path: weightnets.generative.WeightAutoencoder
  init_args: {{view: tokens, d_model: 16, n_heads: 2, n_layers: 1, latent_dim: 8, lr: 3.0e-3, warmup_steps: 10}}
data:
  class_path: weightnets.generative.GenerationData
  init_args: {{store: {store}, arch: mlp, families: [class_subset, corruption], batch_size: 8, train_repeats: 20,
              support_k: {k}, support_pool: 16}}
trainer: {{max_epochs: 6, accelerator: cpu, check_val_every_n_epoch: 3, enable_progress_bar: false,
          enable_model_summary: false, log_every_n_steps: 5}}
"""

DIFFUSION = """
seed_everything: 0
model:
  class_path: weightnets.generative.LatentDiffusion
  init_args: {{autoencoder: {ae}, conditioning: {conditioning}, hidden: 32, n_blocks: 2, cond_dim: 16,
              sample_steps: 5, lr: 3.0e-3, warmup_steps: 10, val_samples: 1, test_samples: 1,
              ema_decay: 0.9}}
data:
  class_path: weightnets.generative.GenerationData
  init_args: {{store: {store}, arch: mlp, families: [class_subset, corruption], batch_size: 8, train_repeats: 20,
              support_k: {k}, support_pool: 16}}
trainer: {{max_epochs: 4, accelerator: cpu, check_val_every_n_epoch: 2, enable_progress_bar: false,
          enable_model_summary: false, log_every_n_steps: 5}}
"""


def _fit(args: list[str]) -> None:
    assert main(["fit", *args]) == 0


def tiny_generator(factory, conditioning: str = "descriptor") -> Path:
    """Run folder of a tiny LatentDiffusion (over a tiny autoencoder) trained on tree_quick through
    'weightzoo fit'; ``conditioning`` is descriptor or support (k = 4)."""
    key = f"diffusion-{conditioning}"
    if key not in _CACHE:
        store = tree_quick_path()
        root = factory.mktemp(key)
        k = 4 if conditioning == "support" else 0
        (root / "ae.yaml").write_text(AE.format(store=store, k=k))
        (root / "diffusion.yaml").write_text(DIFFUSION.format(store=store, ae=root / "ae", k=k,
                                                              conditioning=conditioning))
        _fit(["--config", str(root / "ae.yaml"), "--trainer.default_root_dir", str(root / "ae")])
        _fit(["--config", str(root / "diffusion.yaml"), "--trainer.default_root_dir", str(root / "diffusion")])
        _CACHE[key] = root / "diffusion"
    return _CACHE[key]
