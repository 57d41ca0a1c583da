"""`python -m search.run --study NAME`: one study, scheduled by Ray Tune, sampled and pruned by
Optuna, tracked in MLflow. With no flags it runs on this machine: a local Ray runtime, Optuna in
SQLite (runs/optuna.db), MLflow in SQLite (runs/mlflow.db, artifacts in runs/mlartifacts/), Ray's
trial folders in runs/ray/. ``--address``, ``--storage``, ``--storage-path`` and
``--tracking-uri`` point the same command at a cluster.

Checks that need nothing running come first (names, files, the tracking store, whether the
study exists), then Ray starts and the requested resources are checked; only then is anything
written, so bad input never leaves a half-created study behind.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

DEFAULT_RUNS_DIR = "runs"
SETTINGS_ATTR = "search_settings"


class SearchError(RuntimeError):
    """Bad input or an unusable environment; the message is one line for the CLI."""


@dataclass(frozen=True)
class SearchOptions:
    study: str | None = None  # registry name; on --resume taken from the stored study
    name: str | None = None  # Optuna study / MLflow experiment name; default: the study's name
    trials: int | None = None  # the study's total (default 20; --resume may raise it)
    budget: str | None = None
    sampler: str | None = None
    pruner: str | None = None
    seed: int | None = None
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
    data_root: str | None = None
    resume: bool = False
    runs_dir: str = DEFAULT_RUNS_DIR
    verbose: int = 1


# settings that define a study: stored with it at creation, reused (and checked) on --resume
DEFAULTS = {"budget": "small", "pruner": "median", "seed": 0, "trials": 20}


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


def _absolute_sqlite(url: str) -> str:
    """sqlite:///relative.db -> an absolute path, so Ray workers (other cwd) see the same file."""
    if url.startswith("sqlite:///") and not url.startswith("sqlite:////"):
        return "sqlite:///" + str(Path(url[len("sqlite:///"):]).resolve())
    return url


def _settings(opts: SearchOptions, stored: Mapping[str, Any] | None) -> dict[str, Any]:
    """The study's defining settings: the stored ones on --resume (a conflicting flag is an error),
    else the flags with their defaults. ``trials`` may be raised on --resume."""
    from .studies import get_study

    given = {"study": opts.study, "budget": opts.budget, "sampler": opts.sampler, "pruner": opts.pruner,
             "seed": opts.seed, "trials": opts.trials}
    if stored is not None:
        for key, value in given.items():
            if key != "trials" and value is not None and value != stored[key]:
                raise SearchError(f"--{key} {value} conflicts with the resumed study's {key} {stored[key]!r}; "
                                  f"leave it out to continue the study as it was created")
        return {**stored, "trials": opts.trials or stored["trials"]}
    if opts.study is None:
        raise SearchError("--study is required (see --list-studies)")
    study_def = get_study(opts.study)
    return {**DEFAULTS, **{k: v for k, v in given.items() if v is not None},
            "sampler": opts.sampler or study_def.default_sampler,
            "pruner": opts.pruner or (DEFAULTS["pruner"] if study_def.prunable else "none")}


def _validate_names(s: Mapping[str, Any]) -> None:
    from .budgets import get_budget
    from .samplers import PRUNERS, SAMPLERS
    from .studies import get_study

    study_def = get_study(s["study"])
    get_budget(s["budget"])
    if s["sampler"] not in SAMPLERS:
        raise SearchError(f"unknown sampler {s['sampler']!r}; valid choices: {', '.join(SAMPLERS)}")
    if s["pruner"] not in PRUNERS:
        raise SearchError(f"unknown pruner {s['pruner']!r}; valid choices: {', '.join(PRUNERS)}")
    if study_def.multi_objective and s["pruner"] != "none":
        raise SearchError(f"study {study_def.name} has {len(study_def.objectives)} objectives and Optuna cannot "
                          f"prune multi-objective studies; use --pruner none")
    if not isinstance(s["trials"], int) or s["trials"] <= 0:
        raise SearchError(f"--trials must be a positive integer, got {s['trials']!r}")


