"""Ray Tune's overhead on one trial: the same trial run directly vs under Ray Tune, in one run.

All runs execute ``search.trial.run_trial`` with identical params, budget and seed, including the
intermediate FID every K steps, MLflow logging, refinement and final scoring; only the reporter
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
        "beta2": 0.999, "spectral_norm": False, "dropout": 0.0, "latent_prior": "normal", "batch_size": 64}
GOAL_OVERHEAD = 0.10
CHILD_FLAG = "--run-direct-child"  # internal: this module re-run as the fresh-process baseline


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == [CHILD_FLAG]:
        return _child(argv[1])
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--budget", default="small", help="smoke | small | full (default small)")
    p.add_argument("--cpus-per-trial", type=float, default=2.0, help="also the direct runs' torch threads")
    p.add_argument("--data-root", help="MNIST folder; default $GAN_DATA_ROOT")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="benchmarks/results/tune_overhead.json")
    args = p.parse_args(argv)
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")

    from search.budgets import get_budget
    from search.payload import TrialContext, TrialPayload, build_inputs
    from search.studies import get_study
    from search.tracking import default_tracking_uri, open_study_run
    from search.trial import LocalReporter, ray_trainable, run_trial

    try:
        budget = get_budget(args.budget)
    except ValueError as exc:
        raise SystemExit(f"error: {exc}") from None
    work = Path(tempfile.mkdtemp(prefix="tune-overhead-"))
    uri = default_tracking_uri(work)
    data_root = str(Path(args.data_root).resolve()) if args.data_root else None
    # every run gets the same inputs, read (and the evaluator's real statistics computed) once here
    inputs = build_inputs(dataset="mnist", study=get_study("gan"), budget=budget, data_root=data_root, download=False)

    def context(label: str) -> TrialContext:
        sr = open_study_run(uri, f"tune-overhead-{label}", resume=False, tags={})
        return TrialContext(study="gan", study_name=f"tune-overhead-{label}", budget=budget.name, seed=args.seed,
                            dataset="mnist", study_run=sr, cpus_per_trial=args.cpus_per_trial)

    # 1. in this process, everything imported and connected
    ctx = context("inprocess")
    began = time.perf_counter()
    inprocess = run_trial(TrialPayload(context=ctx, inputs=inputs), GOOD, 0, LocalReporter()).metrics
    inprocess_s = time.perf_counter() - began

    # 2. a fresh process, as a user training the config directly would run it (reading its own inputs)
    ctx = context("process")
    began = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "benchmarks.tune_overhead", CHILD_FLAG, json.dumps({
        "budget": budget.name, "seed": args.seed, "cpus_per_trial": args.cpus_per_trial, "data_root": data_root,
        "tracking_uri": uri, "experiment_id": ctx.study_run.experiment_id,
        "parent_run_id": ctx.study_run.parent_run_id})], capture_output=True, text=True)
    process_s = time.perf_counter() - began
    if done.returncode:
        raise SystemExit(f"error: the direct run in a fresh process failed:\n{done.stderr[-2000:]}")
    process = json.loads(done.stdout.strip().splitlines()[-1])

    # 3. under Ray Tune
    import ray
    from ray import tune

    began = time.perf_counter()
    ray.init(num_cpus=max(1, int(args.cpus_per_trial)), include_dashboard=False, logging_level="WARNING")
    init_s = time.perf_counter() - began
    ctx = context("tune")
    trainable = tune.with_parameters(ray_trainable, payload=TrialPayload(context=ctx, inputs=inputs))
    tuner = tune.Tuner(
        tune.with_resources(trainable, {"cpu": args.cpus_per_trial}),
        param_space={"params": GOOD, "optuna_trial": 0},
        run_config=tune.RunConfig(name="tune-overhead", storage_path=str(work / "ray"), verbose=0,
                                  checkpoint_config=tune.CheckpointConfig(num_to_keep=1)),
    )
    began = time.perf_counter()
    results = tuner.fit()
    fit_s = time.perf_counter() - began
    ray.shutdown()
    tuned = results[0].metrics
    inside_s = float(tuned["time_total_s"])  # Ray's clock: the trainable function, first line to last report

    overhead = fit_s / process_s - 1.0
    write_json({
        "benchmark": "tune_overhead",
        "budget": budget.name,
        "steps": budget.steps,
        "params": GOOD,
        "cpus_per_trial": args.cpus_per_trial,
        "direct_process_s": process_s,
        "direct_inprocess_s": inprocess_s,
        "tune_fit_s": fit_s,
        "tune_inside_trainable_s": inside_s,
        "tune_outside_trainable_s": fit_s - inside_s,
        "ray_init_s": init_s,
        "overhead": overhead,
        "overhead_vs_inprocess": fit_s / inprocess_s - 1.0,
        "overhead_with_ray_init": (fit_s + init_s) / process_s - 1.0,
        "goal_overhead": GOAL_OVERHEAD,
        "meets_goal": overhead <= GOAL_OVERHEAD,
        "fid_direct_inprocess": inprocess["fid"],
        "fid_direct_process": process["fid"],
        "fid_tune": tuned["fid"],
        "machine": machine(),
    }, args.out)
    return 0


def _child(settings_json: str) -> int:
    """The fresh-process baseline: one direct trial that reads its own inputs; its FID as the last line."""
    from search.budgets import get_budget
    from search.payload import TrialContext, TrialPayload, build_inputs
    from search.studies import get_study
    from search.tracking import StudyRun
    from search.trial import LocalReporter, run_trial

    s = json.loads(settings_json)
    budget = get_budget(s["budget"])
    inputs = build_inputs(dataset="mnist", study=get_study("gan"), budget=budget, data_root=s["data_root"],
                          download=False)
    ctx = TrialContext(study="gan", study_name="tune-overhead-process", budget=budget.name, seed=s["seed"],
                       dataset="mnist", study_run=StudyRun(s["tracking_uri"], s["experiment_id"], s["parent_run_id"]),
                       cpus_per_trial=s["cpus_per_trial"])
    result = run_trial(TrialPayload(context=ctx, inputs=inputs), GOOD, 0, LocalReporter())
    print(json.dumps({"fid": result.metrics["fid"]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
