"""What pruning saves: the same study run with Optuna pruners and without one.

Every run uses the same study, budget, trial count, sampler and seeds. The default sampler is
``random`` so that all runs evaluate the very same configurations (trial n gets the same params in
each; the JSON says whether they matched): the comparison then isolates what the pruner stops, not
where a model-based sampler wanders once histories differ.

``--pruner`` takes one pruner or several (``median,percentile,hyperband``): each gets its own study,
all compared with the one unpruned study. The studies live in ``--runs-dir`` under the names
``pruning-gain-<pruner>`` and ``pruning-gain-unpruned``; a study already finished there is read,
not run again, and an unfinished one is resumed, so an interrupted benchmark continues where it
stopped and a pruner can be added later against the same unpruned baseline.

Writes JSON with, per run, the training images spent (sum over trials of the images each trained),
the wall time (first trial start to last trial end, from Optuna's timestamps) and the best final
FID, and each pruner's ratios to the unpruned run. Goal: a pruned run spends at most 30% of the
unpruned run's training images, with a best FID within 10% of it (successive halving with η = 3 over
three rungs spends about 26% in the ASHA paper's arithmetic). The JSON adds, for every registered
pruner, a replay of the unpruned study's recorded curves (``replay``): what that pruner would
have spent, labelled as such, to choose a pruner without training every variant.

Both runs start from the known-good recipes, as every study does (``--no-recipes``: from the sampler alone).

    python -m benchmarks.pruning_gain --budget quick --trials 16 --pruner asha,asha-quorum \\
        --study-file search/study_files/cpu_mlp.yaml --max-concurrent 2
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
from pathlib import Path

from benchmarks.common import machine, write_json

GOAL_IMAGES_RATIO = 0.3
GOAL_FID_RATIO = 1.1


def _study_name(label: str) -> str:
    return f"pruning-gain-{label}"


def _storage(runs_dir: Path) -> str:
    return f"sqlite:///{runs_dir / 'optuna.db'}"


def _run(label: str, pruner: str, args, runs_dir: Path) -> dict:
    import optuna
    from optuna.trial import TrialState

    from search.options import SearchOptions
    from search.run import run_study

    name = _study_name(label)
    storage = _storage(runs_dir)
    runs_dir.mkdir(parents=True, exist_ok=True)
    existing = name in optuna.get_all_study_names(storage)
    finished = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
    done = existing and len(optuna.load_study(study_name=name, storage=storage).get_trials(
        deepcopy=False, states=finished)) >= args.trials
    if done:
        print(f"[{label}] study {name} is finished in {runs_dir}: reading it", file=sys.stderr)
    else:
        opts = SearchOptions(study=None if existing else args.study, name=name, trials=args.trials,
                             budget=None if existing else args.budget, sampler=None if existing else args.sampler,
                             pruner=None if existing else pruner, seed=None if existing else args.seed,
                             study_file=args.study_file, recipes=args.recipes, cpus_per_trial=args.cpus_per_trial,
                             max_concurrent=args.max_concurrent, num_cpus=args.num_cpus, data_root=args.data_root,
                             runs_dir=str(runs_dir), storage=storage, resume=existing, verbose=0)
        run_study(opts, log=lambda msg: print(f"[{label}] {msg}", file=sys.stderr))

    study = optuna.load_study(study_name=name, storage=storage)
    settings = study.user_attrs["search_settings"]
    trials = sorted(study.get_trials(deepcopy=False), key=lambda t: t.number)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    starts = [t.datetime_start for t in trials if t.datetime_start]
    ends = [t.datetime_complete for t in trials if t.datetime_complete]
    return {
        "study": name,
        "pruner": settings["pruner"],
        "sampler": settings["sampler"],
        "seed": settings["seed"],
        "budget": settings["budget"],
        "wall_s": (max(ends) - min(starts)).total_seconds() if starts and ends else math.nan,
        "train_images": int(sum(int(t.user_attrs.get("train_images", 0)) for t in trials)),
        "best_fid": min((t.value for t in complete), default=math.nan),
        "best_trial": min(complete, key=lambda t: t.value).number if complete else None,
        "states": {s.name: sum(t.state == s for t in trials) for s in finished},
        "trials": [{"number": t.number, "state": t.state.name, "images": int(t.user_attrs.get("train_images", 0)),
                    "fid": t.value, "enqueued": t.user_attrs.get("enqueued")} for t in trials],
        "params": [t.params for t in trials],
    }


def replay(full_study, pruner: str, *, slots: int) -> dict:
    """What ``pruner`` would have spent on the unpruned study's own curves: a replay, not a run.

    Trials start in number order on ``slots`` workers; trial n reports its recorded intermediate
    FIDs at its recorded pace (its wall time over its reports) and the real Optuna pruner, built
    as the CLI builds it, decides after each report. It shows what the start-up trials and the
    pruner's settings cost without another study's worth of training; the measured runs above are
    the benchmark's result.
    """
    import heapq

    import optuna
    from optuna.trial import TrialState

    from search.budgets import get_budget
    from search.samplers import make_pruner

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    budget = get_budget(full_study.user_attrs["search_settings"]["budget"])
    trials = sorted(full_study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)), key=lambda t: t.number)
    # the study name matters: Optuna's Hyperband assigns brackets by hashing it with the trial number
    study = optuna.create_study(study_name=_study_name(pruner), pruner=make_pruner(pruner, budget))
    live: dict[int, optuna.Trial] = {}
    events: list[tuple[float, int, int, float]] = []  # (time, trial index, images, seconds per report)
    spent: dict[int, int] = {}

    def start(i: int, now: float) -> None:
        t = trials[i]
        live[i] = study.ask()
        pace = (t.datetime_complete - t.datetime_start).total_seconds() / len(t.intermediate_values)
        heapq.heappush(events, (now + pace, i, min(t.intermediate_values), pace))

    started = 0
    while started < min(slots, len(trials)):
        start(started, 0.0)
        started += 1
    while events:
        now, i, step, pace = heapq.heappop(events)
        trial, values = live[i], trials[i].intermediate_values
        trial.report(values[step], step)
        # the last mark is never pruned (search.bridge): the trial has trained its budget
        if step < max(values) and trial.should_prune():
            study.tell(trial, state=TrialState.PRUNED)
        elif step == max(values):
            study.tell(trial, trials[i].value)
        else:
            heapq.heappush(events, (now + pace, i, min(s for s in values if s > step), pace))
            continue
        spent[i] = step
        if started < len(trials):
            start(started, now)
            started += 1
    full_images = sum(max(t.intermediate_values) for t in trials)
    kept = [trials[i].value for i, step in spent.items() if step == max(trials[i].intermediate_values)]
    best_full = min(t.value for t in trials)
    return {"train_images": sum(spent.values()), "images_ratio": sum(spent.values()) / full_images,
            "best_fid": min(kept), "best_fid_ratio": min(kept) / best_full,
            "pruned_trials": sorted(trials[i].number for i, step in spent.items()
                                    if step < max(trials[i].intermediate_values))}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--study", default="gan")
    p.add_argument("--study-file", help="narrow the space (YAML), as search.run --study-file")
    p.add_argument("--budget", default="quick", help="smoke | quick | small | full (default quick)")
    p.add_argument("--trials", type=int, default=16)
    p.add_argument("--pruner", default="asha,asha-quorum",
                   help="the pruner(s) of the pruned run(s), comma-separated (default asha,asha-quorum)")
    p.add_argument("--sampler", default="random", help="default random: every run sees the same configs")
    p.add_argument("--no-recipes", dest="recipes", action="store_false", help="start both from the sampler alone")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--num-cpus", type=int, help="CPUs of the local Ray (default: all)")
    p.add_argument("--cpus-per-trial", type=float, default=1.0)
    p.add_argument("--max-concurrent", type=int)
    p.add_argument("--data-root")
    p.add_argument("--runs-dir", help="where the studies' stores go (default: a new temporary folder)")
    p.add_argument("--out", default="benchmarks/results/pruning_gain.json")
    return p


def _pruners(text: str) -> list[str]:
    from search.samplers import PRUNERS

    pruners = [name.strip() for name in text.split(",") if name.strip()]
    valid = [name for name in PRUNERS if name != "none"]
    bad = [name for name in pruners if name not in valid]
    if "none" in pruners:
        raise SystemExit(f"error: --pruner none leaves nothing to compare (the unpruned run is always made); "
                         f"valid choices: {', '.join(valid)}")
    if not pruners or bad:
        raise SystemExit(f"error: unknown pruner {', '.join(bad) or '(none given)'!r}; "
                         f"valid choices: {', '.join(valid)}")
    return pruners


def compare(run: dict, full: dict) -> dict:
    """A pruned run against the unpruned one: the same configurations, and the ratios the goals bound."""
    def define(r: dict) -> tuple:
        return r["sampler"], r["seed"], r["budget"], len(r["trials"])

    images_ratio = run["train_images"] / full["train_images"] if full["train_images"] else math.nan
    fid_ratio = run["best_fid"] / full["best_fid"] if full["best_fid"] else math.nan
    return {"same_configs": run["params"] == full["params"] and define(run) == define(full),
            "images_ratio": images_ratio, "best_fid_ratio": fid_ratio, "wall_ratio": run["wall_s"] / full["wall_s"],
            "meets_goals": bool(images_ratio <= GOAL_IMAGES_RATIO and fid_ratio <= GOAL_FID_RATIO)}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    import optuna

    from search.errors import SearchError
    from search.samplers import PRUNERS

    pruners = _pruners(args.pruner)
    runs_dir = Path(args.runs_dir or tempfile.mkdtemp(prefix="pruning-gain-")).resolve()
    try:
        runs = {pruner: _run(pruner, pruner, args, runs_dir) for pruner in pruners}
        full = _run("unpruned", "none", args, runs_dir)
    except SearchError as exc:
        raise SystemExit(f"error: {exc}") from None
    comparisons = {pruner: compare(run, full) for pruner, run in runs.items()}
    full_study = optuna.load_study(study_name=full["study"], storage=_storage(runs_dir))
    slots = args.max_concurrent or max(1, int((args.num_cpus or os.cpu_count() or 1) // args.cpus_per_trial))
    replays = {pruner: replay(full_study, pruner, slots=slots) for pruner in PRUNERS if pruner != "none"}
    out = {
        "benchmark": "pruning_gain",
        "study": args.study, "study_file": args.study_file, "budget": args.budget, "trials": args.trials,
        "sampler": args.sampler, "seed": args.seed, "recipes": args.recipes, "cpus_per_trial": args.cpus_per_trial,
        "max_concurrent": args.max_concurrent,
        "pruned": {pruner: {k: v for k, v in run.items() if k != "params"} for pruner, run in runs.items()},
        "unpruned": {k: v for k, v in full.items() if k != "params"},
        "comparisons": comparisons,
        "replay_of_unpruned": {"slots": slots, **replays},
        "goals": {"images_ratio_max": GOAL_IMAGES_RATIO, "best_fid_ratio_max": GOAL_FID_RATIO},
        "runs_dir": str(runs_dir),
        "machine": machine(),
    }
    write_json(out, args.out, echo=False)
    replayed = {k: {m: v[m] for m in ("images_ratio", "best_fid_ratio")} for k, v in replays.items()}
    print(json.dumps({"measured": comparisons, "replayed": replayed}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
