"""Registries of Optuna samplers and pruners, by the names the CLI takes.

Pruners compare a trial's intermediate FID, reported every ``budget.eval_every`` training images with
Optuna's step = images trained, with the other trials' values at the same image count. ``asha`` is
successive halving, asynchronous as Optuna runs it: at each rung (``asha_min_images`` × η^k images) a
trial goes on only while its FID is within the best 1/η of those that reached the rung, so most trials
stop after a ninth of the budget. ``asha-quorum`` (the default) judges a rung only once η trials have
reached it (search.quorum_halving): the first arrivals cannot stop each other. The median pruners wait
for the budget's start-up trials and reports before deciding.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from gan_models.registry import lookup

from .budgets import ASHA_REDUCTION, Budget

if TYPE_CHECKING:  # Optuna is imported by the functions that build a sampler or pruner, so the names load fast
    import optuna


def _tpe(seed: int, n_trials: int) -> optuna.samplers.BaseSampler:
    import optuna

    # random start-up trials: Optuna's 10, fewer for short studies so TPE gets to model something
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=min(10, max(1, n_trials // 2)))


def _random(seed: int, n_trials: int) -> optuna.samplers.BaseSampler:
    import optuna

    return optuna.samplers.RandomSampler(seed=seed)


def _nsga2(seed: int, n_trials: int) -> optuna.samplers.BaseSampler:
    import optuna

    # a generation no larger than half the study, so at least two generations evolve
    return optuna.samplers.NSGAIISampler(seed=seed, population_size=min(50, max(2, n_trials // 2)))


SAMPLERS: dict[str, Callable[[int, int], optuna.samplers.BaseSampler]] = {
    "tpe": _tpe,
    "random": _random,
    "nsga2": _nsga2,
}


def _asha(b: Budget) -> optuna.pruners.BasePruner:
    import optuna

    return optuna.pruners.SuccessiveHalvingPruner(min_resource=b.asha_min_images, reduction_factor=ASHA_REDUCTION,
                                                  min_early_stopping_rate=0)


def _asha_quorum(b: Budget) -> optuna.pruners.BasePruner:
    from .quorum_halving import QuorumHalvingPruner

    return QuorumHalvingPruner(min_resource=b.asha_min_images, max_resource=b.images, reduction_factor=ASHA_REDUCTION)


def _median(b: Budget) -> optuna.pruners.BasePruner:
    import optuna

    return optuna.pruners.MedianPruner(n_startup_trials=b.prune_startup_trials, n_warmup_steps=b.warmup_images)


def _percentile(b: Budget) -> optuna.pruners.BasePruner:
    import optuna

    # keeps a trial only while it is within the best quarter at the same step
    return optuna.pruners.PercentilePruner(25.0, n_startup_trials=b.prune_startup_trials,
                                           n_warmup_steps=b.warmup_images)


def _hyperband(b: Budget) -> optuna.pruners.BasePruner:
    import optuna

    return optuna.pruners.HyperbandPruner(min_resource=b.asha_min_images, max_resource=b.images,
                                          reduction_factor=ASHA_REDUCTION)


def _none(b: Budget) -> optuna.pruners.BasePruner:
    import optuna

    return optuna.pruners.NopPruner()


PRUNERS: dict[str, Callable[[Budget], optuna.pruners.BasePruner]] = {
    "asha": _asha,
    "asha-quorum": _asha_quorum,
    "median": _median,
    "percentile": _percentile,
    "hyperband": _hyperband,
    "none": _none,
}


def make_sampler(name: str, *, seed: int, n_trials: int) -> optuna.samplers.BaseSampler:
    return lookup(SAMPLERS, name, what="sampler")(seed, n_trials)


def make_pruner(name: str, budget: Budget) -> optuna.pruners.BasePruner:
    return lookup(PRUNERS, name, what="pruner")(budget)
