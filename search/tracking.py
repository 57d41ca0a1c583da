"""MLflow tracking: one parent run per study, one nested run per trial, from whichever node.

The driver creates the study's experiment and parent run; each trial creates (or, after a worker
restart, finds again) its own run from the worker through ``MlflowClient`` with the parent's id in
the ``mlflow.parentRunId`` tag, so nothing depends on an active-run global or on the node. Run
*states* are decided by the driver, which owns the Optuna study: a trial run ends FINISHED,
FAILED or KILLED according to what Optuna records (see ``RUN_STATUS``).
"""

from __future__ import annotations

import math
import os
import time
import urllib.parse
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .urls import is_sqlite, sqlite_path

if TYPE_CHECKING:
    import optuna

    from .settings import StudyPlan

PARENT_TAG = "mlflow.parentRunId"
ROLE_TAG = "search.role"  # "study" | "trial"
STUDY_TAG = "search.study_name"
TRIAL_TAG = "optuna.trial_number"
STATE_TAG = "optuna.state"
# Optuna's final trial state -> the MLflow run status it ends with
RUN_STATUS = {"COMPLETE": "FINISHED", "PRUNED": "FINISHED", "FAIL": "FAILED"}
MAX_METRICS_PER_BATCH = 1000  # MLflow's log_batch limit
# The study's runs table, saved with its experiment as an MLflow "shared view" (experiment tag
# mlflow.sharedViewState.<key>, which MLflow 3's UI lists under Views and applies when the URL names it):
# the scores as visible columns, the best trial first. The UI otherwise opens an experiment on its GenAI
# overview (traces, latency) and shows no metric column; ``experiment_url`` opens it on this view.
STUDY_VIEW = "study"
VIEW_COLUMNS = ("fid", "fid_before", "precision", "recall", "coverage", "class_coverage")
VIEW_PARAMS = ("architecture", "loss", "refine_method")


class TrackingError(RuntimeError):
    """The tracking store cannot be reached or used; one line saying which and why."""


def artifact_root_for(uri: str) -> str | None:
    """Where artifacts go: beside a local SQLite store (``mlartifacts/``); a server decides for itself."""
    if is_sqlite(uri):
        return (sqlite_path(uri).parent / "mlartifacts").resolve().as_uri()
    return None


def client(uri: str):
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=uri)


def _now_ms() -> int:
    return int(time.time() * 1000)


def _as_param(v: Any) -> str:
    return repr(v) if isinstance(v, float) else str(v)


def finite_metrics(values: Mapping[str, Any]) -> dict[str, float]:
    """The numeric, finite entries (MLflow rejects NaN/inf and non-numbers)."""
    out = {}
    for k, v in values.items():
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            continue
        if math.isfinite(float(v)):
            out[k] = float(v)
    return out


# --- driver side: the study's experiment and parent run ------------------------------------------


@dataclass(frozen=True)
class StudyRun:
    tracking_uri: str
    experiment_id: str
    parent_run_id: str


def open_study_run(uri: str, study_name: str, *, resume: bool, tags: Mapping[str, str],
                   experiment: str | None = None) -> StudyRun:
    """The study's experiment (named as the study, or ``experiment``) and the study's one parent run in it;
    reused on --resume."""
    c = client(uri)
    experiment = experiment or study_name
    exp = c.get_experiment_by_name(experiment)
    if exp is None:
        exp_id = c.create_experiment(experiment, artifact_location=_experiment_artifacts(uri, experiment))
        save_study_view(uri, exp_id)
    else:
        exp_id = exp.experiment_id
        if f"mlflow.sharedViewState.{STUDY_VIEW}" not in exp.tags:  # an experiment from before the view
            save_study_view(uri, exp_id)
    found = _search(c, exp_id, f"tags.`{ROLE_TAG}` = 'study' and tags.`{STUDY_TAG}` = '{study_name}'")
    if found and resume:
        run_id = found[0].info.run_id
        c.update_run(run_id, status="RUNNING")
    elif found:
        raise TrackingError(f"MLflow experiment {experiment!r} at {uri} already has study {study_name!r}'s parent run "
                            f"{found[0].info.run_id}; use --resume or another --name")
    else:
        run = c.create_run(exp_id, run_name=study_name, tags={ROLE_TAG: "study", STUDY_TAG: study_name, **tags})
        run_id = run.info.run_id
    return StudyRun(tracking_uri=uri, experiment_id=exp_id, parent_run_id=run_id)


