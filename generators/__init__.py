"""weightzoo's generators: train structured model populations and write them into zoo stores."""

from generators.phase_grid import generate, plan_models
from generators.population import Member, PopulationConfig, train_population, train_single
from generators.spec import PhaseGridSpec, load_spec

__all__ = ["generate", "plan_models", "Member", "PopulationConfig", "train_population", "train_single",
           "PhaseGridSpec", "load_spec"]
