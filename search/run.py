"""`python -m search.run --study NAME`: one study, scheduled by Ray Tune, sampled and pruned by
Optuna, tracked in MLflow. With no flags it runs on this machine: a local Ray runtime, Optuna in
SQLite (runs/optuna.db), MLflow in SQLite (runs/mlflow.db, artifacts in runs/mlartifacts/), Ray's
trial folders in runs/ray/. ``--address`` joins a cluster: its nodes share no disk, so it needs
``--storage-path`` on shared storage and ``--tracking-uri`` on an MLflow server (see preflight.py).

The driver is a sequence of named steps (``run_study``):

1. ``resolve_stores``   where the study's record, its checkpoints and its runs live;
2. ``plan_study``       the study's settings: from the flags, or stored with the study on --resume;
3. ``load_inputs``      the data, the evaluator and the embedders, read once here for every trial;
4. ``start_ray``        start or join Ray, check the resources and the stores from the worker nodes;
5. ``open_stores``      the MLflow parent run and the Optuna study (the first write of all);
6. ``run_trials``       Ray Tune runs the trials; the Optuna bridge samples, prunes and records;
7. ``report``           tables and plots, the outcome the CLI prints.

Steps 1-4 write nothing: bad input never leaves a half-created study (or an empty database).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shlex
import sys
import warnings
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

# light: the heavy modules are imported by the steps that use them
from gan_models.cli import cli_prog
from gan_models.config import FrozenConfig

DEFAULT_RUNS_DIR = "runs"
SETTINGS_ATTR = "search_settings"


class SearchError(RuntimeError):
    """Bad input or an unusable environment; the message is one line for the CLI."""


@dataclass(frozen=True)
class SearchOptions:
    """The command line, as given (None: not given; the study's stored or default value applies)."""

    study: str | None = None  # registry name; on --resume taken from the stored study
    name: str | None = None  # Optuna study / MLflow experiment name; default: the study's name
    trials: int | None = None  # the study's total (default 20; --resume may raise it)
    budget: str | None = None
    sampler: str | None = None
    pruner: str | None = None
    seed: int | None = None
    dataset: str | None = None
    precision: str | None = None
    study_file: str | None = None
    enqueue_file: str | None = None
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0
    max_concurrent: int | None = None
    max_failures: int = 2
    storage: str | None = None
    storage_path: str | None = None
    tracking_uri: str | None = None
    address: str | None = None
    num_cpus: int | None = None
    num_gpus: int | None = None  # GPUs of a locally started Ray (None: what Ray detects)
    data_root: str | None = None
    download: bool = True
    resume: bool = False
    runs_dir: str = DEFAULT_RUNS_DIR
    verbose: int = 0  # 0: our status line and one line per trial; 1: Ray Tune's own tables and logs too
    progress_every_s: float = 30.0  # the status line's period when stdout is not a terminal


@dataclass(frozen=True)
class StudySettings(FrozenConfig):
    """What defines a study: stored with it at creation, reused (and checked) on --resume."""

    config_name: ClassVar[str] = "stored study settings"
    config_error: ClassVar[type[Exception]] = SearchError

    study: str
    budget: str = "small"
    sampler: str = "tpe"
    pruner: str = "median"
    seed: int = 0
    trials: int = 20
    dataset: str = "mnist"
    precision: str = "fp32"  # of every trial's training and refinement
    narrowing: Mapping[str, Any] = field(default_factory=dict)  # the study file's params, as JSON

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "narrowing": dict(self.narrowing)}  # JSON for Optuna's user attrs


DEFAULTS = {f.name: f.default for f in dataclasses.fields(StudySettings)
            if f.default is not dataclasses.MISSING}
# a flag may not change these on --resume
DEFINING = ("study", "budget", "sampler", "pruner", "seed", "dataset", "precision")


@dataclass(frozen=True)
class Stores:
    storage: str  # Optuna, any SQLAlchemy URL
    tracking_uri: str  # MLflow
    storage_path: str  # Ray Tune's checkpoints: a folder or a URI
    runs_dir: Path  # the default stores' folder and the study's report

    def sqlite_files(self) -> list[Path]:
        return [Path(u[len("sqlite:///"):]) for u in (self.storage, self.tracking_uri) if u.startswith("sqlite:///")]


