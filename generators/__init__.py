"""weightzoo's generators: train structured model populations and write them into zoo stores.

Importing the package registers what it provides: the zoo kinds ``phase_grid`` and ``model_tree``
(:mod:`generators.kinds`), the backends ``local`` and ``ray`` (Ray itself is imported only when that
backend runs), and the recipe builder that ``zoo.load(name, build=True)`` uses.
"""

from generators import model_tree, phase_grid, ray_backend  # noqa: F401  (they register themselves)
from generators.driver import generate, train_population_job
from generators.grid_spec import PhaseGridSpec
from generators.phase_grid import plan_models
from generators.population import Member, PopulationConfig, train_population, train_single
from generators.spec import load_spec
from generators.tree_spec import ModelTreeSpec

__all__ = ["generate", "train_population_job", "plan_models", "Member", "PopulationConfig", "train_population",
           "train_single", "PhaseGridSpec", "ModelTreeSpec", "load_spec"]
