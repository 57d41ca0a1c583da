"""What pruning saves: the same study run twice, with an Optuna pruner and without one.

Both runs use the same study, budget, trial count, sampler and seeds. The default sampler is
``random`` so that both runs evaluate the very same configurations (trial n gets the same params in
both; the JSON says whether they matched): the comparison then isolates what the pruner stops, not
where a model-based sampler wanders once histories differ.

Writes JSON with, per run, the generator steps spent (sum over trials of the steps each trained),
the wall time and the best final FID, and the ratios. Goal: the pruned run spends at most 50% of the
unpruned run's steps, with a best FID within 10% of it.

    python -m benchmarks.pruning_gain --budget small --trials 16 --out pruning_gain.json
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import tempfile
import time
from pathlib import Path


def _run(label: str, pruner: str, args, runs_dir: Path) -> dict:
    from optuna.trial import TrialState

    from search.run import SearchOptions, run_study

    opts = SearchOptions(study=args.study, name=f"pruning-gain-{label}", trials=args.trials, budget=args.budget,
                         sampler=args.sampler, pruner=pruner, seed=args.seed, study_file=args.study_file,
                         cpus_per_trial=args.cpus_per_trial, max_concurrent=args.max_concurrent,
                         num_cpus=args.num_cpus, data_root=args.data_root, runs_dir=str(runs_dir), verbose=0)
    began = time.perf_counter()
    outcome = run_study(opts, log=lambda msg: print(f"[{label}] {msg}", file=sys.stderr))
    wall = time.perf_counter() - began
    import optuna

    trials = optuna.load_study(study_name=opts.name, storage=outcome.storage).get_trials(deepcopy=False)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    return {
        "pruner": pruner,
        "wall_s": wall,
        "train_steps": int(sum(int(t.user_attrs.get("train_steps", 0)) for t in trials)),
        "best_fid": min((t.value for t in complete), default=math.nan),
        "best_trial": min(complete, key=lambda t: t.value).number if complete else None,
        "states": {s.name: sum(t.state == s for t in trials) for s in (TrialState.COMPLETE, TrialState.PRUNED,
                                                                        TrialState.FAIL)},
        "params": [t.params for t in sorted(trials, key=lambda t: t.number)],
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--study", default="gan")
    p.add_argument("--study-file", help="narrow the space (YAML), as search.run --study-file")
    p.add_argument("--budget", default="small", help="smoke | small | full (default small)")
    p.add_argument("--trials", type=int, default=16)
    p.add_argument("--pruner", default="median", help="the pruner of the pruned run (default median)")
    p.add_argument("--sampler", default="random", help="default random: both runs see the same configs")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--num-cpus", type=int, help="CPUs of the local Ray (default: all)")
    p.add_argument("--cpus-per-trial", type=float, default=1.0)
    p.add_argument("--max-concurrent", type=int)
    p.add_argument("--data-root")
    p.add_argument("--runs-dir", help="where both studies' stores go (default: a new temporary folder)")
    p.add_argument("--out", default="pruning_gain.json")
    args = p.parse_args(argv)
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    if args.pruner == "none":
        raise SystemExit("error: --pruner none leaves nothing to compare; valid choices: median, percentile, hyperband")

    from search.run import SearchError

    runs_dir = Path(args.runs_dir or tempfile.mkdtemp(prefix="pruning-gain-")).resolve()
    try:
        pruned = _run("pruned", args.pruner, args, runs_dir)
        full = _run("unpruned", "none", args, runs_dir)
    except SearchError as exc:
        raise SystemExit(f"error: {exc}") from None
    steps_ratio = pruned["train_steps"] / full["train_steps"] if full["train_steps"] else math.nan
    fid_ratio = pruned["best_fid"] / full["best_fid"] if full["best_fid"] else math.nan
    out = {
        "benchmark": "pruning_gain",
        "study": args.study, "budget": args.budget, "trials": args.trials, "sampler": args.sampler,
        "seed": args.seed, "cpus_per_trial": args.cpus_per_trial, "max_concurrent": args.max_concurrent,
        "pruned": {k: v for k, v in pruned.items() if k != "params"},
        "unpruned": {k: v for k, v in full.items() if k != "params"},
        "same_configs": pruned["params"] == full["params"],
        "steps_ratio": steps_ratio,
        "best_fid_ratio": fid_ratio,
        "wall_ratio": pruned["wall_s"] / full["wall_s"],
        "goals": {"steps_ratio_max": 0.5, "best_fid_ratio_max": 1.1},
        "meets_goals": bool(steps_ratio <= 0.5 and fid_ratio <= 1.1),
        "runs_dir": str(runs_dir),
        "host": {"cpu_count": os.cpu_count(), "platform": platform.platform(), "python": sys.version.split()[0]},
    }
    Path(args.out).write_text(json.dumps(out, indent=2, default=str) + "\n")
    print(json.dumps({k: out[k] for k in ("steps_ratio", "best_fid_ratio", "wall_ratio", "same_configs",
                                          "meets_goals")}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
