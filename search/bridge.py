"""The Optuna <-> Ray Tune bridge: our own Searcher (ask/tell) and a pruning TrialScheduler.

Ray's stock ``OptunaSearch`` uses no pruner and tells every stopped trial to Optuna as COMPLETE
with its partial value, which poisons the sampler's model with half-trained scores. Here:

- ``OptunaSearcher.suggest`` asks the study for a trial and runs the study's define-by-run space
  on it; ``on_trial_complete`` tells Optuna COMPLETE (final objective values), FAIL (a diverged
  run or a Ray error, with its reason) or nothing more for a trial the scheduler already pruned.
- ``OptunaPruningScheduler.on_trial_result`` passes each intermediate FID to
  ``trial.report(value, images)`` (the images trained: every trial reports at the same counts); when
  ``trial.should_prune()`` it tells Optuna PRUNED and answers Ray ``STOP``, so the trial is stopped in
  Ray and recorded as pruned in Optuna.
- A trial that cannot write (a full disk) stops the study: no new trial is asked for, every running
  one is stopped and left RUNNING in Optuna, so ``--resume`` reruns each from its last checkpoint
  once space is freed (``StudyLink.stopped`` says why).

Both live in the driver and share one ``StudyLink``; all Optuna storage access happens there, so
workers never need the Optuna database. The trial's MLflow run is closed here too, after Optuna
has recorded its state (a restarted driver reconciles MLflow from Optuna, never the reverse).
"""

from __future__ import annotations

import json
import math
import sys
import time
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState
from ray.tune import Callback
from ray.tune.schedulers import FIFOScheduler, TrialScheduler
from ray.tune.search import Searcher

from .messages import FailedReport, FinalReport, TrainReport, parse_result
from .packing import RAN_FROM_ATTR
from .resume import CHECKPOINT_ATTR, RESUME_FROM_ATTR, SEED_ATTR
from .settings import StudyPlan
from .tracking import StudyRun, end_trial_run, find_trial_run, log_study_summary

RUNTIME = ("study", "live", "pruned", "fail_reasons", "last_step", "run_ids", "asked", "progress", "checkpoints",
           "gpus")
INT_ATTRS = ("best_step", "n_final")  # whole numbers among a FinalReport's metrics


