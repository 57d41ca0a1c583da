"""Ray Tune's overhead on one trial: the same trial run directly vs under Ray Tune, in one run.

All runs execute ``search.trial.run_trial`` with identical params, budget and seed, including the
intermediate FID at every image mark, MLflow logging, refinement and final scoring; only the reporter
differs (an in-process list vs ``ray.tune.report`` with a checkpoint persisted to storage). The real
statistics of the evaluator are cached before any run is timed. Three timings:

- ``direct_process_s``: the trial trained directly in a fresh Python process, spawn to exit. This is
  the baseline of the goal: a user training the config directly pays the same interpreter, torch and
  MLflow start-up, so what remains is what Tune adds (the trial actor, ``ray.tune`` in the worker,
  reporting and checkpoint persistence, the driver's event loop sharing the CPUs).
- ``direct_inprocess_s``: the same trial in this process with everything already imported and
  connected, the strictest baseline, reported beside it.
- ``tune_fit_s``: ``Tuner.fit()`` for the one trial; Ray's own start (``ray.init``) is timed apart.

The JSON splits Tune's time into the part inside the trainable (``time_total_s``, Ray's own clock)
and the part outside it (actor start and teardown: paid once per worker in a study, where
``reuse_actors`` keeps the worker for the next trial). Goal: ``tune_fit_s`` at most 10% above
``direct_process_s``. The final FIDs are equal on CPU: the trial is deterministic from its seed.

    python -m benchmarks.tune_overhead --budget small
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import machine, write_json

GOOD = {"architecture": "mlp", "loss": "bce", "n_critic": 1, "lr_g": 2e-4, "lr_d": 2e-4, "beta1": 0.5,
        "beta2": 0.999, "spectral_norm": False, "dropout": 0.0, "batch_norm": True, "ema_decay": 0.999,
        "latent_prior": "normal", "batch_size": 64}
GOAL_OVERHEAD = 0.10
CHILD_FLAG = "--run-direct-child"  # internal: this module re-run as the fresh-process baseline


def _plan(budget: str, seed: int, name: str):
    """The gan study's plan at ``budget`` as search.run makes it (no recipes; nothing stored)."""
    from search.hardware import Hardware
    from search.options import SearchOptions
    from search.settings import plan_study

    opts = SearchOptions(study="gan", name=name, budget=budget, seed=seed, recipes=False)
    return plan_study(opts, "sqlite:////nonexistent/optuna.db", Hardware(cluster=False, gpus=0, cpus=1))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--budget", default="small", help="smoke | quick | small | full (default small)")
    p.add_argument("--cpus-per-trial", type=float, default=2.0, help="also the direct runs' torch threads")
    p.add_argument("--data-root", help="MNIST folder; default $GAN_DATA_ROOT")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="benchmarks/results/tune_overhead.json")
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == [CHILD_FLAG]:
        return _child(argv[1])
    args = build_parser().parse_args(argv)
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    from search.errors import SearchError
    from search.payload import load_inputs
    from search.urls import sqlite_url

    try:
        plan = _plan(args.budget, args.seed, "tune-overhead")
    except SearchError as exc:
        raise SystemExit(f"error: {exc}") from None
    work = Path(tempfile.mkdtemp(prefix="tune-overhead-"))
    uri = sqlite_url(work / "mlflow.db")
    data_root = str(Path(args.data_root).resolve()) if args.data_root else None
    # every run gets the same inputs, read (and the evaluator's real statistics computed) once here
    inputs = load_inputs(plan, data_root=data_root, download=False)
    inprocess_s, inprocess = _in_process(plan, inputs, uri, args)
    process_s, process = _fresh_process(plan, uri, data_root, args)
    init_s, fit_s, tuned = _under_tune(plan, inputs, uri, work, args)
    inside_s = float(tuned["time_total_s"])  # Ray's clock: the trainable function, first line to last report
    overhead = fit_s / process_s - 1.0
    write_json({
        "benchmark": "tune_overhead", "budget": plan.budget.name, "images": plan.budget.images, "params": GOOD,
        "cpus_per_trial": args.cpus_per_trial, "direct_process_s": process_s, "direct_inprocess_s": inprocess_s,
        "tune_fit_s": fit_s, "tune_inside_trainable_s": inside_s, "tune_outside_trainable_s": fit_s - inside_s,
        "ray_init_s": init_s, "overhead": overhead, "overhead_vs_inprocess": fit_s / inprocess_s - 1.0,
        "overhead_with_ray_init": (fit_s + init_s) / process_s - 1.0, "goal_overhead": GOAL_OVERHEAD,
        "meets_goal": overhead <= GOAL_OVERHEAD, "fid_direct_inprocess": inprocess["fid"],
        "fid_direct_process": process["fid"], "fid_tune": tuned["fid"], "machine": machine(),
    }, args.out)
    return 0


