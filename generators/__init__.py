"""weightzoo's generators: train structured model populations and write them into zoo stores."""

from generators.driver import generate, train_population_job
from generators.phase_grid import plan_models
from generators.population import Member, PopulationConfig, train_population, train_single
from generators.spec import PhaseGridSpec, load_spec
from generators.tree_spec import ModelTreeSpec

__all__ = ["generate", "train_population_job", "plan_models", "Member", "PopulationConfig", "train_population",
           "train_single", "PhaseGridSpec", "ModelTreeSpec", "load_spec"]
