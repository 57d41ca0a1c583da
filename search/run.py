"""`python -m search.run --study NAME`: one study, scheduled by Ray Tune, sampled and pruned by
Optuna, tracked in MLflow. With no flags it runs on this machine: a local Ray runtime, Optuna in
SQLite (runs/optuna.db), MLflow in SQLite (runs/mlflow.db, artifacts in runs/mlartifacts/), Ray's
trial folders in runs/ray/, a budget that fits the hardware it finds (search.hardware). ``--address``
joins a cluster: its nodes share no disk, so it needs ``--storage-path`` on shared storage and
``--tracking-uri`` on an MLflow server (search.preflight).

The driver is a sequence of named steps (``run_study``):

1. ``resolve_stores``   where the study's record, its checkpoints and its runs live (search.stores);
2. ``plan_study``       the study's settings, from the flags or stored with it on --resume (search.settings);
3. ``load_inputs``      the data, the evaluator and the embedders, read once here for every trial (search.payload);
4. ``size_study``      this machine measured: the trials that fit --time-limit, the estimate, the disk space;
5. ``start_ray``        start or join Ray, check resources and the stores from the worker nodes (search.preflight);
6. ``open_stores``      the MLflow parent run and the Optuna study: the first write of all (search.stores);
7. ``run_trials``       Ray Tune runs the trials; the Optuna bridge samples, prunes and records (search.tuner);
8. ``confirm``          with --confirm, the best configurations again with more seeds (search.confirm);
9. ``report``           tables and plots, the outcome the CLI prints (search.report).

Steps 1-5 write nothing: bad input never leaves a half-created study (or an empty database).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
from collections import Counter
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

# light: the heavy modules are imported by the steps that use them
from gan_models.cli import OneLineArgumentParser, cli_prog

from .errors import DiskFull, SearchError, is_disk_full, one_line
from .options import DEFAULT_CONFIRM_TOP, DEFAULT_RUNS_DIR, DEFAULT_TIME_LIMIT_MIN, SearchOptions

if TYPE_CHECKING:
    from .hardware import Hardware
    from .payload import TrialInputs
    from .preflight import Placement
    from .report import StudyOutcome
    from .settings import StudyPlan
    from .stores import OpenStudy, Stores

TIME_LIMIT_HEADROOM = 0.9  # a study sized to --time-limit is sized to this share of it
EXIT_SIGNALLED = {signal.SIGINT: 130, signal.SIGTERM: 143}  # as a shell reports a process ended by the signal


# --- the driver ----------------------------------------------------------------------------------------------


def run_study(opts: SearchOptions, *, log=print) -> StudyOutcome:
    """Run (or --resume) one study to its trial count; returns its tables. Raises SearchError on bad input."""
    import optuna

    from .hardware import local_hardware
    from .payload import load_inputs
    from .preflight import Placement
    from .settings import plan_study
    from .stores import resolve_stores

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    placement = Placement(cluster=opts.cluster, address=opts.address)
    hardware = local_hardware(cluster=opts.cluster, num_gpus=opts.num_gpus, num_cpus=opts.num_cpus)
    stores = resolve_stores(opts, placement)
    plan = plan_study(opts, stores.storage, hardware)
    inputs = load_inputs(plan, data_root=opts.data_root, download=opts.download)
    plan, gpus_per_trial = size_study(opts, plan, stores, inputs, hardware, log=log)
    with ray_session(opts):
        gpus_per_trial, ray_notes = _check_ray(opts, stores, placement, gpus_per_trial)
        for note in ray_notes:
            log(f"note: {note}")
        opened = _open(plan, stores)
        for note in opened.notes:
            log(note)
        try:
            completed = _trials(opts, plan, stores, opened, inputs, gpus_per_trial, log=log)
        except DiskFull as exc:  # a trial could not write: say where, what the rest needs, and how to go on
            need = disk_need(plan, stores, _remaining_trials(opts, plan, stores))
            raise DiskFull(disk_full_line(opts, str(exc), need=need)) from None
        confirmed = confirm(opts, plan, stores, opened, inputs, gpus_per_trial, log=log) if completed else None
        from .report import report
        from .resume import resume_command

        return report(plan, stores, opened, completed=completed, resume_command=resume_command(opts, plan.name),
                      notes=ray_notes, confirmed=confirmed)


def size_study(opts: SearchOptions, plan: StudyPlan, stores: Stores, inputs: TrialInputs, hardware: Hardware, *,
               log) -> tuple[StudyPlan, float]:
    """Measure this machine, say what the study should cost here (time, disk) before anything starts, and
    fit a new study's trial count to --time-limit when --trials is not given. Returns the plan and the GPU
    share of a trial (--gpus-per-trial, else a quarter GPU where there are GPUs; on a cluster: once joined)."""
    from .hardware import clock, estimate_s, fit_trials, gpus_per_trial, measure_speed, trials_at_once
    from .settings import DEFAULTS

    share = gpus_per_trial(opts.gpus_per_trial, gpus_available=hardware.gpus > 0)
    estimate_line = ""
    if not hardware.cluster:
        at_once = trials_at_once(hardware, cpus_per_trial=opts.cpus_per_trial, gpus_per_trial=share,
                                 max_concurrent=opts.max_concurrent)
        # a trial trains on CUDA when it gets a GPU share and CUDA is there (a logical --num-gpus: on the CPU)
        import torch

        device = "cuda" if share > 0 and hardware.gpus > 0 and torch.cuda.is_available() else "cpu"
        speed = measure_speed(inputs, {**plan.study.specs, **plan.narrowing}, threads=int(opts.cpus_per_trial),
                              device=device, at_once=at_once)

        def estimate(trials: int) -> float:
            return estimate_s(plan.study, plan.budget, trials=trials, pruner=plan.settings.pruner, at_once=at_once,
                              speed=speed, startup_trials=plan.budget.prune_startup_trials)

        fitted = ""
        if opts.trials is None and not plan.resume:
            # 10% headroom: the estimate measures seconds of training, the study's pace varies around it
            limit_s = TIME_LIMIT_HEADROOM * 60 * opts.time_limit_min
            plan = plan.with_trials(fit_trials(estimate, limit_s=limit_s, most=DEFAULTS["trials"]))
            fitted = f", the trials that fit in --time-limit {opts.time_limit_min:g} min (--trials to choose)"
        remaining = _remaining_trials(opts, plan, stores)
        if remaining:
            estimate_line = (
                f"estimate: {clock(estimate(remaining))} for {remaining} trials{fitted}, {at_once} at once "
                f"({speed.images_per_s:,.0f} training images/s per trial measured on this machine's {device}, "
                f"{plan.budget.images:,} images per trial, pruner {plan.settings.pruner})")
    for line in (*(f"note: {n}" for n in plan.notes), estimate_line):  # what was chosen here, then its cost
        if line:
            log(line)
    _check_disk(plan, stores, _remaining_trials(opts, plan, stores))
    return plan, share


def _check_disk(plan: StudyPlan, stores: Stores, trials: int) -> None:
    from .preflight import PreflightError, check_disk_space

    need = disk_need(plan, stores, trials)
    if need is not None:
        try:
            check_disk_space(stores.runs_dir, need, what=f"the {trials} trials' checkpoints and artifacts")
        except PreflightError as exc:
            raise SearchError(str(exc)) from None


def _remaining_trials(opts: SearchOptions, plan: StudyPlan, stores: Stores) -> int:
    """Trials still to run: the study's not yet finished, and the --confirm reruns."""
    finished = 0
    if plan.resume:
        import optuna

        from .resume import finished_trials

        finished = len(finished_trials(optuna.load_study(study_name=plan.name, storage=stores.storage)))
    return max(0, plan.settings.trials - finished) + opts.confirm * opts.confirm_top


