"""Successive halving that judges a rung only once a quorum of trials has reached it.

Asynchronous successive halving (Li et al. 2020) never stops a trial: it promotes the best 1/η of a
rung's trials when there are enough of them, and otherwise starts new ones. Optuna cannot pause a
trial, so its ``SuccessiveHalvingPruner`` decides at once, and while a rung holds fewer than η values
a trial goes on only if it is the best so far. The first arrivals then decide each other's fate on a
single early value: in ``benchmarks/pruning_gain`` the san-sn recipe (FID 55 at the end, the study's
best) was stopped at the first rung because hinge-sn (88 at the end) had got there first with 297
against 318. GAN learning curves cross.

Here a rung judges only once it holds η values (the trial's own included); until then a trial goes
on. With n values at rung k (images r_k = r_0 η^k), a trial continues iff its value is among the best
⌊n/η⌋:

    continue  ⇔  n < η  or  rank(value) ≤ ⌊n / η⌋

The price is the first η − 1 arrivals at each rung, which always go on.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import optuna

if TYPE_CHECKING:
    from optuna.trial import FrozenTrial


class QuorumHalvingPruner(optuna.pruners.BasePruner):
    """Rungs at ``min_resource`` × η^k steps below ``max_resource``; see the module's rule."""

    def __init__(self, *, min_resource: int, max_resource: int, reduction_factor: int = 3) -> None:
        if min_resource < 1:
            raise ValueError(f"min_resource must be >= 1, got {min_resource}")
        if max_resource <= min_resource:
            raise ValueError(f"max_resource must be > min_resource ({min_resource}), got {max_resource}")
        if reduction_factor < 2:
            raise ValueError(f"reduction_factor must be >= 2, got {reduction_factor}")
        self.min_resource, self.max_resource, self.eta = min_resource, max_resource, reduction_factor

    def rungs(self) -> list[int]:
        """The steps at which trials are judged: r_0 η^k < max_resource."""
        out, r = [], self.min_resource
        while r < self.max_resource:
            out.append(r)
            r *= self.eta
        return out

    def prune(self, study: optuna.Study, trial: FrozenTrial) -> bool:
        step = trial.last_step
        if step is None:
            return False
        rung = self._rung_reached_at(trial, step)
        if rung is None:  # this report crosses no rung: nothing to judge
            return False
        value = trial.intermediate_values[step]
        if math.isnan(value):
            return True
        others = [_value_at(t, rung) for t in study.get_trials(deepcopy=False) if t.number != trial.number]
        values = sorted([v for v in others if v is not None and not math.isnan(v)] + [value],
                        reverse=study.direction == optuna.study.StudyDirection.MAXIMIZE)
        if len(values) < self.eta:  # no quorum yet: go on
            return False
        bar = values[len(values) // self.eta - 1]  # the worst value still promoted
        if study.direction == optuna.study.StudyDirection.MAXIMIZE:
            return value < bar
        return value > bar

    def _rung_reached_at(self, trial: FrozenTrial, step: int) -> int | None:
        """The rung this report is the first to reach, if any."""
        earlier = [s for s in trial.intermediate_values if s < step]
        before = max(earlier) if earlier else -1
        crossed = [r for r in self.rungs() if before < r <= step]
        return crossed[-1] if crossed else None


def _value_at(trial: FrozenTrial, rung: int) -> float | None:
    """A trial's value at ``rung``: its first report at or past it (None if it never got there)."""
    steps = [s for s in trial.intermediate_values if s >= rung]
    return trial.intermediate_values[min(steps)] if steps else None