def save_study_view(uri: str, experiment_id: str) -> None:
    """The study's runs table as a saved view of its experiment: the scores and the key parameters as
    columns, sorted by FID (which also lays the nested trials out as rows of their own)."""
    import json

    columns = [f"metrics.`{m}`" for m in VIEW_COLUMNS] + [f"params.`{p}`" for p in VIEW_PARAMS]
    state = {"selectedColumns": columns, "orderByKey": f"metrics.`{VIEW_COLUMNS[0]}`", "orderByAsc": True}
    envelope = {"name": "Study scores", "createdAt": _now_ms(), "state": json.dumps(state)}
    client(uri).set_experiment_tag(experiment_id, f"mlflow.sharedViewState.{STUDY_VIEW}", json.dumps(envelope))


def experiment_url(base: str, experiment_id: str) -> str:
    """The study's experiment in the MLflow UI at ``base``: its runs table, in the study's saved view and the
    UI's model-training mode (MLflow 3 otherwise lands on its GenAI overview)."""
    return (f"{base.rstrip('/')}/#/experiments/{experiment_id}/runs?viewStateShareKey={STUDY_VIEW}"
            f"&workflowType=machine_learning")


def _experiment_artifacts(uri: str, study_name: str) -> str | None:
    root = artifact_root_for(uri)
    return None if root is None else f"{root}/{urllib.parse.quote(study_name)}"


def _search(c, experiment_id: str, filter_string: str) -> list:
    from mlflow.entities import ViewType

    runs, token = [], None
    while True:
        page = c.search_runs([experiment_id], filter_string=filter_string, run_view_type=ViewType.ALL,
                             max_results=1000, page_token=token)
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def trial_runs(study_run: StudyRun) -> list:
    """Every trial run under the study's parent run."""
    return _search(client(study_run.tracking_uri), study_run.experiment_id,
                   f"tags.`{PARENT_TAG}` = '{study_run.parent_run_id}' and tags.`{ROLE_TAG}` = 'trial'")


def find_trial_run(study_run: StudyRun, trial_number: int):
    runs = _search(client(study_run.tracking_uri), study_run.experiment_id,
                   f"tags.`{PARENT_TAG}` = '{study_run.parent_run_id}' and tags.`{TRIAL_TAG}` = '{trial_number}'")
    return runs[0] if runs else None


def end_trial_run(study_run: StudyRun, run_id: str, state: str, tags: Mapping[str, Any] | None = None) -> None:
    """Close a trial's run with the status matching its Optuna state (KILLED for interrupted ones)."""
    c = client(study_run.tracking_uri)
    for k, v in dict(tags or {}).items():
        c.set_tag(run_id, k, str(v))
    c.set_tag(run_id, STATE_TAG, state)
    c.set_terminated(run_id, status=RUN_STATUS.get(state, "KILLED"))


def describe_study_run(study_run: StudyRun, *, description: str, params: Mapping[str, Any]) -> None:
    """The parent run's description (shown on its page in the UI) and the study's fixed settings."""
    from mlflow.entities import Param, RunTag

    c = client(study_run.tracking_uri)
    logged = c.get_run(study_run.parent_run_id).data.params
    new = [Param(k, _as_param(v)) for k, v in params.items() if k not in logged]  # params never change
    c.log_batch(study_run.parent_run_id, params=new, tags=[RunTag("mlflow.note.content", description)])