def disk_need(plan: StudyPlan, stores: Stores, trials: int) -> int | None:
    """Bytes ``trials`` trials leave under --runs-dir (search.preflight.study_disk_bytes); None when the
    checkpoints go to shared storage (a cluster's bucket), not to this disk."""
    from .preflight import checkpoint_bytes, study_disk_bytes

    if "://" in stores.storage_path:
        return None
    space = {**plan.study.specs, **plan.narrowing}
    architectures = tuple(space["architecture"].choices)  # type: ignore[union-attr]  # a Categorical
    return study_disk_bytes(trials=trials, checkpoint=checkpoint_bytes(architectures, ema=True),
                            reports=len(plan.budget.marks))


@contextlib.contextmanager
def ray_session(opts: SearchOptions) -> Iterator[None]:
    """Start or join Ray for the study's lifetime, and shut it down after. From here on SIGTERM ends the
    study as Ctrl-C does (Ray's own SIGTERM handler would dump a C++ stack and leave no resume hint)."""
    import ray

    from .preflight import PreflightError, start_ray

    try:
        start_ray(address=opts.address, num_cpus=opts.num_cpus, num_gpus=opts.num_gpus, verbose=opts.verbose > 0)
    except PreflightError as exc:
        raise SearchError(str(exc)) from None
    saved = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, saved or signal.SIG_DFL)
        ray.shutdown()