@dataclass(frozen=True)
class StudyPlan:
    name: str
    settings: StudySettings
    study_def: Any  # search.studies.Study
    budget: Any  # search.budgets.Budget
    narrowing: Mapping[str, Any]  # name -> ParamSpec
    enqueued: list[dict[str, Any]]
    resume: bool


@dataclass
class StudyOutcome:
    name: str
    storage: str
    tracking_uri: str
    interrupted: bool
    table: Any  # pandas DataFrame of every trial
    best: Any  # the best trials / the Pareto front
    report_dir: Path
    skipped_plots: dict[str, str]
    resume_command: str
    notes: list[str] = field(default_factory=list)

    @property
    def n_complete(self) -> int:
        return 0 if self.table.empty else int((self.table["state"] == "COMPLETE").sum())


# --- 1. stores -------------------------------------------------------------------------------------


def _absolute_sqlite(url: str) -> str:
    """sqlite:///relative.db -> an absolute path, so Ray workers (other cwd) see the same file."""
    if url.startswith("sqlite:///") and not url.startswith("sqlite:////"):
        return "sqlite:///" + str(Path(url[len("sqlite:///"):]).resolve())
    return url


def resolve_stores(opts: SearchOptions, placement) -> Stores:
    """The stores' locations, checked from here: usable, and reachable by every node that runs trials."""
    from .preflight import (
        PreflightError,
        check_server_artifacts,
        check_storage_path,
        check_tracking_placement,
        check_writable_folder,
    )
    from .tracking import TrackingError, check_tracking_uri, default_tracking_uri

    runs_dir = Path(opts.runs_dir).resolve()
    _check_numbers(opts)
    stores = Stores(
        storage=_absolute_sqlite(opts.storage or f"sqlite:///{runs_dir / 'optuna.db'}"),
        # MLflow's own convention: MLFLOW_TRACKING_URI when no flag is given (a cluster's head exports it)
        tracking_uri=_absolute_sqlite(opts.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
                                      or default_tracking_uri(runs_dir)),
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
    except (PreflightError, TrackingError) as exc:
        raise SearchError(str(exc)) from None
    return stores


def _check_numbers(opts: SearchOptions) -> None:
    if not opts.cpus_per_trial > 0:
        raise SearchError(f"--cpus-per-trial must be > 0, got {opts.cpus_per_trial:g}")
    if not opts.gpus_per_trial >= 0:
        raise SearchError(f"--gpus-per-trial must be >= 0, got {opts.gpus_per_trial:g}")
    if opts.max_concurrent is not None and opts.max_concurrent <= 0:
        raise SearchError(f"--max-concurrent must be a positive integer, got {opts.max_concurrent}")
    if opts.max_failures < 0:
        raise SearchError(f"--max-failures must be >= 0, got {opts.max_failures}")
    if opts.num_cpus is not None and opts.num_cpus <= 0:
        raise SearchError(f"--num-cpus must be a positive integer, got {opts.num_cpus}")
    if opts.num_gpus is not None and opts.num_gpus < 0:
        raise SearchError(f"--num-gpus must be an integer >= 0, got {opts.num_gpus}")
    if opts.num_gpus is not None and opts.address:
        raise SearchError("--num-gpus sets a locally started Ray's GPUs; with --address the cluster's nodes declare "
                          "their own (drop one of the two)")
    if not opts.progress_every_s > 0:
        raise SearchError(f"--progress-every must be > 0 seconds, got {opts.progress_every_s:g}")
    if opts.trials is not None and opts.trials <= 0:
        raise SearchError(f"--trials must be a positive integer, got {opts.trials}")


# --- 2. the study's settings ----------------------------------------------------------------------------


def _lookup(fn, *args):
    """Registry lookups raise ValueError listing the valid names; at the CLI that is bad input."""
    try:
        return fn(*args)
    except ValueError as exc:
        raise SearchError(str(exc)) from None


def existing_studies(storage: str) -> list[str]:
    """Study names in the storage; an absent SQLite file holds none (and is not created here)."""
    import optuna

    if storage.startswith("sqlite:///") and not Path(storage[len("sqlite:///"):]).is_file():
        return []
    try:
        return optuna.study.get_all_study_names(storage)
    except Exception as exc:  # noqa: BLE001 - any storage failure is the user's URL
        raise SearchError(f"cannot open the Optuna storage {storage}: {str(exc).splitlines()[0]}") from None


def plan_study(opts: SearchOptions, stores: Stores) -> StudyPlan:
    from .space import SpaceError, narrowing_to_jsonable, read_study_file
    from .studies import get_study

    study_file = None
    if opts.study_file:
        try:
            study_file = read_study_file(opts.study_file)
        except SpaceError as exc:
            raise SearchError(str(exc)) from None
        if study_file["study"] and opts.study and study_file["study"] != opts.study:
            raise SearchError(f"study file {opts.study_file} is for study {study_file['study']!r}, "
                              f"not --study {opts.study}")
        if study_file["study"] and not opts.study:
            opts = dataclasses.replace(opts, study=study_file["study"])
    name = opts.name or opts.study
    if name is None:
        raise SearchError("--study (or --name with --resume) is required; see --list-studies")
    if opts.study is not None:
        _lookup(get_study, opts.study)  # an unknown study is reported before anything else
    stored = _stored_settings(opts, stores.storage, name)
    settings = _settings(opts, stored)
    study_def = get_study(settings.study)
    budget = _validate(settings, study_def)
    try:
        narrowing = study_def.narrowing(study_file["params"] if study_file else settings.narrowing)
    except SpaceError as exc:
        raise SearchError(f"study file {opts.study_file}: {exc}") from None
    if study_file is not None and stored is not None and narrowing_to_jsonable(narrowing) != dict(stored.narrowing):
        raise SearchError("--study-file differs from the one the resumed study was created with")
    settings = dataclasses.replace(settings, narrowing=narrowing_to_jsonable(narrowing))
    enqueued = _read_enqueue_file(opts.enqueue_file, study_def) if opts.enqueue_file else []
    return StudyPlan(name=name, settings=settings, study_def=study_def, budget=budget, narrowing=narrowing,
                     enqueued=enqueued, resume=opts.resume)


def _stored_settings(opts: SearchOptions, storage: str, name: str) -> StudySettings | None:
    import optuna

    from .resume import live_driver

    existing = existing_studies(storage)
    if not opts.resume:
        if name in existing:
            raise SearchError(f"study {name!r} already exists in {storage}; continue it with --resume "
                              f"or start another with --name")
        return None
    if name not in existing:
        raise SearchError(f"cannot --resume study {name!r}: it does not exist in {storage} "
                          f"(existing: {', '.join(existing) or 'none'})")
    stored = optuna.load_study(study_name=name, storage=storage)
    values = stored.user_attrs.get(SETTINGS_ATTR)
    if values is None:
        raise SearchError(f"study {name!r} in {storage} was not created by search.run; cannot resume it")
    other = live_driver(stored)
    if other is not None:
        raise SearchError(f"study {name!r} is being run by process {other['pid']} on this host; stop it first")
    return StudySettings.from_dict(values)


def _settings(opts: SearchOptions, stored: StudySettings | None) -> StudySettings:
    """The stored settings on --resume (a conflicting flag is an error), else the flags with their
    defaults. ``trials`` may be raised on --resume."""
    from .studies import get_study

    given = {k: getattr(opts, k) for k in DEFINING if getattr(opts, k) is not None}
    if stored is not None:
        for key, value in given.items():
            if value != getattr(stored, key):
                raise SearchError(f"--{key} {value} conflicts with the resumed study's {key} "
                                  f"{getattr(stored, key)!r}; leave it out to continue the study as it was created")
        return dataclasses.replace(stored, trials=opts.trials or stored.trials)
    if opts.study is None:
        raise SearchError("--study is required (see --list-studies)")
    study_def = get_study(opts.study)
    return StudySettings(**{**given, "trials": opts.trials or DEFAULTS["trials"],
                            "sampler": opts.sampler or study_def.default_sampler,
                            "pruner": opts.pruner or (DEFAULTS["pruner"] if study_def.prunable else "none")})


def _validate(s: StudySettings, study_def):
    from gan_models.config import PRECISION_NAMES
    from gan_models.data import check_dataset_name
    from gan_models.registry import check_choice

    from .budgets import get_budget
    from .samplers import PRUNERS, SAMPLERS

    budget = _lookup(get_budget, s.budget)
    _lookup(check_dataset_name, s.dataset)
    check_choice("sampler", s.sampler, SAMPLERS, SearchError)
    check_choice("precision", s.precision, PRECISION_NAMES, SearchError)
    check_choice("pruner", s.pruner, PRUNERS, SearchError)
    if study_def.multi_objective and s.pruner != "none":
        raise SearchError(f"study {study_def.name} has {len(study_def.objectives)} objectives and Optuna cannot "
                          f"prune multi-objective studies; use --pruner none")
    return budget


def _read_enqueue_file(path: str, study_def) -> list[dict[str, Any]]:
    from .space import SpaceError, narrow, read_yaml

    p = Path(path)
    try:
        data = read_yaml(p, "enqueue file")
    except SpaceError as exc:
        raise SearchError(str(exc)) from None
    if not isinstance(data, list) or not all(isinstance(d, dict) for d in data):
        raise SearchError(f"enqueue file {p} must hold a list of parameter mappings")
    for i, params in enumerate(data):
        try:
            for name, value in params.items():
                if isinstance(value, (list, dict)):
                    raise SpaceError(f"parameter {name}: an enqueued trial fixes values, got {value!r}")
            narrow(study_def.specs, params)
        except SpaceError as exc:
            raise SearchError(f"enqueue file {p}, entry {i}: {exc}") from None
    return data


# --- 3. what every trial receives ----------------------------------------------------------------------


def load_inputs(opts: SearchOptions, plan: StudyPlan):
    """Data, evaluator and embedders, read once on the driver for every trial (the data downloaded
    when absent, unless --no-download; a failed download takes back the folders it made)."""
    from evaluation.classifier import WeightsError
    from gan_models import DataNotFoundError
    from gan_models.data import resolve_data_root

    from .payload import build_inputs

    root = resolve_data_root(opts.data_root)
    try:
        return build_inputs(dataset=plan.settings.dataset, study=plan.study_def, budget=plan.budget,
                            data_root=root, download=opts.download)
    except (DataNotFoundError, WeightsError, ValueError) as exc:
        lines = str(exc).strip().splitlines()
        message = lines[0] if lines else type(exc).__name__
        if isinstance(exc, DataNotFoundError) and not opts.download:
            message += " (--no-download)"
        raise SearchError(message) from None


# --- 4. Ray, resources, and the stores seen from the workers ------------------------------------------------


def start_ray(opts: SearchOptions, stores: Stores, placement) -> list[str]:
    """Start (or join) Ray and check it can run this study; returns notes for the log."""
    import logging

    import ray

    from .preflight import PreflightError, check_resources, probe_nodes, sharing_note

    try:
        if placement.cluster:
            ray.init(address=opts.address, logging_level=logging.WARNING, log_to_driver=opts.verbose > 0)
        else:
            ray.init(num_cpus=opts.num_cpus, num_gpus=opts.num_gpus, include_dashboard=False,
                     logging_level=logging.WARNING, log_to_driver=opts.verbose > 0)
    except (ConnectionError, RuntimeError, ValueError, OSError) as exc:
        raise SearchError(f"cannot start or join Ray ({opts.address or 'local'}): {str(exc).splitlines()[0]}") from None
    try:
        notes = [check_resources(cpus_per_trial=opts.cpus_per_trial, gpus_per_trial=opts.gpus_per_trial,
                                 placement=placement),
                 probe_nodes(stores.storage_path, stores.tracking_uri, cpus_per_trial=opts.cpus_per_trial,
                             gpus_per_trial=opts.gpus_per_trial, placement=placement),
                 sharing_note(cpus_per_trial=opts.cpus_per_trial, gpus_per_trial=opts.gpus_per_trial)]
    except PreflightError as exc:
        ray.shutdown()
        raise SearchError(str(exc)) from None
    return [n for n in notes if n]


# --- 5. the stores: the first write of all ------------------------------------------------------------------


@dataclass
class OpenStudy:
    study: Any  # optuna.Study
    study_run: Any  # tracking.StudyRun
    session: int
    remaining: int
    notes: list[str]


def open_stores(plan: StudyPlan, stores: Stores) -> OpenStudy:
    """The study's MLflow parent run and Optuna study, and what a dead driver left behind."""
    import optuna

    from .resume import DRIVER_ATTR, driver_record, finished_trials, reconcile_runs, recover_stale_trials
    from .samplers import make_pruner, make_sampler
    from .tracking import TrackingError, describe_study_run, open_study_run

    s = plan.settings
    stores.runs_dir.mkdir(parents=True, exist_ok=True)
    for path in stores.sqlite_files():
        path.parent.mkdir(parents=True, exist_ok=True)
    try:  # MLflow first: a parent run left from an earlier study of this name stops us before Optuna is written
        study_run = open_study_run(stores.tracking_uri, plan.name, resume=plan.resume, tags={
            "study": s.study, "budget": s.budget, "sampler": s.sampler, "pruner": s.pruner,
            "optuna_storage": stores.storage, "seed": str(s.seed), "dataset": s.dataset, "precision": s.precision})
    except TrackingError as exc:
        raise SearchError(str(exc)) from None
    describe_study_run(study_run, description=study_description(plan), params={
        k: v for k, v in s.to_dict().items() if k not in ("trials", "narrowing")})
    sampler = make_sampler(s.sampler, seed=s.seed, n_trials=s.trials)
    pruner = make_pruner(s.pruner, plan.budget)
    if plan.resume:
        study = optuna.load_study(study_name=plan.name, storage=stores.storage, sampler=sampler, pruner=pruner)
    else:
        study = optuna.create_study(study_name=plan.name, storage=stores.storage, sampler=sampler, pruner=pruner,
                                    directions=list(plan.study_def.directions))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names(list(plan.study_def.objectives))
    session = int(study.user_attrs.get("sessions", 0)) + 1
    study.set_user_attr(SETTINGS_ATTR, s.to_dict())
    study.set_user_attr("sessions", session)
    study.set_user_attr(DRIVER_ATTR, driver_record())
    notes = []
    stale = recover_stale_trials(study)
    if stale:
        notes.append(f"resume: trials {', '.join(map(str, stale))} were interrupted; marked FAIL and enqueued again")
    for params in plan.enqueued:
        study.enqueue_trial(params)
    fixed = reconcile_runs(study, study_run)
    if fixed:
        notes.append("resume: closed MLflow runs left running: " + ", ".join(f"{n} {s}" for s, n in fixed.items()))
    remaining = max(0, s.trials - len(finished_trials(study)))
    return OpenStudy(study=study, study_run=study_run, session=session, remaining=remaining, notes=notes)


def study_description(plan: StudyPlan) -> str:
    """The parent run's description in the MLflow UI (markdown)."""
    s, d = plan.settings, plan.study_def
    goal = ", ".join(f"{direction} {o}" for o, direction in zip(d.objectives, d.directions, strict=True))
    narrowed = ", ".join(f"{k}={v}" for k, v in s.narrowing.items()) or "none"
    return (f"**{plan.name}**: study `{d.name}`, {d.description}.\n\n"
            f"Objective: {goal}. Budget `{s.budget}`, {s.trials} trials, sampler `{s.sampler}`, pruner `{s.pruner}`, "
            f"seed {s.seed}, dataset `{s.dataset}`; space narrowed by: {narrowed}.\n\n"
            f"Each trial is a nested run; the study's tables and plots are this run's `study/` artifacts, "
            f"and its metrics (counts, best objective, steps) are updated as trials finish.")


# --- 6. the trials --------------------------------------------------------------------------------------


def run_trials(opts: SearchOptions, plan: StudyPlan, stores: Stores, opened: OpenStudy, inputs, *, log) -> bool:
    """Ray Tune runs the remaining trials; returns True when they all ran (False: interrupted)."""
    from .bridge import StudyLink
    from .payload import TrialContext, TrialPayload
    from .progress import StudyProgress
    from .resume import finished_trials, reconcile_runs, recover_stale_trials
    from .tracking import end_study_run

    s = plan.settings
    context = TrialContext(study=s.study, study_name=plan.name, budget=s.budget, seed=s.seed, dataset=s.dataset,
                           study_run=opened.study_run, cpus_per_trial=opts.cpus_per_trial,
                           gpus_per_trial=opts.gpus_per_trial, precision=s.precision)
    payload = TrialPayload(context=context, inputs=inputs)
    link = StudyLink(storage=stores.storage, study_name=plan.name, study=s.study, narrowing=plan.narrowing,
                     sampler=s.sampler, pruner=s.pruner, seed=s.seed, budget=s.budget, n_trials=s.trials,
                     n_to_run=opened.remaining, study_run=opened.study_run, _study=opened.study,
                     storage_path=stores.storage_path)
    link.progress = StudyProgress(
        name=plan.name, n_trials=s.trials, n_before=dict(Counter(t.state.name for t in finished_trials(opened.study))),
        steps_per_trial=plan.budget.steps, objectives=plan.study_def.objectives,
        directions=plan.study_def.directions, every_s=opts.progress_every_s)
    completed = False
    try:
        if opened.remaining > 0:
            log(f"study {plan.name}: {s.study} on {s.dataset} at budget {s.budget}, {opened.remaining} of {s.trials} "
                f"trials to run (sampler {s.sampler}, pruner {s.pruner}, seed {s.seed})")
            _tuner(opts, link, payload, name=plan.name, session=opened.session,
                   storage_path=stores.storage_path).fit()
            link.progress.refresh(force=True)
        # Ray returns normally after a Ctrl-C too: trials it cut off are still live in the link
        completed = not link.live and link.asked >= link.n_to_run
    finally:
        link.progress.close()
        # trials cut off by Ctrl-C or a crash are settled now (a SIGKILL leaves them to --resume)
        cut = recover_stale_trials(opened.study)
        reconcile_runs(opened.study, opened.study_run)
        if not completed:
            end_study_run(opened.study_run, "KILLED")
    if cut:
        log(f"interrupted: trials {', '.join(map(str, cut))} were cut off and will rerun on --resume")
    return completed


def _trial_name(trial) -> str:
    return f"trial_{int(trial.config['optuna_trial']):04d}"


def _trial_dirname(trial) -> str:
    return f"trial_{int(trial.config['optuna_trial']):04d}_{trial.trial_id}"


def _tuner(opts: SearchOptions, link, payload, *, name: str, session: int, storage_path: str):
    from ray import tune

    from .bridge import OptunaPruningScheduler, OptunaSearcher, TrialStarts
    from .trial import ray_trainable

    # with_parameters puts the payload (data, evaluator, embedders) in Ray's object store once;
    # every trial on every node reads it from there, never from a path
    trainable = tune.with_parameters(ray_trainable, payload=payload)
    return tune.Tuner(
        tune.with_resources(trainable, {"cpu": opts.cpus_per_trial, "gpu": opts.gpus_per_trial}),
        tune_config=tune.TuneConfig(
            search_alg=OptunaSearcher(link), scheduler=OptunaPruningScheduler(link),
            num_samples=link.n_to_run, max_concurrent_trials=opts.max_concurrent,
            # a worker process serves trial after trial: torch, MLflow and the payload load once
            reuse_actors=True,
            trial_name_creator=_trial_name, trial_dirname_creator=_trial_dirname),
        run_config=tune.RunConfig(
            callbacks=[link.progress, TrialStarts(link)],
            # one Ray experiment per driver session; the study's record is Optuna's storage
            name=f"{name}-session{session:03d}", storage_path=storage_path, verbose=opts.verbose,
            # only a lost worker raises here: a trial's own errors end it as FAIL (trial.py)
            failure_config=tune.FailureConfig(max_failures=opts.max_failures),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=1)),
    )


