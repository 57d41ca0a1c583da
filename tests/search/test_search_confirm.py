"""--confirm (search.confirm): which configurations, the reruns enqueued once each, and mean ± sd on golden
numbers, on real Optuna (SQLite) and MLflow (SQLite) stores."""

from __future__ import annotations

import math

import optuna
import pytest
from optuna.trial import TrialState

from search.confirm import (
    best_configurations,
    confirm_plan,
    confirmed_table,
    log_confirmed,
    open_confirmations,
    seed_statistics,
)
from search.resume import CONFIRMS_ATTR, SEED_ATTR
from search.stores import OpenStudy, Stores
from search.tracking import client, open_study_run

from search_helpers import plan_for

optuna.logging.set_verbosity(optuna.logging.WARNING)


def test_seed_statistics_golden():
    mean, sd = seed_statistics([1.0, 2.0, 3.0, 4.0])
    assert mean == 2.5 and sd == pytest.approx(math.sqrt(5 / 3))  # sample sd: Σ(x - 2.5)² = 5, n - 1 = 3
    assert seed_statistics([5.0])[0] == 5.0 and math.isnan(seed_statistics([5.0])[1])
    assert all(math.isnan(v) for v in seed_statistics([math.nan]))


def _complete(study, params: dict, fid: float, **attrs) -> None:
    trial = study.ask()
    for k, v in params.items():
        trial.suggest_float(k, 0.0, 1.0) if isinstance(v, float) else trial.suggest_categorical(k, [v])
    for k, v in {"fid": fid, "precision": 0.5, "recall": 0.5, **attrs}.items():
        trial.set_user_attr(k, v)
    study.tell(trial, fid)


@pytest.fixture
def stores(tmp_path):
    return Stores(storage=f"sqlite:///{tmp_path / 'optuna.db'}", tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
                  storage_path=str(tmp_path / "ray"), runs_dir=tmp_path)


def test_the_best_configurations_are_rerun_with_new_seeds_once_each(stores):
    plan = plan_for("gan", stores.storage, name="conf", seed=7)
    study = optuna.create_study(study_name="conf", storage=stores.storage)
    for x, fid in ((0.1, 30.0), (0.2, 10.0), (0.3, 20.0)):
        _complete(study, {"x": x}, fid)
    assert [t.number for t in best_configurations(study, plan, 2)] == [1, 2]
    parent = open_study_run(stores.tracking_uri, "conf", resume=False, tags={})
    opened = OpenStudy(study=study, study_run=parent, session=1, remaining=0, notes=[])
    cplan, confirm = open_confirmations(plan, stores, opened, k=2, top=2)
    assert confirm.remaining == 4 and cplan.settings.trials == 4 and cplan.name == "conf.confirm"
    waiting = confirm.study.get_trials(states=(TrialState.WAITING,))
    assert sorted((t.user_attrs[CONFIRMS_ATTR], t.user_attrs[SEED_ATTR]) for t in waiting) == [
        (1, 8), (1, 9), (2, 8), (2, 9)]  # seeds: the study's + 1 .. + K
    # a second call (a --resume) enqueues nothing twice
    _, again = open_confirmations(plan, stores, opened, k=2, top=2)
    assert len(again.study.get_trials(states=(TrialState.WAITING,))) == 4
    # its runs sit under a parent run of their own, in the study's experiment
    assert confirm.study_run.experiment_id == parent.experiment_id
    assert confirm.study_run.parent_run_id != parent.parent_run_id
    assert confirm_plan(plan, 4).settings.pruner == "none" and confirm_plan(plan, 4).settings.trials == 4


def test_confirmed_table_pools_the_original_and_its_reruns(stores):
    plan = plan_for("gan", stores.storage, name="pool")
    study = optuna.create_study(study_name="pool", storage=stores.storage)
    _complete(study, {"x": 0.1}, 10.0)
    _complete(study, {"x": 0.2}, 30.0)
    reruns = optuna.create_study(study_name="pool.confirm", storage=stores.storage)
    for fid, seed in ((12.0, 1), (14.0, 2)):
        _complete(reruns, {"x": 0.1}, fid, **{CONFIRMS_ATTR: 0, SEED_ATTR: seed})
    table = confirmed_table(study, reruns, plan, top=2)
    best = table.iloc[0]
    assert list(table["number"]) == [0, 1] and list(table["n_seeds"]) == [3, 1]
    assert best["fid_mean"] == pytest.approx(12.0) and best["fid_sd"] == pytest.approx(2.0)  # 10, 12, 14
    assert best["precision_sd"] == 0.0 and math.isnan(table.iloc[1]["fid_sd"])
    parent = open_study_run(stores.tracking_uri, "pool", resume=False, tags={})
    log_confirmed(parent, table)
    metrics = client(stores.tracking_uri).get_run(parent.parent_run_id).data.metrics
    assert metrics["confirmed_fid_mean"] == pytest.approx(12.0) and metrics["confirmed_n_seeds"] == 3.0