_terminated: list[int] = []  # set by the SIGTERM handler: the study ends as after Ctrl-C, with exit 143


def _on_sigterm(signum: int, frame: object) -> None:
    """SIGTERM (a batch scheduler, ``timeout``) stops the study as Ctrl-C does: through Ray Tune's own
    SIGINT handler while trials run (they stop and are kept for --resume), else as an interrupt."""
    _terminated.append(signum)
    os.kill(os.getpid(), signal.SIGINT)


def _check_ray(opts: SearchOptions, stores: Stores, placement: Placement, share: float) -> tuple[float, list[str]]:
    """The GPU share of a trial on a cluster (known once joined), and Ray's notes on the study's resources."""
    from .hardware import gpus_per_trial
    from .preflight import PreflightError, check_ray, cluster_has_gpus

    try:
        if placement.cluster:
            share = gpus_per_trial(opts.gpus_per_trial, gpus_available=cluster_has_gpus())
        notes = check_ray(stores.storage_path, stores.tracking_uri, cpus_per_trial=opts.cpus_per_trial,
                          gpus_per_trial=share, placement=placement)
    except PreflightError as exc:
        raise SearchError(str(exc)) from None
    return share, notes


def _open(plan: StudyPlan, stores: Stores) -> OpenStudy:
    from .stores import open_stores

    return open_stores(plan, stores)


def _trials(opts: SearchOptions, plan: StudyPlan, stores: Stores, opened: OpenStudy, inputs: TrialInputs,
            gpus_per_trial: float, *, log) -> bool:
    from .tuner import run_trials

    return run_trials(plan, stores, opened, inputs, cpus_per_trial=opts.cpus_per_trial,
                      gpus_per_trial=gpus_per_trial, max_concurrent=opts.max_concurrent,
                      max_failures=opts.max_failures, verbose=opts.verbose, progress_every_s=opts.progress_every_s,
                      log=log)


def confirm(opts: SearchOptions, plan: StudyPlan, stores: Stores, opened: OpenStudy, inputs: TrialInputs,
            gpus_per_trial: float, *, log) -> Any:
    """--confirm K: the best configurations retrained with K more seeds (search.confirm); their table, or None."""
    if not opts.confirm:
        return None
    from .confirm import confirmed_table, log_confirmed, open_confirmations

    confirmations = open_confirmations(plan, stores, opened, k=opts.confirm, top=opts.confirm_top)
    if confirmations is None:
        log("note: --confirm: no complete trial to confirm")
        return None
    cplan, opened_c = confirmations
    if opened_c.remaining:
        top = cplan.settings.trials // opts.confirm
        log(f"confirm: the best {'configuration' if top == 1 else f'{top} configurations'} with {opts.confirm} "
            f"more seed{'s' if opts.confirm > 1 else ''} each")
        if not _trials(opts, cplan, stores, opened_c, inputs, gpus_per_trial, log=log):
            return None
    from .tracking import end_study_run

    end_study_run(opened_c.study_run, "FINISHED")
    table = confirmed_table(opened.study, opened_c.study, plan, opts.confirm_top)
    log_confirmed(opened.study_run, table)
    return table