# --- 7. the report -----------------------------------------------------------------------------------------


def report(plan: StudyPlan, stores: Stores, opened: OpenStudy, *, completed: bool, resume_command: str,
           notes: list[str]) -> StudyOutcome:
    from .report import best_trials, trials_table, write_study_report
    from .tracking import end_study_run, log_study_artifacts, log_study_summary

    log_study_summary(opened.study_run, opened.study, plan.study_def, plan.budget)
    report_dir = stores.runs_dir / "studies" / plan.name
    _, skipped = write_study_report(opened.study, plan.study_def, report_dir)
    log_study_artifacts(opened.study_run, report_dir)
    if completed:
        end_study_run(opened.study_run, "FINISHED")
    table = trials_table(opened.study)
    return StudyOutcome(name=plan.name, storage=stores.storage, tracking_uri=stores.tracking_uri,
                        interrupted=not completed, table=table, best=best_trials(plan.study_def, table),
                        report_dir=report_dir, skipped_plots=skipped, resume_command=resume_command, notes=notes)


# --- the driver ----------------------------------------------------------------------------------------------


def run_study(opts: SearchOptions, *, log=print) -> StudyOutcome:
    """Run (or --resume) one study to its trial count; returns its tables. Raises SearchError on bad input."""
    import optuna
    import ray

    from .preflight import Placement

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    placement = Placement(cluster=opts.address is not None, address=opts.address)
    stores = resolve_stores(opts, placement)
    plan = plan_study(opts, stores)
    inputs = load_inputs(opts, plan)
    notes = start_ray(opts, stores, placement)
    try:
        for note in notes:
            log(f"note: {note}")
        opened = open_stores(plan, stores)
        for note in opened.notes:
            log(note)
        completed = run_trials(opts, plan, stores, opened, inputs, log=log)
        return report(plan, stores, opened, completed=completed, resume_command=resume_command(opts, plan.name),
                      notes=notes)
    finally:
        ray.shutdown()


