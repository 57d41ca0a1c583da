"""Hyperparameter search over GANs and their refinement: named studies (Optuna define-by-run spaces),
the Ray Tune trial, the Optuna sampling/pruning bridge, MLflow tracking, and `python -m search.run`.

The names below are imported from their submodules on first use (PEP 562), so importing the package
imports neither Optuna nor Ray nor torch (the CLI's ``--help``).
"""

from __future__ import annotations

from gan_models.lazy import lazy_exports

# public name -> the submodule that defines it
_EXPORTS: dict[str, str] = {
    **dict.fromkeys(("BUDGETS", "Budget", "get_budget"), "budgets"),
    **dict.fromkeys(("RECIPES", "Recipe", "get_recipe", "study_recipes"), "recipes"),
    **dict.fromkeys(("PRUNERS", "SAMPLERS", "make_pruner", "make_sampler"), "samplers"),
    **dict.fromkeys(("SearchOptions",), "options"),
    **dict.fromkeys(("StudyPlan", "StudySettings", "plan_study"), "settings"),
    **dict.fromkeys(("DiskFull", "SearchError"), "errors"),
    **dict.fromkeys(("Categorical", "FloatRange", "IntRange", "SpaceError", "SpaceSampler", "narrow",
                     "read_study_file"), "space"),
    **dict.fromkeys(("STUDIES", "Study", "get_study", "list_studies", "refine_config", "train_config"), "studies"),
}

__all__ = [
    "BUDGETS", "Budget", "Categorical", "DiskFull", "FloatRange", "IntRange", "PRUNERS", "RECIPES", "Recipe",
    "SAMPLERS", "STUDIES", "SearchError", "SearchOptions", "SpaceError", "SpaceSampler", "Study", "StudyPlan",
    "StudySettings", "get_budget", "get_recipe", "get_study", "list_studies", "make_pruner", "make_sampler", "narrow",
    "plan_study", "read_study_file", "refine_config", "study_recipes", "train_config",
]


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, __all__)
