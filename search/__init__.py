"""Hyperparameter search over GANs and their refinement: named studies (Optuna define-by-run spaces),
the Ray Tune trial, the Optuna sampling/pruning bridge, MLflow tracking, and `python -m search.run`."""

from .budgets import BUDGETS, Budget, get_budget
from .samplers import PRUNERS, SAMPLERS, make_pruner, make_sampler
from .space import Categorical, FloatRange, IntRange, SpaceError, SpaceSampler, narrow, read_study_file
from .studies import STUDIES, Study, get_study, list_studies, refine_config, train_config

__all__ = [
    "BUDGETS", "Budget", "Categorical", "FloatRange", "IntRange", "PRUNERS", "SAMPLERS", "STUDIES", "SpaceError",
    "SpaceSampler", "Study", "get_budget", "get_study", "list_studies", "make_pruner", "make_sampler", "narrow",
    "read_study_file", "refine_config", "train_config",
]
