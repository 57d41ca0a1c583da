"""optuna-dashboard over a study's Optuna storage, read through its HTTP API.

The study is made by the CLI's own steps (``resolve_stores``, ``plan_study``, ``open_stores``,
``report``) and its trials are driven through the real Optuna <-> Ray bridge (``OptunaSearcher`` asks
and tells, ``OptunaPruningScheduler`` reports and prunes with the smoke budget's median pruner) with
the messages a worker sends; only Ray itself and the training are left out, so the SQLite study holds
real COMPLETE and PRUNED trials with intermediate values in seconds. Then `optuna-dashboard` runs on
loopback over it as docs/ui.md says, and its /api/studies routes must show what Optuna recorded.
"""

from __future__ import annotations

import os

import optuna
import pytest
from optuna.trial import TrialState
from ray.tune.experiment import Trial
from ray.tune.schedulers import TrialScheduler

from search.bridge import OptunaPruningScheduler, OptunaSearcher, StudyLink
from search.hardware import Hardware
from search.messages import FinalReport, TrainReport
from search.options import SearchOptions
from search.preflight import Placement
from search.report import report
from search.settings import plan_study
from search.stores import open_stores, resolve_stores
from search.tracking import TrialRun

from loopback_cluster import stop_process_group
from ui_helpers import dashboard_study, start_dashboard

NAME = "dash"
# (intermediate FID per image mark, final metrics or None): the middle curve is worse than the first
# trial's at 3,200 images, so the median pruner (1 start-up trial at smoke) stops it there
CURVES = [
    ({1600: 300.0, 3200: 200.0, 4800: 150.0, 6400: 120.0}, {"fid": 110.0, "precision": 0.7, "recall": 0.4}),
    ({1600: 280.0, 3200: 400.0}, None),
    ({1600: 250.0, 3200: 180.0, 4800: 140.0, 6400: 100.0}, {"fid": 95.0, "precision": 0.75, "recall": 0.45}),
]


def _ids(number: int, run_id: str) -> dict:
    return {"optuna_trial": number, "mlflow_run_id": run_id, "resumed_from_step": 0, "gpu": ""}


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> dict:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    root = tmp_path_factory.mktemp("dashboard-study")
    opts = SearchOptions(study="gan", name=NAME, budget="smoke", pruner="median", sampler="random",
                         trials=len(CURVES), runs_dir=str(root / "runs"), recipes=False)
    stores = resolve_stores(opts, Placement(cluster=False, address=None))
    plan = plan_study(opts, stores.storage, Hardware(cluster=False, gpus=0, cpus=2))
    opened = open_stores(plan, stores)
    link = StudyLink(plan=plan, study=opened.study, n_to_run=opened.remaining, study_run=opened.study_run)
    searcher, scheduler = OptunaSearcher(link), OptunaPruningScheduler(link)
    for curve, final in CURVES:  # one trial after the other, as Ray runs them with one slot
        trial = Trial("ray_trainable", stub=True)
        config = searcher.suggest(trial.trial_id)
        number = config["optuna_trial"]
        run = TrialRun.open(link.study_run, study_name=NAME, trial_number=number, params=config["params"])
        last = None
        for images, fid in curve.items():
            last = TrainReport(**_ids(number, run.run_id), step=images // 64, images=images, fid_intermediate=fid,
                               loss_d=0.5, loss_g=0.7).to_result()
            if scheduler.on_trial_result(None, trial, last) == TrialScheduler.STOP:
                break
        if final is not None:
            metrics = {**final, "fid_before": final["fid"], "best_step": 0.0}
            last = FinalReport(**_ids(number, run.run_id), train_steps=100, train_images=6400, metrics=metrics,
                               evaluator="mnist-lenet-seed0", evaluator_sha256="0" * 64).to_result()
        searcher.on_trial_complete(trial.trial_id, last)
    report(plan, stores, opened, completed=True, resume_command="", notes=[])
    return {"root": root, "storage": stores.storage,
            "trials": optuna.load_study(study_name=NAME, storage=stores.storage).get_trials(deepcopy=False)}


def test_the_study_holds_complete_and_pruned_trials(study):
    trials = study["trials"]
    assert [t.state for t in trials] == [TrialState.COMPLETE, TrialState.PRUNED, TrialState.COMPLETE]
    assert trials[1].user_attrs["pruned_at_images"] == 3200 and trials[1].intermediate_values == CURVES[1][0]
    assert [t.user_attrs["train_images"] for t in trials] == [6400, 3200, 6400]


def test_optuna_dashboard_api_shows_the_study(study):
    trials = study["trials"]
    proc, url = start_dashboard(study["storage"], study["root"], dict(os.environ))
    try:
        summary, detail = dashboard_study(url, NAME)
    finally:
        stop_process_group(proc)

    # the study: its direction, objective name and the settings the CLI stored with it
    assert summary["directions"] == ["minimize"] and detail["name"] == NAME
    assert detail["objective_names"] == ["fid"]
    attrs = {a["key"]: a["value"] for a in summary["user_attrs"]}
    assert '"pruner": "median"' in attrs["search_settings"] and '"budget": "smoke"' in attrs["search_settings"]

    # every trial: its state (PRUNED included), value, intermediate values and parameters
    assert [(t["number"], t["state"]) for t in detail["trials"]] == [(0, "Complete"), (1, "Pruned"), (2, "Complete")]
    for shown, t, (curve, final) in zip(detail["trials"], trials, CURVES, strict=True):
        assert {v["step"]: v["value"] for v in shown["intermediate_values"]} == curve
        assert shown["values"] == ([final["fid"]] if final else [curve[max(curve)]])  # pruned: its last report
        assert {p["name"]: p["param_external_value"] for p in shown["params"]} == {
            k: str(v) for k, v in t.params.items()}
        shown_attrs = {a["key"]: a["value"] for a in shown["user_attrs"]}
        assert shown_attrs["mlflow_run_id"] == t.user_attrs["mlflow_run_id"]
    pruned_attrs = {a["key"]: a["value"] for a in detail["trials"][1]["user_attrs"]}
    assert pruned_attrs["pruned_at_images"] == "3200"
    assert detail["has_intermediate_values"] is True
    assert [t["number"] for t in detail["best_trials"]] == [2]
    assert {"architecture", "loss", "lr_g"} <= {p["name"] for p in detail["union_search_space"]}