@dataclass
class StudyLink:
    """Driver-side state shared by the searcher and the scheduler: the plan, the one Optuna study (with
    the run's sampler and pruner) and what the running trials told so far."""

    plan: StudyPlan
    study: optuna.Study
    n_to_run: int  # trials this session asks for
    study_run: StudyRun
    storage_path: str = ""  # Ray's checkpoint storage: a folder or a URI
    live: dict[str, optuna.Trial] = field(default_factory=dict, repr=False)  # Ray trial id -> Optuna trial
    pruned: dict[str, int] = field(default_factory=dict, repr=False)  # Ray trial id -> images
    fail_reasons: dict[str, str] = field(default_factory=dict, repr=False)
    last_step: dict[str, int] = field(default_factory=dict, repr=False)  # Ray trial id -> images trained
    run_ids: dict[str, str] = field(default_factory=dict, repr=False)
    asked: int = 0
    progress: Any = field(default=None, repr=False)  # search.progress.StudyProgress, fed as trials go
    checkpoints: dict[str, str] = field(default_factory=dict, repr=False)  # Ray trial id -> latest checkpoint URI
    gpus: dict[str, str] = field(default_factory=dict, repr=False)  # Ray trial id -> the GPU it ran on
    stopped: str | None = None  # why the study stops early (a full disk), set once

    def __getstate__(self) -> dict[str, Any]:
        # Ray pickles the tuner's config (and with it this object) into its experiment state; the
        # Optuna study (a database connection) and the live trials stay in this process.
        return {k: v for k, v in self.__dict__.items() if k not in RUNTIME}

    def __setstate__(self, state: dict[str, Any]) -> None:
        # an unpickled link is inert: its study and live trials are in the driver that pickled it
        self.__dict__.update(state, study=None, live={}, pruned={}, fail_reasons={}, last_step={}, run_ids={},
                             asked=0, progress=None, checkpoints={}, gpus={})

    def note(self, ray_trial_id: str, result: Mapping[str, Any] | None):
        """Remember what a report tells about its trial; returns the parsed report (or None)."""
        report = parse_result(result)
        if report is not None and report.mlflow_run_id:
            self.run_ids[ray_trial_id] = report.mlflow_run_id
        if report is not None and report.gpu and self.gpus.get(ray_trial_id) != report.gpu:
            self.gpus[ray_trial_id] = report.gpu  # written once per placement: search.packing reads it
            if ray_trial_id in self.live:
                self.live[ray_trial_id].set_user_attr("gpu", report.gpu)
        if isinstance(report, TrainReport):
            self.last_step[ray_trial_id] = report.images
            if self.progress is not None and ray_trial_id in self.live:
                self.progress.trial_step(self.live[ray_trial_id].number, report.images)
        if isinstance(report, FailedReport) and report.disk_full and self.stopped is None:
            self.stopped = report.fail_reason
        return report

    def started(self, ray_trial_id: str, now: float) -> None:
        """Ray started the trial's actor: its resources (a GPU share too) are held from here. Optuna's
        own start is the ask, made while the trial may still wait for them. The first start is
        kept: a trial restarted after a lost worker counts from when it first ran."""
        trial = self.live.get(ray_trial_id)
        if trial is not None and RAN_FROM_ATTR not in trial.user_attrs:
            trial.set_user_attr(RAN_FROM_ATTR, now)

    def record_checkpoint(self, ray_trial, trial: optuna.Trial) -> None:
        """Keep the URI of the trial's latest Ray checkpoint in Optuna, which outlives the driver:
        after a lost driver or head, --resume reruns the trial from there (resume.py)."""
        checkpoint = ray_trial.checkpoint
        if checkpoint is None:
            return
        uri = checkpoint_uri(checkpoint.path, self.storage_path)
        if self.checkpoints.get(ray_trial.trial_id) != uri:
            self.checkpoints[ray_trial.trial_id] = uri
            trial.set_user_attr(CHECKPOINT_ATTR, uri)

    def close_run(self, ray_trial_id: str, trial: optuna.Trial, state: str, tags: Mapping[str, Any]) -> None:
        """End the trial's MLflow run with the state Optuna recorded, print its line and update the
        study's summary on the parent run. A tracking hiccup here must not stop the study: it is
        reported, and the next --resume reconciles the run from Optuna."""
        if self.progress is not None:
            frozen = self.study._storage.get_trial(trial._trial_id)
            images = frozen.user_attrs.get("train_images", self.last_step.get(ray_trial_id, 0))
            self.progress.trial_finished(trial.number, state, frozen.values, int(images))
        try:
            run_id = self.run_ids.get(ray_trial_id)
            if run_id is None:
                found = find_trial_run(self.study_run, trial.number)
                run_id = found.info.run_id if found is not None else None
            if run_id is not None:
                end_trial_run(self.study_run, run_id, state, tags)
            log_study_summary(self.study_run, self.study, self.plan)
        except Exception as exc:  # noqa: BLE001 - any tracking failure; the study goes on
            print(f"warning: could not update MLflow for trial {trial.number}: {exc}", file=sys.stderr)


class TrialStarts(Callback):
    """Tells the link when Ray starts each trial's actor (a reused actor starts again per trial)."""

    def __init__(self, link: StudyLink):
        self.link = link

    def on_trial_start(self, iteration: int, trials: list, trial, **info) -> None:
        self.link.started(trial.trial_id, time.time())