def _lookup(fn, arg):
    """Registry lookups raise ValueError listing the valid names; at the CLI that is bad input."""
    try:
        return fn(arg)
    except ValueError as exc:
        raise SearchError(str(exc)) from None


def _read_enqueue_file(path: str, study_def) -> list[dict[str, Any]]:
    import yaml

    from .space import SpaceError, narrow

    p = Path(path)
    if not p.is_file():
        raise SearchError(f"enqueue file not found: {p}")
    try:
        data = yaml.safe_load(p.read_text())
    except yaml.YAMLError as exc:
        raise SearchError(f"enqueue file {p} is not valid YAML: {str(exc).splitlines()[0]}") from None
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


def _start_ray(opts: SearchOptions):
    import logging

    import ray

    try:
        if opts.address:
            ray.init(address=opts.address, logging_level=logging.WARNING)
        else:
            ray.init(num_cpus=opts.num_cpus, include_dashboard=False, logging_level=logging.WARNING)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise SearchError(f"cannot start or join Ray ({opts.address or 'local'}): {str(exc).splitlines()[0]}") from None
    res = ray.cluster_resources()
    gpus, cpus = float(res.get("GPU", 0.0)), float(res.get("CPU", 0.0))
    problem = None
    if opts.gpus_per_trial > gpus:
        problem = (f"--gpus-per-trial {opts.gpus_per_trial:g} asks for more GPUs than the Ray cluster has "
                   f"({gpus:g}); lower it (fractions like 0.5 share a GPU) or add GPU nodes")
    elif opts.cpus_per_trial > cpus:
        problem = f"--cpus-per-trial {opts.cpus_per_trial:g} asks for more CPUs than the Ray cluster has ({cpus:g})"
    if problem is not None:
        ray.shutdown()
        raise SearchError(problem)
    return ray


def _trial_name(trial) -> str:
    return f"trial_{int(trial.config['optuna_trial']):04d}"


def _trial_dirname(trial) -> str:
    return f"trial_{int(trial.config['optuna_trial']):04d}_{trial.trial_id}"