def resume_command(opts: SearchOptions, name: str) -> str:
    """The command that continues this study: every store and data flag it was started with."""
    args = ["python", "-m", "search.run", "--name", name, "--resume"]
    for flag, value in (("--runs-dir", None if opts.runs_dir == DEFAULT_RUNS_DIR else opts.runs_dir),
                        ("--storage", opts.storage), ("--tracking-uri", opts.tracking_uri),
                        ("--storage-path", opts.storage_path), ("--address", opts.address),
                        ("--data-root", opts.data_root)):
        if value is not None:
            args += [flag, str(value)]
    if not opts.download:
        args.append("--no-download")
    return shlex.join(args)


# --- the command line -------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    from gan_models.config import PRECISION_NAMES  # these four are light: --help imports neither torch nor Optuna
    from gan_models.data import DATASETS

    from .budgets import BUDGETS
    from .samplers import PRUNERS, SAMPLERS

    # search.studies.STUDIES's names, here without Optuna; tests/test_cli_help.py asserts they are equal
    studies = ("gan", "dot_latent", "dot_target", "dot_embedded", "ddls", "pareto")
    p = argparse.ArgumentParser(
        prog=cli_prog("search.run"),
        description="Run a GAN hyperparameter study: Ray Tune schedules, Optuna samples and prunes, MLflow tracks.")
    p.add_argument("--study", help=f"registered study: {' | '.join(studies)} (--list-studies describes them)")
    p.add_argument("--list-studies", action="store_true", help="print the registered studies and exit")
    p.add_argument("--study-file", help="YAML {study: NAME, params: {name: value | [choices] | {low, high}}} "
                                        "narrowing or fixing the study's space")
    p.add_argument("--enqueue", dest="enqueue_file", help="YAML list of parameter mappings to try first")
    p.add_argument("--name", help="study name in Optuna and MLflow (default: the study's)")
    p.add_argument("--trials", type=int, help=f"total trials of the study (default {DEFAULTS['trials']})")
    p.add_argument("--budget", help=f"{' | '.join(BUDGETS)} (default {DEFAULTS['budget']})")
    p.add_argument("--dataset", help=f"{' | '.join(DATASETS)} (default {DEFAULTS['dataset']})")
    p.add_argument("--precision", help=f"{' | '.join(PRECISION_NAMES)}: of training and refinement (default "
                                       f"{DEFAULTS['precision']}; tf32 and bf16 use a GPU's tensor cores)")
    p.add_argument("--sampler", help=f"{' | '.join(SAMPLERS)} (default: tpe; nsga2 for pareto)")
    p.add_argument("--pruner", help=f"{' | '.join(PRUNERS)} (default {DEFAULTS['pruner']}; none for pareto)")
    p.add_argument("--seed", type=int, help="sampler and training seed (default 0)")
    p.add_argument("--cpus-per-trial", type=float, default=1.0)
    p.add_argument("--gpus-per-trial", type=float, default=0.0,
                   help="GPUs per trial; a fraction shares a GPU (0.25: four trials on one)")
    p.add_argument("--max-concurrent", type=int, help="trials at once (default: as many as resources allow)")
    p.add_argument("--max-failures", type=int, default=2,
                   help="restarts of a trial whose worker or node was lost (a trial's own error is never retried)")
    p.add_argument("--storage", help="Optuna storage URL (default sqlite:///RUNS_DIR/optuna.db)")
    p.add_argument("--storage-path", help="Ray checkpoints: a folder, or with --address s3://, gs:// or file:// "
                                          "on shared storage (default RUNS_DIR/ray)")
    p.add_argument("--tracking-uri", help="MLflow tracking URI (default $MLFLOW_TRACKING_URI, else "
                                          "sqlite:///RUNS_DIR/mlflow.db; with --address an http(s):// server that "
                                          "proxies artifacts)")
    p.add_argument("--address", help="join this Ray cluster (e.g. auto); default: start Ray on this machine")
    p.add_argument("--num-cpus", type=int, help="CPUs of a locally started Ray (default: all)")
    p.add_argument("--num-gpus", type=int, help="GPUs of a locally started Ray (default: those CUDA shows)")
    p.add_argument("--data-root", help="dataset folder (torchvision layout), read by the driver only; "
                                       "default $GAN_DATA_ROOT, else ~/.cache/gan-refine-search/data")
    p.add_argument("--no-download", dest="download", action="store_false",
                   help="fail instead of downloading the dataset when it is absent")
    p.add_argument("--runs-dir", default=DEFAULT_RUNS_DIR, help="folder of the default stores (default runs)")
    p.add_argument("--resume", action="store_true", help="continue the study named by --name/--study")
    p.add_argument("--verbose", action="store_true",
                   help="also Ray Tune's status tables and the trials' own logs (default: one status line and "
                        "one line per finished trial)")
    p.add_argument("--quiet", action="store_true", help=argparse.SUPPRESS)  # the default now; kept for old scripts
    p.add_argument("--progress-every", dest="progress_every_s", type=float, default=30.0,
                   help="seconds between status lines when stdout is not a terminal (default 30)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.list_studies:
        from .studies import list_studies

        print(list_studies())
        return 0
    opts = SearchOptions(**{k: v for k, v in vars(args).items() if k not in ("list_studies", "quiet", "verbose")},
                         verbose=1 if args.verbose and not args.quiet else 0)
    if not opts.verbose:  # Ray Tune's legacy reporter honours verbose=0; the new one prints its tables anyway
        os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    # Optuna's storage is the study's record; Ray's experiment snapshots after each checkpoint are a
    # convenience, and their "snapshotting too often" warning is noise for this CLI
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    try:
        out = run_study(opts)
    except SearchError as exc:
        raise SystemExit(f"error: {exc}") from None
    print_outcome(out)
    return exit_status(out)


def exit_status(out: StudyOutcome) -> int:
    """130 for an interrupted study (as a shell reports Ctrl-C), 1 when no trial completed, else 0."""
    if out.interrupted:
        return 130
    return 0 if out.n_complete else 1


def failure_reasons(table) -> Counter:
    if table.empty or "fail_reason" not in table.columns:
        return Counter()
    failed = table[(table["state"] == "FAIL") & table["fail_reason"].notna()]
    return Counter(str(r) for r in failed["fail_reason"])


def print_outcome(out: StudyOutcome) -> None:
    import pandas as pd

    from .packing import gpu_sharing, sharing_lines
    from .tracking import ui_command

    counts = out.table["state"].value_counts().to_dict() if not out.table.empty else {}
    print(f"\nstudy {out.name}: " + ", ".join(f"{n} {s.lower()}" for s, n in sorted(counts.items())))
    reasons = failure_reasons(out.table)
    if reasons:
        print("failures by reason:")
        for reason, n in reasons.most_common():
            short = reason if len(reason) <= 100 else reason[:97] + "..."
            print(f"  {n} x {short}")
        print(f"first failure, in full: {next(iter(reasons))}")
    if not out.best.empty:
        with pd.option_context("display.width", 200, "display.max_columns", 30,
                               "display.float_format", "{:.4g}".format):
            print("best trials:\n" + out.best.to_string(index=False))
    for line in sharing_lines(gpu_sharing(out.table.to_dict("records"))):
        print(line)
    for name, why in out.skipped_plots.items():
        print(f"note: plot {name} not drawn: {why}")
    print(f"tables and plots: {out.report_dir}")
    print(f"Optuna storage: {out.storage}")
    print(f"MLflow UI: {ui_command(out.tracking_uri)}")
    if out.interrupted:
        print(f"interrupted; continue with: {out.resume_command}")
    elif not out.n_complete:
        print(f"error: no trial of study {out.name} completed; see the failure reasons above", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