class OptunaSearcher(Searcher):
    """A Ray Tune searcher that samples from an Optuna study through ask/tell."""

    def __init__(self, link: StudyLink):
        super().__init__(metric=None, mode=None)
        self.link = link

    def set_search_properties(self, metric, mode, config, **spec) -> bool:
        return True  # the space is the study's define-by-run function; metric/mode are Optuna's

    # Ray annotates Searcher.suggest as Optional[Dict], yet documents (and checks for) Searcher.FINISHED, a str
    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:  # type: ignore[override]
        link = self.link
        if link.asked >= link.n_to_run or link.stopped:
            return Searcher.FINISHED
        trial = link.study.ask()
        params = link.plan.study.suggest(trial, link.plan.narrowing)
        trial.set_user_attr("ray_trial_id", trial_id)
        link.live[trial_id] = trial
        link.asked += 1
        # an interrupted trial enqueued again continues from its last checkpoint (resume.py)
        resume_from = trial.user_attrs.get(RESUME_FROM_ATTR)
        seed = int(trial.user_attrs.get(SEED_ATTR, link.plan.settings.seed))
        return {"params": params, "optuna_trial": trial.number, "seed": seed, "resume_from": resume_from}

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        self.link.note(trial_id, result)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        link = self.link
        if trial_id not in link.live:
            return
        report = link.note(trial_id, result)  # while live: a first report (its GPU) is recorded on the trial
        trial = link.live.pop(trial_id)
        if trial_id in link.pruned:  # told PRUNED by the scheduler already
            link.close_run(trial_id, trial, "PRUNED", {"pruned_at_images": link.pruned[trial_id]})
            return
        if link.stopped:  # the study stops (a full disk): the trial stays RUNNING, --resume reruns it
            return
        images = report.train_images if isinstance(report, FinalReport) else link.last_step.get(trial_id, 0)
        trial.set_user_attr("train_images", int(images))
        if error:
            reason = link.fail_reasons.get(trial_id, "the Ray trial raised an error (see its error.txt)")
            self._fail(trial, reason, trial_id)
            return
        if isinstance(report, FailedReport):
            self._fail(trial, report.fail_reason, trial_id)
            return
        if not isinstance(report, FinalReport):
            self._fail(trial, "trial ended without final metrics", trial_id)
            return
        values = [float(report.metrics[k]) for k in link.plan.study.objectives]
        if not all(math.isfinite(v) for v in values):
            self._fail(trial, f"objective is not finite: {values}", trial_id)
            return
        for key, value in report.metrics.items():
            trial.set_user_attr(key, int(value) if key in INT_ATTRS else value)
        for key in ("evaluator_sha256", "mlflow_run_id", "resumed_from_step", "train_steps"):
            trial.set_user_attr(key, getattr(report, key))
        link.study.tell(trial, values if len(values) > 1 else values[0])
        link.close_run(trial_id, trial, "COMPLETE", {})

    def _fail(self, trial: optuna.Trial, reason: str, trial_id: str) -> None:
        trial.set_user_attr("fail_reason", reason)
        if trial_id in self.link.run_ids:
            trial.set_user_attr("mlflow_run_id", self.link.run_ids[trial_id])
        self.link.study.tell(trial, state=TrialState.FAIL)
        self.link.close_run(trial_id, trial, "FAIL", {"fail_reason": reason})

    # Ray checkpoints searchers with its experiment state; the study's state is in Optuna's storage.
    def save(self, checkpoint_path: str) -> None:
        Path(checkpoint_path).write_text(json.dumps({"study_name": self.link.plan.name}))

    def restore(self, checkpoint_path: str) -> None:
        saved = json.loads(Path(checkpoint_path).read_text())
        if saved != {"study_name": self.link.plan.name}:
            raise ValueError(f"searcher state {checkpoint_path} belongs to another study: {saved}")


class OptunaPruningScheduler(FIFOScheduler):
    """Runs trials first-in first-out; stops a trial when the study's Optuna pruner says so."""

    def __init__(self, link: StudyLink):
        super().__init__()
        self.link = link

    def set_search_properties(self, metric, mode, **spec) -> bool:
        return True

    def on_trial_result(self, tune_controller, trial, result: dict) -> str:
        link = self.link
        report = link.note(trial.trial_id, result)
        if link.stopped:  # a full disk stops every trial; each reruns from its checkpoint on --resume
            return TrialScheduler.STOP
        ot_trial = link.live.get(trial.trial_id)
        if ot_trial is not None:
            link.record_checkpoint(trial, ot_trial)
        if ot_trial is None or not isinstance(report, TrainReport) or not link.plan.study.prunable:
            return TrialScheduler.CONTINUE
        images = report.images  # Optuna's step: every trial reports at the same image counts
        ot_trial.report(report.fid_intermediate, images)
        # a trial at its last mark has trained its budget: it completes (its scores are the point)
        if images >= link.plan.budget.images or not ot_trial.should_prune():
            return TrialScheduler.CONTINUE
        ot_trial.set_user_attr("pruned_at_images", images)
        ot_trial.set_user_attr("train_images", images)
        ot_trial.set_user_attr("train_steps", report.step)
        if trial.trial_id in link.run_ids:
            ot_trial.set_user_attr("mlflow_run_id", link.run_ids[trial.trial_id])
        link.study.tell(ot_trial, state=TrialState.PRUNED)
        link.pruned[trial.trial_id] = images
        return TrialScheduler.STOP

    def on_trial_error(self, tune_controller, trial) -> None:
        self.link.fail_reasons[trial.trial_id] = error_reason(trial)

    def debug_string(self) -> str:
        return f"Optuna pruner {self.link.plan.settings.pruner!r} on the intermediate FID"


def error_reason(trial) -> str:
    """The last line of a Ray trial's error file (the exception's type and message)."""
    path = getattr(trial, "error_file", None)
    try:
        lines = [ln.strip() for ln in Path(path).read_text().splitlines() if ln.strip()] if path else []
    except OSError:
        lines = []
    return lines[-1][:500] if lines else "the Ray trial raised an error"


def checkpoint_uri(path: str, storage_path: str) -> str:
    """A Ray checkpoint's path in its filesystem as a URI any node can open: ``s3://bucket/...`` for a
    bucket (with the storage URI's query, e.g. an endpoint override), ``file:///...`` for a folder."""
    parts = urllib.parse.urlsplit(storage_path)
    if parts.scheme in ("", "file"):
        return Path(path).as_uri() if not path.startswith("file://") else path
    return f"{parts.scheme}://{path.lstrip('/')}" + (f"?{parts.query}" if parts.query else "")