def log_study_summary(study_run: StudyRun, study: optuna.Study, plan: StudyPlan) -> None:
    """The study at a glance on its parent run: counts, best objective(s) and trial, images, wall time.
    Metrics are logged at step = finished trials, so each is a curve over the study's course."""
    from mlflow.entities import Metric, RunTag

    from .report import study_summary

    summary = study_summary(study, plan)
    step = int(sum(summary["metrics"].get(k, 0.0) for k in ("n_complete", "n_pruned", "n_fail")))
    ts = _now_ms()
    client(study_run.tracking_uri).log_batch(
        study_run.parent_run_id,
        metrics=[Metric(k, v, ts, step) for k, v in finite_metrics(summary["metrics"]).items()],
        tags=[RunTag(k, v[:5000]) for k, v in summary["tags"].items()])


def end_study_run(study_run: StudyRun, status: str) -> None:
    client(study_run.tracking_uri).set_terminated(study_run.parent_run_id, status=status)


def log_study_artifacts(study_run: StudyRun, folder: Path, artifact_path: str = "study") -> None:
    client(study_run.tracking_uri).log_artifacts(study_run.parent_run_id, str(folder), artifact_path)


def ui_command(uri: str, experiment_id: str) -> str:
    """What opens the MLflow UI on the study's runs table (``experiment_url``)."""
    if is_sqlite(uri):
        return (f"mlflow ui --backend-store-uri {uri} --host 127.0.0.1 --port 5000, then open "
                f"{experiment_url('http://127.0.0.1:5000', experiment_id)}")
    return f"open {experiment_url(uri, experiment_id)}"


# --- worker side: one trial's run ------------------------------------------------------------------


class TrialRun:
    """A trial's nested run, created by the worker or found again after a restart."""

    def __init__(self, study_run: StudyRun, run_id: str):
        self.study_run = study_run
        self.run_id = run_id
        self._client = client(study_run.tracking_uri)

    @classmethod
    def open(cls, study_run: StudyRun, *, study_name: str, trial_number: int, params: Mapping[str, Any],
             tags: Mapping[str, Any] | None = None) -> TrialRun:
        existing = find_trial_run(study_run, trial_number)
        c = client(study_run.tracking_uri)
        if existing is not None:  # a restarted worker continues the same run, never a duplicate
            c.update_run(existing.info.run_id, status="RUNNING")
            return cls(study_run, existing.info.run_id)
        run = c.create_run(
            study_run.experiment_id,
            run_name=f"trial-{trial_number:04d}",
            tags={PARENT_TAG: study_run.parent_run_id, ROLE_TAG: "trial", STUDY_TAG: study_name,
                  TRIAL_TAG: str(trial_number), **{k: str(v) for k, v in dict(tags or {}).items()}},
        )
        out = cls(study_run, run.info.run_id)
        out.log_params(params)
        return out

    def log_params(self, params: Mapping[str, Any]) -> None:
        from mlflow.entities import Param

        items = [Param(k, _as_param(v)) for k, v in params.items()]
        for i in range(0, len(items), 100):
            self._client.log_batch(self.run_id, params=items[i:i + 100])

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        from mlflow.entities import RunTag

        if tags:
            self._client.log_batch(self.run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])

    def log_metrics(self, values: Mapping[str, Any], step: int = 0) -> None:
        self.log_series((k, v, step) for k, v in finite_metrics(values).items())

    def log_series(self, points: Iterable[tuple[str, float, int]]) -> None:
        """(key, value, step) points, in batches within MLflow's limit; non-finite values are skipped."""
        from mlflow.entities import Metric

        ts = _now_ms()
        batch = [Metric(k, float(v), ts, int(s)) for k, v, s in points if math.isfinite(float(v))]
        for i in range(0, len(batch), MAX_METRICS_PER_BATCH):
            self._client.log_batch(self.run_id, metrics=batch[i:i + MAX_METRICS_PER_BATCH])

    def log_artifact(self, path: str | os.PathLike, artifact_path: str | None = None) -> None:
        self._client.log_artifact(self.run_id, str(path), artifact_path)
