"""Task-vector composition: merge methods, learned coefficients, weight matching, weight signatures.

* :mod:`~weightnets.compose.methods` — a registry of merge methods over one generalised
  task-arithmetic core (``task_arithmetic``, ``average``, ``ties``, ``dare_linear``, ``dare_ties``).
* :mod:`~weightnets.compose.coefficients`, :mod:`~weightnets.compose.adamerging`,
  :mod:`~weightnets.compose.atlas` — learned coefficients as LightningModules (coefficients only).
* :mod:`~weightnets.compose.search` — gradient-free coefficients (CMA-ES, the ``cma`` package).
* :mod:`~weightnets.compose.data` — few-shot and unlabelled data of a composition (LightningDataModule).
* :mod:`~weightnets.compose.matching` — weight matching (Git Re-Basin) and linear-path barriers.
* :mod:`~weightnets.compose.signatures` — robust weight signatures.
* :mod:`~weightnets.compose.run` — run a named method and evaluate it (``weightzoo compose``).

Semantics, sources and measured results: ``docs/COMPOSE.md``.
"""

from __future__ import annotations

from weightnets.compose.adamerging import AdaMerging
from weightnets.compose.atlas import ATLAS
from weightnets.compose.coefficients import CoefficientComposer
from weightnets.compose.data import CompositionDataModule, few_shot
from weightnets.compose.methods import (
    MergeMethod,
    get_method,
    merge,
    merged_task_vector,
    method_names,
    register_method,
)
from weightnets.compose.run import (
    ComposeOptions,
    Composition,
    TaskReport,
    composer_names,
    evaluate_composition,
    get_composer,
    register_composer,
    run_composition,
)
from weightnets.compose.search import SearchResult, cma_search
from weightnets.compose.taskset import (
    CompositionError,
    CompositionProblem,
    TaskVectors,
    check_same_base,
    load_problem,
    select_children,
)

__all__ = [
    "ATLAS", "AdaMerging", "CoefficientComposer", "ComposeOptions", "Composition", "CompositionDataModule",
    "CompositionError", "CompositionProblem", "MergeMethod", "SearchResult", "TaskReport", "TaskVectors",
    "check_same_base", "cma_search", "composer_names", "evaluate_composition", "few_shot", "get_composer",
    "get_method", "load_problem", "merge", "merged_task_vector", "method_names", "register_composer",
    "register_method", "run_composition", "select_children",
]
