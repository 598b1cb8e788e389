"""Weight generation for tasks: a weight autoencoder and latent diffusion conditioned on the task.

* :mod:`weightnets.generative.data` — :class:`GenerationData`, the models, task descriptors and support sets.
* :mod:`weightnets.generative.autoencoder` — :class:`WeightAutoencoder` (VAE over tokens or chunks).
* :mod:`weightnets.generative.diffusion` — :class:`LatentDiffusion` (diffusers DDPM/DDIM schedulers, EMA,
  classifier-free guidance), :func:`load_generator`.
* :mod:`weightnets.generative.conditioning` — task descriptors, the support-set encoder, condition dropout.
"""

from weightnets.generative.autoencoder import WeightAutoencoder
from weightnets.generative.conditioning import (
           ConditionEncoder,
           SupportSetEncoder,
           task_descriptor,
)
from weightnets.generative.data import GenerationContext, GenerationData
from weightnets.generative.diffusion import (
           LatentDiffusion,
           load_generator,
           make_schedulers,
)

__all__ = ["ConditionEncoder", "GenerationContext", "GenerationData", "LatentDiffusion", "SupportSetEncoder",
           "WeightAutoencoder", "load_generator", "make_schedulers", "task_descriptor"]