def _context(plan, uri: str, label: str, cpus_per_trial: float):
    import dataclasses

    from search.payload import TrialContext
    from search.tracking import open_study_run

    name = f"tune-overhead-{label}"
    sr = open_study_run(uri, name, resume=False, tags={})
    return TrialContext(plan=dataclasses.replace(plan, name=name), study_run=sr, cpus_per_trial=cpus_per_trial)


def _in_process(plan, inputs, uri: str, args) -> tuple[float, dict]:
    """The trial in this process, everything imported and connected."""
    from search.payload import TrialPayload
    from search.trial import LocalReporter, run_trial

    ctx = _context(plan, uri, "inprocess", args.cpus_per_trial)
    began = time.perf_counter()
    report = run_trial(TrialPayload(context=ctx, inputs=inputs), GOOD, 0, LocalReporter())
    return time.perf_counter() - began, dict(report.metrics)


def _fresh_process(plan, uri: str, data_root: str | None, args) -> tuple[float, dict]:
    """A fresh process, as a user training the config directly would run it (reading its own inputs)."""
    ctx = _context(plan, uri, "process", args.cpus_per_trial)
    began = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "benchmarks.tune_overhead", CHILD_FLAG, json.dumps({
        "budget": plan.budget.name, "seed": args.seed, "cpus_per_trial": args.cpus_per_trial, "data_root": data_root,
        "tracking_uri": uri, "experiment_id": ctx.study_run.experiment_id,
        "parent_run_id": ctx.study_run.parent_run_id})], capture_output=True, text=True)
    process_s = time.perf_counter() - began
    if done.returncode:
        raise SystemExit(f"error: the direct run in a fresh process failed:\n{done.stderr[-2000:]}")
    return process_s, json.loads(done.stdout.strip().splitlines()[-1])


def _under_tune(plan, inputs, uri: str, work: Path, args) -> tuple[float, float, dict]:
    """(ray.init seconds, Tuner.fit seconds, the trial's last result) of the trial under Ray Tune."""
    import ray
    from ray import tune

    from search.payload import TrialPayload
    from search.trial import ray_trainable

    began = time.perf_counter()
    ray.init(num_cpus=max(1, int(args.cpus_per_trial)), include_dashboard=False, logging_level="WARNING")
    init_s = time.perf_counter() - began
    ctx = _context(plan, uri, "tune", args.cpus_per_trial)
    trainable = tune.with_parameters(ray_trainable, payload=TrialPayload(context=ctx, inputs=inputs))
    tuner = tune.Tuner(
        tune.with_resources(trainable, {"cpu": args.cpus_per_trial}),
        param_space={"params": GOOD, "optuna_trial": 0, "seed": args.seed, "resume_from": None},
        run_config=tune.RunConfig(name="tune-overhead", storage_path=str(work / "ray"), verbose=0,
                                  checkpoint_config=tune.CheckpointConfig(num_to_keep=1)),
    )
    began = time.perf_counter()
    results = tuner.fit()
    fit_s = time.perf_counter() - began
    ray.shutdown()
    return init_s, fit_s, results[0].metrics


def _child(settings_json: str) -> int:
    """The fresh-process baseline: one direct trial that reads its own inputs; its FID as the last line."""
    from search.payload import TrialContext, TrialPayload, load_inputs
    from search.tracking import StudyRun
    from search.trial import LocalReporter, run_trial

    s = json.loads(settings_json)
    plan = _plan(s["budget"], s["seed"], "tune-overhead-process")
    inputs = load_inputs(plan, data_root=s["data_root"], download=False)
    ctx = TrialContext(plan=plan, study_run=StudyRun(s["tracking_uri"], s["experiment_id"], s["parent_run_id"]),
                       cpus_per_trial=s["cpus_per_trial"])
    result = run_trial(TrialPayload(context=ctx, inputs=inputs), GOOD, 0, LocalReporter())
    print(json.dumps({"fid": result.metrics["fid"]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
