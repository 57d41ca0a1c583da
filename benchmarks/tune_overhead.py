"""Ray Tune's overhead on one trial: the same trial run directly in this process vs under Ray Tune.

Both runs execute ``search.trial.run_trial`` with identical params, budget and seed, including the
intermediate FID every K steps, MLflow logging, refinement and final scoring; only the reporter
differs (an in-process list vs ``ray.tune.report`` with a checkpoint persisted to storage). The real
statistics of the evaluator are cached before either run is timed.

Writes JSON: wall seconds of the direct run, of ``Tuner.fit()`` alone and with ``ray.init``, the
overhead of each (goal: fit at most 10% slower than direct), and the two final FIDs (equal on CPU:
the trial is deterministic from its seed).

    python -m benchmarks.tune_overhead --budget small --out tune_overhead.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

GOOD = {"architecture": "mlp", "loss": "bce", "n_critic": 1, "lr_g": 2e-4, "lr_d": 2e-4, "beta1": 0.5,
        "beta2": 0.999, "spectral_norm": False, "dropout": 0.0, "latent_prior": "normal", "batch_size": 64}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--budget", default="small", help="smoke | small | full (default small)")
    p.add_argument("--cpus-per-trial", type=float, default=2.0, help="also the direct run's torch threads")
    p.add_argument("--data-root", help="MNIST folder; default $GAN_DATA_ROOT")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="tune_overhead.json")
    args = p.parse_args(argv)
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")

    from search.budgets import get_budget
    from search.trial import LocalReporter, TrialContext, ray_trainable, run_trial
    from search.tracking import default_tracking_uri, open_study_run

    try:
        budget = get_budget(args.budget)
    except ValueError as exc:
        raise SystemExit(f"error: {exc}") from None
    work = Path(tempfile.mkdtemp(prefix="tune-overhead-"))
    uri = default_tracking_uri(work)
    data_root = str(Path(args.data_root).resolve()) if args.data_root else None

    def context(label: str) -> TrialContext:
        sr = open_study_run(uri, f"tune-overhead-{label}", resume=False, tags={})
        return TrialContext(study="gan", study_name=f"tune-overhead-{label}", budget=budget.name, seed=args.seed,
                            tracking_uri=uri, experiment_id=sr.experiment_id, parent_run_id=sr.parent_run_id,
                            data_root=data_root, cpus_per_trial=args.cpus_per_trial)

    _warm_evaluators(budget, data_root)

    ctx = context("direct")
    began = time.perf_counter()
    direct = run_trial(ctx, GOOD, 0, LocalReporter())
    direct_s = time.perf_counter() - began

    import ray
    from ray import tune

    began = time.perf_counter()
    ray.init(num_cpus=max(1, int(args.cpus_per_trial)), include_dashboard=False, logging_level="WARNING")
    init_s = time.perf_counter() - began
    ctx = context("tune")
    tuner = tune.Tuner(
        tune.with_resources(ray_trainable, {"cpu": args.cpus_per_trial}),
        param_space={"context": ctx.to_dict(), "params": GOOD, "optuna_trial": 0},
        run_config=tune.RunConfig(name="tune-overhead", storage_path=str(work / "ray"), verbose=0,
                                  checkpoint_config=tune.CheckpointConfig(num_to_keep=1)),
    )
    began = time.perf_counter()
    results = tuner.fit()
    fit_s = time.perf_counter() - began
    ray.shutdown()
    tuned = results[0].metrics

    out = {
        "benchmark": "tune_overhead",
        "budget": budget.name,
        "steps": budget.steps,
        "params": GOOD,
        "cpus_per_trial": args.cpus_per_trial,
        "direct_s": direct_s,
        "tune_fit_s": fit_s,
        "ray_init_s": init_s,
        "overhead_fit": fit_s / direct_s - 1.0,
        "overhead_with_init": (fit_s + init_s) / direct_s - 1.0,
        "goal_overhead": 0.10,
        "meets_goal": fit_s / direct_s - 1.0 <= 0.10,
        "fid_direct": direct["fid"],
        "fid_tune": tuned["fid"],
        "host": {"cpu_count": os.cpu_count(), "platform": platform.platform(), "python": sys.version.split()[0]},
    }
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps({k: out[k] for k in ("direct_s", "tune_fit_s", "ray_init_s", "overhead_fit", "fid_direct",
                                          "fid_tune")}, indent=2))
    return 0


def _warm_evaluators(budget, data_root) -> None:
    """Compute (or load) the real statistics both runs use, so neither pays for them."""
    from evaluation import Evaluator

    Evaluator(n_real=budget.n_real_intermediate, metrics=("fid",), data_root=data_root).prepare()
    Evaluator(n_real=budget.n_real_final, data_root=data_root).prepare()


if __name__ == "__main__":
    sys.exit(main())
