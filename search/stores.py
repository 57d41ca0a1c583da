"""Where a study's record, checkpoints and runs live, and opening them: the first write of all.

``resolve_stores`` names the stores from the flags and checks them (search.preflight) without writing
anything; ``open_stores`` creates or reopens the MLflow parent run and the Optuna study, settles what a
dead driver left behind, and enqueues the trials to try first.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import SearchError
from .options import SearchOptions
from .preflight import Placement
from .settings import SETTINGS_ATTR, StudyPlan
from .urls import absolute_sqlite, is_sqlite, sqlite_path, sqlite_url

if TYPE_CHECKING:
    import optuna

    from .tracking import StudyRun


ENQUEUED_ATTR = "enqueued"  # Optuna user attr of a trial tried first: which recipe or --enqueue entry it is


@dataclass(frozen=True)
class Stores:
    storage: str  # Optuna, any SQLAlchemy URL
    tracking_uri: str  # MLflow
    storage_path: str  # Ray Tune's checkpoints: a folder or a URI
    runs_dir: Path  # the default stores' folder and the study's report

    def sqlite_files(self) -> list[Path]:
        return [sqlite_path(u) for u in (self.storage, self.tracking_uri) if is_sqlite(u)]


def resolve_stores(opts: SearchOptions, placement: Placement) -> Stores:
    """The stores' locations, checked from here: usable, and reachable by every node that runs trials."""
    from .preflight import (
        PreflightError,
        check_server_artifacts,
        check_storage_path,
        check_tracking_placement,
        check_tracking_uri,
        check_writable_folder,
    )

    runs_dir = Path(opts.runs_dir).resolve()
    stores = Stores(
        storage=absolute_sqlite(opts.storage or sqlite_url(runs_dir / "optuna.db")),
        # MLflow's own convention: MLFLOW_TRACKING_URI when no flag is given (a cluster's head exports it)
        tracking_uri=absolute_sqlite(opts.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
                                     or sqlite_url(runs_dir / "mlflow.db")),
        storage_path=opts.storage_path if opts.storage_path and "://" in opts.storage_path
        else str(Path(opts.storage_path or runs_dir / "ray").resolve()),
        runs_dir=runs_dir)
    try:
        check_writable_folder(runs_dir, "--runs-dir")
        for path in stores.sqlite_files():
            check_writable_folder(path.parent, "the folder of")
            if path.exists() and not path.is_file():
                raise PreflightError(f"SQLite store {path} is not a file")
        check_storage_path(stores.storage_path, placement)
        check_tracking_placement(stores.tracking_uri, placement)
        check_tracking_uri(stores.tracking_uri)  # reachable now: MLflow's own client would retry for minutes
        check_server_artifacts(stores.tracking_uri, placement)
    except PreflightError as exc:
        raise SearchError(str(exc)) from None
    return stores


@dataclass
class OpenStudy:
    study: optuna.Study
    study_run: StudyRun
    session: int
    remaining: int
    notes: list[str]


def open_stores(plan: StudyPlan, stores: Stores) -> OpenStudy:
    """The study's MLflow parent run and Optuna study, and what a dead driver left behind."""
    from .resume import DRIVER_ATTR, driver_record, finished_trials, reconcile_runs, recover_stale_trials
    from .tracking import TrackingError, describe_study_run, open_study_run

    stores.runs_dir.mkdir(parents=True, exist_ok=True)
    for path in stores.sqlite_files():
        path.parent.mkdir(parents=True, exist_ok=True)
    try:  # MLflow first: a parent run left from an earlier study of this name stops us before Optuna is written
        study_run = open_study_run(stores.tracking_uri, plan.name, resume=plan.resume,
                                   tags={**plan.tags, "optuna_storage": stores.storage})
    except TrackingError as exc:
        raise SearchError(str(exc)) from None
    describe_study_run(study_run, description=study_description(plan),
                       params={k: v for k, v in plan.tags.items() if k != "trials"})
    study = _optuna_study(plan, stores.storage)
    session = int(study.user_attrs.get("sessions", 0)) + 1
    study.set_user_attr(SETTINGS_ATTR, plan.settings.to_dict())
    study.set_user_attr("sessions", session)
    study.set_user_attr(DRIVER_ATTR, driver_record())
    notes = []
    stale = recover_stale_trials(study)
    if stale:
        notes.append(f"resume: trials {', '.join(map(str, stale))} were interrupted; marked FAIL and enqueued again")
    for label, params in plan.enqueued:
        study.enqueue_trial(dict(params), user_attrs={ENQUEUED_ATTR: label})
    fixed = reconcile_runs(study, study_run)
    if fixed:
        notes.append("resume: closed MLflow runs left running: " + ", ".join(f"{n} {s}" for s, n in fixed.items()))
    remaining = max(0, plan.settings.trials - len(finished_trials(study)))
    return OpenStudy(study=study, study_run=study_run, session=session, remaining=remaining, notes=notes)


def _optuna_study(plan: StudyPlan, storage: str) -> optuna.Study:
    """The Optuna study with the one sampler and pruner of this run (the bridge uses this object)."""
    import optuna

    from .samplers import make_pruner, make_sampler

    s = plan.settings
    sampler = make_sampler(s.sampler, seed=s.seed, n_trials=s.trials)
    pruner = make_pruner(s.pruner, plan.budget)
    if plan.resume:
        return optuna.load_study(study_name=plan.name, storage=storage, sampler=sampler, pruner=pruner)
    study = optuna.create_study(study_name=plan.name, storage=storage, sampler=sampler, pruner=pruner,
                                directions=list(plan.study.directions))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names(list(plan.study.objectives))
    return study


def study_description(plan: StudyPlan) -> str:
    """The parent run's description in the MLflow UI (markdown)."""
    s, d = plan.settings, plan.study
    goal = ", ".join(f"{direction} {o}" for o, direction in zip(d.objectives, d.directions, strict=True))
    narrowed = ", ".join(f"{k}={v}" for k, v in s.narrowing.items()) or "none"
    first = ", ".join(label for label, _ in plan.enqueued) or "none"
    return (f"**{plan.name}**: study `{d.name}`, {d.description}.\n\n"
            f"Objective: {goal}. Budget `{s.budget}` ({plan.budget.images:,} training images per trial), "
            f"{s.trials} trials, sampler `{s.sampler}`, pruner `{s.pruner}`, seed {s.seed}, dataset `{s.dataset}`; "
            f"space narrowed by: {narrowed}; tried first: {first}.\n\n"
            f"Each trial is a nested run; the study's tables and plots are this run's `study/` artifacts, "
            f"and its metrics (counts, best objective, images) are updated as trials finish.")