def run_study(opts: SearchOptions, *, log=print) -> StudyOutcome:
    """Run (or --resume) one study to its trial count; returns its tables. Raises SearchError on bad input."""
    import optuna

    from .budgets import get_budget
    from .resume import live_driver
    from .space import SpaceError, narrowing_to_jsonable, read_study_file
    from .studies import get_study
    from .tracking import TrackingError, check_tracking_uri, default_tracking_uri

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    runs_dir = Path(opts.runs_dir).resolve()
    storage = _absolute_sqlite(opts.storage or f"sqlite:///{runs_dir / 'optuna.db'}")
    tracking_uri = _absolute_sqlite(opts.tracking_uri or default_tracking_uri(runs_dir))
    storage_path = opts.storage_path or str(runs_dir / "ray")
    if "://" not in storage_path:
        storage_path = str(Path(storage_path).resolve())
    if opts.gpus_per_trial < 0 or opts.cpus_per_trial <= 0:
        raise SearchError("--cpus-per-trial must be > 0 and --gpus-per-trial >= 0")
    if opts.max_concurrent is not None and opts.max_concurrent <= 0:
        raise SearchError("--max-concurrent must be a positive integer")

    # -- 1. names, files and the existing study: nothing written yet ----------------------------------
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
    if storage.startswith("sqlite:///"):
        Path(storage[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
    try:
        existing = optuna.study.get_all_study_names(storage)
    except Exception as exc:  # noqa: BLE001 - any storage failure is the user's URL
        raise SearchError(f"cannot open the Optuna storage {storage}: {str(exc).splitlines()[0]}") from None
    stored_settings = None
    if opts.resume:
        if name not in existing:
            raise SearchError(f"cannot --resume study {name!r}: it does not exist in {storage} "
                              f"(existing: {', '.join(existing) or 'none'})")
        stored = optuna.load_study(study_name=name, storage=storage)
        stored_settings = stored.user_attrs.get(SETTINGS_ATTR)
        if stored_settings is None:
            raise SearchError(f"study {name!r} in {storage} was not created by search.run; cannot resume it")
        other = live_driver(stored)
        if other is not None:
            raise SearchError(f"study {name!r} is being run by process {other['pid']} on this host; stop it first")
    elif name in existing:
        raise SearchError(f"study {name!r} already exists in {storage}; continue it with --resume "
                          f"or start another with --name")
    settings = _settings(opts, stored_settings)
    _lookup(_validate_names, settings)
    study_def = get_study(settings["study"])
    budget = get_budget(settings["budget"])
    try:
        narrowing = study_def.narrowing(study_file["params"] if study_file else settings.get("narrowing", {}))
    except SpaceError as exc:
        raise SearchError(f"study file {opts.study_file}: {exc}") from None
    if study_file is not None and stored_settings is not None and \
            narrowing_to_jsonable(narrowing) != stored_settings.get("narrowing", {}):
        raise SearchError("--study-file differs from the one the resumed study was created with")
    enqueued = _read_enqueue_file(opts.enqueue_file, study_def) if opts.enqueue_file else []
    try:
        check_tracking_uri(tracking_uri)
    except TrackingError as exc:
        raise SearchError(str(exc)) from None

    # -- 2. Ray and its resources ------------------------------------------------------------------------
    ray = _start_ray(opts)
    try:
        return _run(opts, name=name, storage=storage, storage_path=storage_path, tracking_uri=tracking_uri,
                    settings=settings, study_def=study_def, budget=budget, narrowing=narrowing,
                    enqueued=enqueued, runs_dir=runs_dir, log=log)
    finally:
        ray.shutdown()


def _run(opts, *, name, storage, storage_path, tracking_uri, settings, study_def, budget, narrowing,
         enqueued, runs_dir, log) -> StudyOutcome:
    import optuna

    from .bridge import StudyLink
    from .report import best_trials, trials_table, write_study_report
    from .resume import DRIVER_ATTR, driver_record, finished_trials, reconcile_runs, recover_stale_trials
    from .samplers import make_pruner, make_sampler
    from .space import narrowing_to_jsonable
    from .tracking import TrackingError, end_study_run, log_study_artifacts, open_study_run
    from .trial import TrialContext

    # -- 3. the study's parent run, the study, and what a dead driver left behind ------------------------------
    try:  # MLflow first: a parent run left from an earlier study of this name stops us before Optuna is written
        study_run = open_study_run(tracking_uri, name, resume=opts.resume, tags={
            "study": study_def.name, "budget": budget.name, "sampler": settings["sampler"],
            "pruner": settings["pruner"], "optuna_storage": storage, "seed": str(settings["seed"])})
    except TrackingError as exc:
        raise SearchError(str(exc)) from None
    sampler = make_sampler(settings["sampler"], seed=settings["seed"], n_trials=settings["trials"])
    pruner = make_pruner(settings["pruner"], budget)
    if opts.resume:
        study = optuna.load_study(study_name=name, storage=storage, sampler=sampler, pruner=pruner)
    else:
        study = optuna.create_study(study_name=name, storage=storage, sampler=sampler, pruner=pruner,
                                    directions=list(study_def.directions))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names(list(study_def.objectives))
        settings = {**settings, "narrowing": narrowing_to_jsonable(narrowing)}
    session = int(study.user_attrs.get("sessions", 0)) + 1
    study.set_user_attr(SETTINGS_ATTR, settings)
    study.set_user_attr("sessions", session)
    study.set_user_attr(DRIVER_ATTR, driver_record())
    stale = recover_stale_trials(study)
    if stale:
        log(f"resume: trials {', '.join(map(str, stale))} were interrupted; marked FAIL and enqueued again")
    for params in enqueued:
        study.enqueue_trial(params)
    fixed = reconcile_runs(study, study_run)
    if fixed:
        log("resume: closed MLflow runs left running: " + ", ".join(f"{n} {s}" for s, n in fixed.items()))

    remaining = settings["trials"] - len(finished_trials(study))
    data_root = str(Path(opts.data_root).resolve()) if opts.data_root else None
    context = TrialContext(
        study=study_def.name, study_name=name, budget=budget.name, seed=settings["seed"],
        tracking_uri=tracking_uri, experiment_id=study_run.experiment_id, parent_run_id=study_run.parent_run_id,
        data_root=data_root, cpus_per_trial=opts.cpus_per_trial, use_gpu=opts.gpus_per_trial > 0)
    link = StudyLink(storage=storage, study_name=name, study=study_def.name, narrowing=narrowing,
                     sampler=settings["sampler"], pruner=settings["pruner"], seed=settings["seed"],
                     budget=budget.name, n_trials=settings["trials"], n_to_run=max(0, remaining),
                     study_run=study_run, context=context.to_dict(), _study=study)

    # -- 4. the trials ---------------------------------------------------------------------------------------
    completed_normally = False
    try:
        if remaining > 0:
            log(f"study {name}: {study_def.name} at budget {budget.name}, {remaining} of {settings['trials']} "
                f"trials to run (sampler {settings['sampler']}, pruner {settings['pruner']}, seed {settings['seed']})")
            _tuner(opts, link, context, name=name, session=session, storage_path=storage_path).fit()
        # Ray returns normally after a Ctrl-C too: trials it cut off are still live in the link
        completed_normally = not link.live and link.asked >= link.n_to_run
    finally:
        # trials cut off by Ctrl-C or a crash are settled now (a SIGKILL leaves them to --resume)
        cut = recover_stale_trials(study)
        reconcile_runs(study, study_run)
        if not completed_normally:
            end_study_run(study_run, "KILLED")
    if cut:
        log(f"interrupted: trials {', '.join(map(str, cut))} were cut off and will rerun on --resume")

    # -- 5. the study's tables and pictures ---------------------------------------------------------------------
    report_dir = runs_dir / "studies" / name
    paths, skipped = write_study_report(study, study_def, report_dir)
    log_study_artifacts(study_run, report_dir)
    if completed_normally:
        end_study_run(study_run, "FINISHED")
    table = trials_table(study)
    return StudyOutcome(name=name, storage=storage, tracking_uri=tracking_uri, interrupted=not completed_normally,
                        table=table, best=best_trials(study_def, table), report_dir=report_dir,
                        skipped_plots=skipped)


def _tuner(opts: SearchOptions, link, context, *, name: str, session: int, storage_path: str):
    from ray import tune

    from .bridge import OptunaPruningScheduler, OptunaSearcher
    from .trial import ray_trainable

    return tune.Tuner(
        tune.with_resources(ray_trainable, {"cpu": opts.cpus_per_trial, "gpu": opts.gpus_per_trial}),
        param_space={"context": context.to_dict()},
        tune_config=tune.TuneConfig(
            search_alg=OptunaSearcher(link), scheduler=OptunaPruningScheduler(link),
            num_samples=link.n_to_run, max_concurrent_trials=opts.max_concurrent,
            # a worker process serves trial after trial: torch, MLflow and the evaluator load once
            reuse_actors=True,
            trial_name_creator=_trial_name, trial_dirname_creator=_trial_dirname),
        run_config=tune.RunConfig(
            # one Ray experiment per driver session; the study's record is Optuna's storage
            name=f"{name}-session{session:03d}", storage_path=storage_path, verbose=opts.verbose,
            failure_config=tune.FailureConfig(max_failures=opts.max_failures),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=1)),
    )


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m search.run",
        description="Run a GAN hyperparameter study: Ray Tune schedules, Optuna samples and prunes, MLflow tracks.")
    p.add_argument("--study", help="registered study (see --list-studies)")
    p.add_argument("--list-studies", action="store_true", help="print the registered studies and exit")
    p.add_argument("--study-file", help="YAML {study: NAME, params: {name: value | [choices] | {low, high}}} "
                                        "narrowing or fixing the study's space")
    p.add_argument("--enqueue", dest="enqueue_file", help="YAML list of parameter mappings to try first")
    p.add_argument("--name", help="study name in Optuna and MLflow (default: the study's)")
    p.add_argument("--trials", type=int, help=f"total trials of the study (default {DEFAULTS['trials']})")
    p.add_argument("--budget", help=f"smoke | small | full (default {DEFAULTS['budget']})")
    p.add_argument("--sampler", help="tpe | random | nsga2 (default: tpe; nsga2 for pareto)")
    p.add_argument("--pruner", help=f"median | percentile | hyperband | none (default {DEFAULTS['pruner']}; "
                                    f"none for pareto)")
    p.add_argument("--seed", type=int, help="sampler and training seed (default 0)")
    p.add_argument("--cpus-per-trial", type=float, default=1.0)
    p.add_argument("--gpus-per-trial", type=float, default=0.0, help="fractions share a GPU")
    p.add_argument("--max-concurrent", type=int, help="trials at once (default: as many as resources allow)")
    p.add_argument("--max-failures", type=int, default=2, help="restarts of a trial whose worker died")
    p.add_argument("--storage", help="Optuna storage URL (default sqlite:///runs/optuna.db)")
    p.add_argument("--storage-path", help="Ray results: a folder, a shared filesystem or s3:// (default runs/ray)")
    p.add_argument("--tracking-uri", help="MLflow tracking URI (default sqlite:///runs/mlflow.db)")
    p.add_argument("--address", help="join this Ray cluster (e.g. auto); default: start Ray locally")
    p.add_argument("--num-cpus", type=int, help="CPUs of a locally started Ray (default: all)")
    p.add_argument("--data-root", help="MNIST folder (torchvision layout); default $GAN_DATA_ROOT")
    p.add_argument("--runs-dir", default=DEFAULT_RUNS_DIR, help="folder of the default stores (default runs)")
    p.add_argument("--resume", action="store_true", help="continue the study named by --name/--study")
    p.add_argument("--quiet", action="store_true", help="no Ray Tune progress tables")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.list_studies:
        from .studies import list_studies

        print(list_studies())
        return 0
    opts = SearchOptions(**{k: v for k, v in vars(args).items() if k not in ("list_studies", "quiet")},
                         verbose=0 if args.quiet else 1)
    # Optuna's storage is the study's record; Ray's experiment snapshots after each checkpoint are a
    # convenience, and their "snapshotting too often" warning is noise for this CLI
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    try:
        out = run_study(opts)
    except SearchError as exc:
        raise SystemExit(f"error: {exc}") from None
    _print_outcome(out)
    return 130 if out.interrupted else 0


def _print_outcome(out: StudyOutcome) -> None:
    import pandas as pd

    from .tracking import ui_command

    counts = out.table["state"].value_counts().to_dict() if not out.table.empty else {}
    print(f"\nstudy {out.name}: " + ", ".join(f"{n} {s.lower()}" for s, n in sorted(counts.items())))
    if not out.best.empty:
        with pd.option_context("display.width", 200, "display.max_columns", 30, "display.float_format", "{:.4g}".format):
            print("best trials:\n" + out.best.to_string(index=False))
    for name, reason in out.skipped_plots.items():
        print(f"note: plot {name} not drawn: {reason}")
    print(f"tables and plots: {out.report_dir}")
    print(f"Optuna storage: {out.storage}")
    print(f"MLflow UI: {ui_command(out.tracking_uri)}")
    if out.interrupted:
        print(f"interrupted; continue with: python -m search.run --name {out.name} --resume")


if __name__ == "__main__":
    sys.exit(main())