# --- the command line -------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    # light modules: --help imports neither torch nor Optuna
    from gan_models.config import PRECISION_NAMES
    from gan_models.data import DATASETS

    from .budgets import BUDGETS
    from .samplers import PRUNERS, SAMPLERS
    from .settings import DEFAULTS
    from .studies import STUDIES

    p = OneLineArgumentParser(
        prog=cli_prog("search.run"),
        description="Run a GAN hyperparameter study: Ray Tune schedules, Optuna samples and prunes, MLflow tracks.")
    p.add_argument("--study", help=f"registered study: {' | '.join(STUDIES)} (--list-studies describes them)")
    p.add_argument("--list-studies", action="store_true", help="print the registered studies and exit")
    p.add_argument("--study-file", help="YAML {study: NAME, params: {name: value | [choices] | {low, high}}} "
                                        "narrowing or fixing the study's space")
    p.add_argument("--enqueue", dest="enqueue_file", help="YAML list of parameter mappings to try first")
    p.add_argument("--no-recipes", dest="recipes", action="store_false",
                   help="start from the sampler alone (default: the known-good recipes are a new study's first "
                        "trials, search.recipes)")
    p.add_argument("--name", help="study name in Optuna and MLflow (default: the study's)")
    p.add_argument("--trials", type=int, help=f"total trials of the study (default: on this machine, as many as fit "
                                              f"--time-limit, at most {DEFAULTS['trials']}; on a cluster "
                                              f"{DEFAULTS['trials']})")
    p.add_argument("--time-limit", dest="time_limit_min", type=float, default=DEFAULT_TIME_LIMIT_MIN, metavar="MIN",
                   help=f"without --trials: the minutes the study should take here, by the estimate printed before "
                        f"its first trial (default {DEFAULT_TIME_LIMIT_MIN:g})")
    p.add_argument("--budget", help=f"{' | '.join(BUDGETS)} (default: full where there are GPUs, else small)")
    p.add_argument("--dataset", help=f"{' | '.join(DATASETS)} (default {DEFAULTS['dataset']})")
    p.add_argument("--precision", help=f"{' | '.join(PRECISION_NAMES)}: of training and refinement (default "
                                       f"{DEFAULTS['precision']}; tf32 and bf16 use a GPU's tensor cores)")
    p.add_argument("--sampler", help=f"{' | '.join(SAMPLERS)} (default: tpe; nsga2 for pareto)")
    p.add_argument("--pruner", help=f"{' | '.join(PRUNERS)} (default {DEFAULTS['pruner']}, successive halving; "
                                    f"none for pareto)")
    p.add_argument("--seed", type=int, help="sampler and training seed (default 0)")
    p.add_argument("--confirm", type=int, default=0, metavar="K",
                   help="retrain the best configurations with K more seeds; report mean ± sd of every score")
    p.add_argument("--confirm-top", type=int, default=DEFAULT_CONFIRM_TOP, metavar="N",
                   help=f"how many best configurations --confirm retrains (default {DEFAULT_CONFIRM_TOP})")
    _resource_flags(p)
    _store_and_output_flags(p)
    return p


def _resource_flags(p: argparse.ArgumentParser) -> None:
    """Where and with what the trials run."""
    p.add_argument("--cpus-per-trial", type=float, default=1.0)
    p.add_argument("--gpus-per-trial", type=float,
                   help="GPUs per trial; a fraction shares a GPU (default 0.25 where there are GPUs, else 0)")
    p.add_argument("--max-concurrent", type=int, help="trials at once (default: as many as resources allow)")
    p.add_argument("--max-failures", type=int, default=2,
                   help="restarts of a trial whose worker or node was lost (a trial's own error is never retried)")


