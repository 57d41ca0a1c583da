"""``--confirm K``: the study's best configurations retrained with K more seeds; every score as mean ± sd.

A search's best trial is the best of many noisy draws, so its own score flatters it (the winner's curse);
compare_gan (Kurach et al. 2019) retrains its best configurations with many seeds before it reports them.
Here the best ``--confirm-top`` complete trials (the Pareto front's first ones, for a multi-objective study)
are retrained with seeds ``seed + 1 .. seed + K`` as the trials of a second Optuna study, ``<name>.confirm``
in the same storage: all enqueued, never pruned, and never seen by the search's sampler. Their MLflow runs
sit under a parent run of their own in the study's experiment. Each configuration's statistics pool its
original trial with its reruns:

    n = 1 + K (complete ones),  mean = Σ x_i / n,  sd = sqrt(Σ (x_i − mean)² / (n − 1))   (sd NaN for n = 1)

On ``--resume`` only the (configuration, seed) pairs not yet finished run.
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import TYPE_CHECKING, Any

from .messages import final_metric_names
from .resume import CONFIRMS_ATTR, SEED_ATTR
from .settings import StudyPlan

if TYPE_CHECKING:
    import optuna
    import pandas as pd

    from .stores import OpenStudy, Stores

CONFIRM_SUFFIX = ".confirm"


def best_configurations(study: optuna.Study, plan: StudyPlan, top: int) -> list[optuna.trial.FrozenTrial]:
    """The ``top`` best complete trials, best first (the Pareto front for a multi-objective study)."""
    from optuna.trial import TrialState

    if plan.study.multi_objective:
        return list(study.best_trials)[:top]
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    sign = 1.0 if plan.study.directions[0] == "minimize" else -1.0
    return sorted(complete, key=lambda t: sign * t.values[0])[:top]


def confirm_plan(plan: StudyPlan, trials: int) -> StudyPlan:
    """The confirmation study's plan: the same space and budget, ``trials`` reruns, nothing to prune, nothing
    enqueued by it (its trials are the reruns)."""
    settings = plan.settings.replace(pruner="none", sampler="random", trials=trials)
    return dataclasses.replace(plan, name=plan.name + CONFIRM_SUFFIX, settings=settings, enqueued=(), notes=())


def open_confirmations(plan: StudyPlan, stores: Stores, opened: OpenStudy, *, k: int,
                       top: int) -> tuple[StudyPlan, OpenStudy] | None:
    """The confirmation study's plan, and the study opened with every missing (configuration, seed) trial
    enqueued; None when there is nothing to confirm (no complete trial)."""
    import optuna

    from .resume import finished_trials
    from .stores import OpenStudy
    from .tracking import open_study_run

    best = best_configurations(opened.study, plan, top)
    if not best:
        return None
    wanted = [(t, plan.settings.seed + i) for t in best for i in range(1, k + 1)]
    cplan = confirm_plan(plan, len(wanted))
    study = optuna.create_study(study_name=cplan.name, storage=stores.storage, load_if_exists=True,
                                directions=list(plan.study.directions), sampler=optuna.samplers.RandomSampler(),
                                pruner=optuna.pruners.NopPruner())
    run = open_study_run(stores.tracking_uri, cplan.name, resume=True, experiment=plan.name,
                         tags={**cplan.tags, "confirms": plan.name})
    have = {(t.user_attrs.get(CONFIRMS_ATTR), t.user_attrs.get(SEED_ATTR)) for t in finished_trials(study)}
    waiting = {(t.user_attrs.get(CONFIRMS_ATTR), t.user_attrs.get(SEED_ATTR))
               for t in study.get_trials(deepcopy=False) if t.state.name == "WAITING"}
    for trial, seed in wanted:
        if (trial.number, seed) not in have | waiting:
            study.enqueue_trial(trial.params, user_attrs={CONFIRMS_ATTR: trial.number, SEED_ATTR: seed})
    remaining = sum((t.number, s) not in have for t, s in wanted)
    return cplan, OpenStudy(study=study, study_run=run, session=opened.session, remaining=remaining, notes=[])


def seed_statistics(values: list[float]) -> tuple[float, float]:
    """(mean, sample sd) of the finite values; sd is NaN below two values, both NaN with none."""
    xs = [v for v in values if isinstance(v, (int, float)) and math.isfinite(v)]
    if not xs:
        return math.nan, math.nan
    mean = sum(xs) / len(xs)
    if len(xs) < 2:
        return mean, math.nan
    return mean, math.sqrt(sum((x - mean) ** 2 for x in xs) / (len(xs) - 1))


def confirmed_table(study: optuna.Study, confirm_study: optuna.Study, plan: StudyPlan, top: int) -> pd.DataFrame:
    """One row per confirmed configuration: ``number`` (its trial in the study), ``n_seeds`` and, for every
    score, ``<score>_mean`` and ``<score>_sd`` over the original trial and its complete reruns."""
    import pandas as pd
    from optuna.trial import TrialState

    reruns: dict[int, list[Any]] = {}
    for t in confirm_study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        reruns.setdefault(int(t.user_attrs[CONFIRMS_ATTR]), []).append(t)
    rows = []
    for trial in best_configurations(study, plan, top):
        runs = [trial, *reruns.get(trial.number, [])]
        row: dict[str, Any] = {"number": trial.number, "n_seeds": len(runs)}
        for name in final_metric_names():
            mean, sd = seed_statistics([float(r.user_attrs.get(name, math.nan)) for r in runs])
            row[f"{name}_mean"], row[f"{name}_sd"] = mean, sd
        rows.append(row)
    return pd.DataFrame(rows)


def log_confirmed(study_run, table: pd.DataFrame) -> None:
    """The best configuration's mean ± sd as metrics of the study's parent run (the table is its artifact)."""
    from mlflow.entities import Metric

    from .tracking import client, finite_metrics

    if table.empty:
        return
    best = table.iloc[0].to_dict()
    values = finite_metrics({f"confirmed_{k}": v for k, v in best.items() if k.endswith(("_mean", "_sd"))})
    values["confirmed_n_seeds"] = float(best["n_seeds"])
    now = int(time.time() * 1000)
    client(study_run.tracking_uri).log_batch(study_run.parent_run_id,
                                             metrics=[Metric(k, v, now, 0) for k, v in values.items()])