def _store_and_output_flags(p: argparse.ArgumentParser) -> None:
    """Where the study's records and data live, and what it prints."""
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


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.list_studies:
        from .studies import list_studies

        print(list_studies())
        return 0
    _quiet_libraries()
    opts: SearchOptions | None = None
    try:
        opts = SearchOptions(**{k: v for k, v in vars(args).items() if k not in ("list_studies", "quiet", "verbose")},
                             verbose=1 if args.verbose and not args.quiet else 0)
        if not opts.verbose:  # Ray Tune's legacy reporter honours verbose=0; the new one prints its tables anyway
            os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
        out = run_study(opts)
    except SearchError as exc:
        raise SystemExit(f"error: {exc}") from None
    except KeyboardInterrupt:
        assert opts is not None
        return _interrupted(opts)
    except Exception as exc:
        if opts is None or not is_disk_full(exc):
            raise
        raise SystemExit(f"error: {disk_full_line(opts, exc)}") from None
    print_outcome(out)
    return exit_status(out)


def _quiet_libraries() -> None:
    """What the libraries print at every start but that is not the study's business: MLflow's INFO lines on
    creating its tables, Ray Tune's "snapshotting too often" warning (Optuna's storage is the study's record)."""
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")  # read when mlflow is imported, here and in the workers
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")


def _interrupted(opts: SearchOptions) -> int:
    from .resume import resume_command

    signum = _terminated[-1] if _terminated else signal.SIGINT
    name = opts.name or opts.study or ""
    print(f"interrupted ({signal.Signals(signum).name}); continue with: {resume_command(opts, name)}", file=sys.stderr)
    return EXIT_SIGNALLED[signal.Signals(signum)]


def disk_full_line(opts: SearchOptions, exc: BaseException | str, *, need: int | None = None) -> str:
    """The one line for a study stopped by a full disk: where, how much is free and needed, what failed, and
    how to continue."""
    import shutil
    from pathlib import Path

    from .resume import resume_command

    runs_dir = Path(opts.runs_dir).resolve()
    free = shutil.disk_usage(runs_dir if runs_dir.exists() else Path.cwd()).free
    what = exc if isinstance(exc, str) else one_line(exc)
    needed = f", the trials left need about {need / 2**20:,.0f} MB" if need else ""
    return (f"no space left on the disk of --runs-dir {runs_dir} ({free / 2**20:,.0f} MB free{needed}): {what}; the "
            f"study's records are kept: free space, then continue with: "
            f"{resume_command(opts, opts.name or opts.study or '')}")


def exit_status(out: StudyOutcome) -> int:
    """130 (143 after SIGTERM) for an interrupted study, as a shell reports it; 1 when no trial completed; else 0."""
    if out.interrupted:
        return EXIT_SIGNALLED[signal.Signals(_terminated[-1])] if _terminated else 130
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
        shown = out.best[[c for c in out.best.columns if not c.endswith(("_mean", "_sd")) and c != "n_seeds"]]
        with pd.option_context("display.width", 200, "display.max_columns", 30,
                               "display.float_format", "{:.4g}".format):
            print("best trials:\n" + shown.to_string(index=False))
    for line in confirmed_lines(out.confirmed):
        print(line)
    for line in sharing_lines(gpu_sharing(out.table.to_dict("records"))):
        print(line)
    for name, why in out.skipped_plots.items():
        print(f"note: plot {name} not drawn: {why}")
    print(f"tables and plots: {out.report_dir}")
    print(f"Optuna storage: {out.storage}")
    print(f"MLflow UI: {ui_command(out.tracking_uri, out.experiment_id)}")
    if out.interrupted:
        print(f"interrupted; continue with: {out.resume_command}")
    elif not out.n_complete:
        print(f"error: no trial of study {out.name} completed; see the failure reasons above", file=sys.stderr)


def confirmed_lines(confirmed) -> list[str]:
    """One line per confirmed configuration: its scores as mean ± sd over its seeds."""
    if confirmed is None or confirmed.empty:
        return []
    lines = ["confirmed over seeds (mean ± sd):"]
    for row in confirmed.to_dict("records"):
        scores = ", ".join(f"{m} {row[f'{m}_mean']:.4g} ± {row[f'{m}_sd']:.2g}"
                           for m in ("fid", "precision", "recall") if f"{m}_mean" in row)
        lines.append(f"  trial {int(row['number'])}: {scores} (n = {int(row['n_seeds'])} seeds)")
    return lines


if __name__ == "__main__":
    sys.exit(main())
