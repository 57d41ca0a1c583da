"""How many trials per hour one GPU gives when several smoke-sized trials share it: k trials at once, k = 1, 2, 4, 8.

The same fixed set of ``--trials`` trials (study ``dot_latent`` at ``--budget smoke``, sampler random, pruner
none, a fixed ``--seed`` and a fixed narrowing of the space: the MLP pair, n_critic 1, batch 64, so every level
trains the very same configurations) runs once per packing level k of ``--levels``, each level one
``python -m search.run`` with ``--gpus-per-trial 1/k --max-concurrent k --cpus-per-trial min(1, CPUs / k)``, its
own fresh stores, and a locally started Ray that sees one GPU (``--num-gpus 1``; the subprocess sees only that
GPU through CUDA_VISIBLE_DEVICES). The baseline is k = 1 of the same run.

Reported per level: the study's wall time (first trial start to last trial end, Optuna's timestamps),
trials/hour (trials completed / wall), the speed-up over k = 1, the maximum and the time-weighted mean number of
trials running at once while any ran (search.packing, the figures a study reports for each GPU), the GPU's
memory and utilisation as ``nvidia-smi`` samples them every 0.5 s during the study, each trial's peak GPU
memory (its MLflow metric ``gpu_memory_peak_mib``; null where the trial did not log it), and the level's summed
training FLOP rate as a share of the GPU's own dense matmul rate (8192 x 8192 products, bf16 and fp32,
measured in the same run).

FLOPs: a trial's training FLOPs are its generator steps x the FLOPs of one ``Trainer.train_step`` of its
configuration (torch's FlopCounterMode: matmuls and convolutions). Evaluation (intermediate and final FID) and
refinement FLOPs are NOT counted, so the share is a lower bound of the GPU's real use.

Goal: the best level reaches >= 3x the trials/hour of k = 1.

Without CUDA the benchmark refuses to run. ``--cpu-rehearsal`` runs the same pipeline on the CPU with a logical
GPU (Ray's ``--num-gpus 1``; the trials train on the CPU): no nvidia-smi samples, the CPU's float32 matmul rate
instead of the GPU's, ``"device": "cpu rehearsal: not GPU figures"`` and ``goal_met: null`` in the JSON. It tests
the pipeline where no GPU is lent; its figures are not GPU figures.

    python -m benchmarks.gpu_packing                                       # on a GPU machine
    python -m benchmarks.gpu_packing --cpu-rehearsal --levels 1 2 --trials 2
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import math
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.common import count_flops, machine, matmul_rate, write_json
from search.packing import RAN_FROM_ATTR, run_interval, trials_at_once

GOAL_SPEEDUP = 3.0
REHEARSAL_DEVICE = "cpu rehearsal: not GPU figures"
PRECISIONS = ("fp32", "tf32", "bf16")
# the same configurations at every level; refine_steps fixed so each trial's refinement costs the same
SPACE = ("params:\n  architecture: mlp\n  n_critic: 1\n  batch_size: 64\n  loss: [bce, hinge]\n"
         "  refine_steps: 5\n")
SMI_FIELDS = ("utilization.gpu", "memory.used", "memory.total", "name")
SMI_PERIOD_S = 0.5
MATMUL_N = 8192
FLOPS_NOTE = ("training steps only (FlopCounterMode on one Trainer.train_step: matmuls and convolutions) x the "
              "trial's steps; evaluation and refinement FLOPs are not counted, so the FLOP share is a lower bound")


# --- pure arithmetic ----------------------------------------------------------------------------------------------


def trials_per_hour(completed: int, wall_s: float) -> float | None:
    return completed / wall_s * 3600.0 if wall_s > 0 else None


def ratio(value: float | None, base: float | None) -> float | None:
    """value / base, or None when either is missing or base is 0 (a speed-up, a FLOP share)."""
    if value is None or not base:
        return None
    return value / base


def resource_share(total: float, k: int) -> float:
    """total / k rounded down to Ray's 4 decimals, so k trials always fit in total."""
    return math.floor(total / k * 10_000) / 10_000


def cpus_per_trial(cpus: int, k: int) -> float:
    """At most one CPU per trial (a trial on a GPU needs one thread to feed it), fewer when k trials need them."""
    return min(1.0, resource_share(cpus, k))


def _number(text: str) -> float | None:
    """An nvidia-smi field: a number, or None for "[N/A]", "[Not Supported]" and the like."""
    try:
        return float(text)
    except ValueError:
        return None


def parse_smi(text: str) -> list[dict[str, Any]]:
    """nvidia-smi --query-gpu=utilization.gpu,memory.used,memory.total,name --format=csv,noheader,nounits
    output: one dict per GPU line."""
    rows = []
    for line in text.strip().splitlines():
        parts = [p.strip() for p in line.split(",", len(SMI_FIELDS) - 1)]  # the name may hold commas
        if len(parts) != len(SMI_FIELDS):
            continue
        rows.append({"utilization_pct": _number(parts[0]), "memory_used_mib": _number(parts[1]),
                     "memory_total_mib": _number(parts[2]), "name": parts[3]})
    return rows


def summarize_gpu(samples: Sequence[tuple[dt.datetime, dict[str, Any]]], start: dt.datetime,
                  end: dt.datetime) -> dict[str, Any]:
    """The samples taken inside the study's wall window [start, end]: max memory, mean and max utilisation."""
    inside = [s for t, s in samples if start <= t <= end]
    util = [s["utilization_pct"] for s in inside if s["utilization_pct"] is not None]
    mem = [s["memory_used_mib"] for s in inside if s["memory_used_mib"] is not None]
    return {"samples": len(inside), "memory_used_max_mib": max(mem, default=None),
            "memory_total_mib": next((s["memory_total_mib"] for s in inside), None),
            "utilization_mean_pct": sum(util) / len(util) if util else None,
            "utilization_max_pct": max(util, default=None)}


# --- nvidia-smi in the background ---------------------------------------------------------------------------------


@dataclass
class SmiSampler:
    """Polls nvidia-smi for one GPU every ``period_s`` in a thread; ``samples`` holds (local time, parsed row)."""

    gpu: str
    period_s: float = SMI_PERIOD_S
    samples: list[tuple[dt.datetime, dict[str, Any]]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def poll(self) -> dict[str, Any] | None:
        cmd = ["nvidia-smi", "-i", self.gpu, f"--query-gpu={','.join(SMI_FIELDS)}", "--format=csv,noheader,nounits"]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired) as exc:
            self.errors.append(str(exc))
            return None
        rows = parse_smi(proc.stdout) if proc.returncode == 0 else []
        if not rows:
            self.errors.append((proc.stderr or proc.stdout).strip()[:200])
            return None
        return rows[0]

    def _loop(self) -> None:
        while not self._stop.is_set():
            row = self.poll()
            if row is not None:  # Optuna's timestamps are naive local times: these are too
                self.samples.append((dt.datetime.now(), row))
            self._stop.wait(self.period_s)

    def __enter__(self) -> SmiSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


# --- one level ----------------------------------------------------------------------------------------------------


def study_command(args: argparse.Namespace, k: int, runs_dir: Path, space: Path) -> list[str]:
    cmd = [sys.executable, "-m", "search.run", "--study", args.study, "--name", level_name(k),
           "--budget", args.budget, "--trials", str(args.trials), "--study-file", str(space),
           "--sampler", "random", "--pruner", "none", "--seed", str(args.seed),
           "--gpus-per-trial", f"{resource_share(1.0, k):g}", "--max-concurrent", str(k),
           "--cpus-per-trial", f"{cpus_per_trial(available_cpus(), k):g}", "--num-gpus", "1",
           "--runs-dir", str(runs_dir), "--no-download"]
    if args.data_root:
        cmd += ["--data-root", str(Path(args.data_root).resolve())]
    if args.precision != "fp32":  # only when asked: the flag is new in search.run
        cmd += ["--precision", args.precision]
    return cmd


def level_name(k: int) -> str:
    return f"gpu_packing_k{k}"


def available_cpus() -> int:
    return len(os.sched_getaffinity(0))


def run_level(args: argparse.Namespace, k: int, work: Path, env: dict[str, str], gpu: str | None) -> dict[str, Any]:
    """One study at packing level k in a fresh runs folder; nvidia-smi sampled meanwhile (not in a rehearsal)."""
    runs_dir = work / f"k{k}"
    runs_dir.mkdir()
    print(f"level k={k}: {args.trials} trials, {k} at once ...", file=sys.stderr, flush=True)
    sampler = SmiSampler(gpu) if gpu is not None else None
    began = time.perf_counter()
    with sampler if sampler is not None else contextlib.nullcontext():
        proc = subprocess.run(study_command(args, k, runs_dir, work / "space.yaml"), cwd=runs_dir, env=env,
                              capture_output=True, text=True)
    driver_s = time.perf_counter() - began
    if proc.returncode:
        raise SystemExit(f"error: the k={k} study failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    trials = read_trials(f"sqlite:///{runs_dir / 'optuna.db'}", level_name(k))
    peaks = gpu_memory_peaks(f"sqlite:///{runs_dir / 'mlflow.db'}", level_name(k))
    for t in trials:
        t["gpu_memory_peak_mib"] = peaks.get(t.pop("mlflow_run_id"))
    return {"k": k, "driver_s": driver_s, "trials": trials,
            "smi": None if sampler is None else {"samples": sampler.samples, "errors": sampler.errors[-3:]}}


def read_trials(storage: str, name: str) -> list[dict[str, Any]]:
    """Each trial's state, params, steps, MLflow run and [start, end] as naive local datetimes (Optuna's)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.load_study(study_name=name, storage=storage)
    return [{"number": t.number, "state": t.state.name, "params": dict(t.params),
             "train_steps": int(t.user_attrs.get("train_steps", 0)), "mlflow_run_id": t.user_attrs.get("mlflow_run_id"),
             "gpu": t.user_attrs.get("gpu"),  # the GPU Ray gave the trial, where search.run records it
             "start": t.datetime_start, "end": t.datetime_complete,
             # seconds from when Ray started its actor (the ask, start, may come while it still
             # waits for a GPU share) to its end, as the study counts them
             "run_s": run_interval({RAN_FROM_ATTR: t.user_attrs.get(RAN_FROM_ATTR),
                                    "datetime_start": t.datetime_start, "datetime_complete": t.datetime_complete})}
            for t in study.get_trials(deepcopy=False)]


def gpu_memory_peaks(tracking_uri: str, name: str) -> dict[str, float]:
    """MLflow run id -> its metric gpu_memory_peak_mib, for the runs that logged it (trials on CUDA)."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        return {}
    runs = client.search_runs([experiment.experiment_id], max_results=10_000)
    return {r.info.run_id: float(r.data.metrics["gpu_memory_peak_mib"])
            for r in runs if "gpu_memory_peak_mib" in r.data.metrics}


# --- FLOPs --------------------------------------------------------------------------------------------------------


class StepFlops:
    """FLOPs of one training step per distinct TrainConfig, counted once each on a real Trainer.

    Counted on the CPU: FlopCounterMode counts from shapes, so the device does not change the count, and this
    process then holds no CUDA context while the levels run (it would show in nvidia-smi's memory)."""

    def __init__(self, images_u8, *, budget: str, seed: int, dataset: str = "mnist") -> None:
        from search.budgets import get_budget

        self.images = images_u8
        self.budget = get_budget(budget)
        self.seed = seed
        self.dataset = dataset
        self.cache: dict[str, int] = {}

    def __call__(self, params: dict[str, Any]) -> int:
        from gan_models.trainer import Trainer
        from search.studies import train_config

        config = train_config(params, budget=self.budget, seed=self.seed, dataset=self.dataset)
        key = repr(sorted(config.to_dict().items()))
        if key not in self.cache:
            self.cache[key] = count_flops(Trainer(config, self.images, device="cpu").train_step)
        return self.cache[key]


def add_flops(level: dict[str, Any], step_flops: StepFlops) -> None:
    """Per completed trial: FLOPs per step and its training FLOPs; the level's total."""
    total = 0
    for t in level["trials"]:
        if t["state"] != "COMPLETE":
            t["flops_per_step"] = t["train_flops"] = None
            continue
        t["flops_per_step"] = step_flops(t["params"])
        t["train_flops"] = t["flops_per_step"] * t["train_steps"]
        total += t["train_flops"]
    level["train_flops"] = total


# --- matmul rates -------------------------------------------------------------------------------------------------


def gpu_matmul_rate(dtype_name: str, n: int = MATMUL_N, repeats: int = 10) -> float:
    """The GPU's dense n x n x n matmul rate (FLOP/s) in ``dtype_name`` (bf16 or strict fp32, no TF32): the best of
    ``repeats`` products, each timed with CUDA events after a warm-up."""
    import torch

    from gan_models.precision import precision_scope

    dtype = {"bf16": torch.bfloat16, "fp32": torch.float32}[dtype_name]
    # fp32 means IEEE fp32 here (TF32 would be another peak); bf16 tensors multiply in bf16 either way
    try:
        with precision_scope("fp32", "cuda"):
            a = torch.randn(n, n, device="cuda", dtype=dtype)
            b = torch.randn(n, n, device="cuda", dtype=dtype)
            for _ in range(3):
                a @ b
            best = math.inf
            for _ in range(repeats):
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                a @ b
                end.record()
                end.synchronize()
                best = min(best, start.elapsed_time(end) / 1000.0)
            return 2 * n**3 / best
    finally:
        torch.cuda.empty_cache()


def peak_rates(rehearsal: bool) -> dict[str, float | None]:
    if rehearsal:  # the CPU's own rate: a rehearsal has no GPU peak to compare with
        return {"fp32": matmul_rate(), "bf16": None}
    return {"fp32": gpu_matmul_rate("fp32"), "bf16": gpu_matmul_rate("bf16")}


# --- the report ---------------------------------------------------------------------------------------------------


def summarize_level(level: dict[str, Any], peaks: dict[str, float | None], base_tph: float | None) -> dict[str, Any]:
    """The level's figures for the JSON: wall, trials/hour, speed-up, concurrency, GPU samples, FLOP share."""
    trials = level["trials"]
    timed = [t for t in trials if t["start"] is not None and t["end"] is not None]
    start, end = min(t["start"] for t in timed), max(t["end"] for t in timed)
    wall = (end - start).total_seconds()
    completed = sum(t["state"] == "COMPLETE" for t in trials)
    peak, mean, _ = trials_at_once([t["run_s"] for t in timed])
    tph = trials_per_hour(completed, wall)
    flop_rate = level["train_flops"] / wall if wall > 0 else None
    smi = level["smi"]
    return {
        "k": level["k"], "gpus_per_trial": resource_share(1.0, level["k"]),
        "cpus_per_trial": cpus_per_trial(available_cpus(), level["k"]), "trials_completed": completed,
        "states": sorted(t["state"] for t in trials), "study_wall_s": wall, "driver_s": level["driver_s"],
        "trials_per_hour": tph, "speedup": ratio(tph, base_tph),
        "concurrency_max": peak, "concurrency_mean": mean,
        "gpu": None if smi is None else {**summarize_gpu(smi["samples"], start, end), "errors": smi["errors"]},
        "train_flops": level["train_flops"], "train_flop_rate": flop_rate,
        "flop_share": {name: ratio(flop_rate, rate) for name, rate in peaks.items()},
        "trials": [{k: v for k, v in t.items() if k not in ("start", "end")}
                   | {"start": t["start"].isoformat() if t["start"] else None,
                      "end": t["end"].isoformat() if t["end"] else None} for t in trials],
    }


def best_level(levels: list[dict[str, Any]]) -> dict[str, Any]:
    return max(levels, key=lambda lv: lv["trials_per_hour"] or 0.0)


def print_table(result: dict[str, Any]) -> None:
    print(f"gpu_packing on {result['device']} ({result['trials']} trials of {result['study']} at {result['budget']})")
    print(f"{'k':>3} {'done':>5} {'wall s':>8} {'trials/h':>9} {'speedup':>8} {'max':>4} {'mean':>5} "
          f"{'GPU MiB':>8} {'util %':>7} {'fp32 share':>11}")
    for lv in result["levels"]:
        gpu = lv["gpu"] or {}
        print(f"{lv['k']:>3} {lv['trials_completed']:>5} {lv['study_wall_s']:>8.1f} "
              f"{_fmt(lv['trials_per_hour'], 9, 1)} {_fmt(lv['speedup'], 8, 2)} "
              f"{lv['concurrency_max']:>4} {lv['concurrency_mean']:>5.2f} "
              f"{_fmt(gpu.get('memory_used_max_mib'), 8, 0)} {_fmt(gpu.get('utilization_mean_pct'), 7, 1)} "
              f"{_fmt(lv['flop_share']['fp32'], 11, 4)}")
    met = {None: "not judged (rehearsal)", True: "met", False: "not met"}[result["goal_met"]]
    speedup = _fmt(result["speedup"], 0, 2).strip()
    print(f"best k={result['best_level']}: {speedup}x the trials/hour of k=1; goal >= {GOAL_SPEEDUP:g}x: {met}")


def _fmt(value: float | None, width: int, digits: int) -> str:
    return f"{'-':>{width}}" if value is None else f"{value:>{width}.{digits}f}"


# --- the command line ---------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--study", default="dot_latent")
    p.add_argument("--budget", default="smoke", help="smoke | small | full (default smoke)")
    p.add_argument("--trials", type=int, default=8, help="trials per level (default 8)")
    p.add_argument("--levels", type=int, nargs="+", default=[1, 2, 4, 8],
                   help="trials sharing the GPU at once, one study per level; must include 1, the baseline")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--precision", choices=PRECISIONS, default="fp32", help="the trials' training precision")
    p.add_argument("--data-root", help="dataset folder; default $GAN_DATA_ROOT")
    p.add_argument("--cpu-rehearsal", action="store_true",
                   help="run the pipeline on the CPU with a logical GPU (no GPU figures): tests it where no GPU is")
    p.add_argument("--keep-runs", action="store_true", help="keep the levels' stores (default: deleted at the end)")
    p.add_argument("--out", default="benchmarks/results/gpu_packing.json")
    return p.parse_args(argv)


def refusal(args: argparse.Namespace) -> str | None:
    """Why this run cannot start (one line), or None. Checked before anything is written."""
    if args.trials < 1:
        return f"--trials must be >= 1, got {args.trials}"
    if 1 not in args.levels or min(args.levels) < 1 or len(set(args.levels)) != len(args.levels):
        return f"--levels must be distinct positive integers including 1 (the baseline), got {args.levels}"
    if args.precision != "fp32" and not _search_run_knows("--precision"):
        return (f"--precision {args.precision}: `python -m search.run --help` lists no --precision (this checkout's "
                "search.run cannot take it yet); leave --precision at fp32")
    if args.cpu_rehearsal:
        return None
    import torch

    if not torch.cuda.is_available():
        return ("no CUDA GPU here (torch.cuda.is_available() is false): run it on a GPU machine, or pass "
                "--cpu-rehearsal to test the pipeline on the CPU (no GPU figures)")
    if shutil.which("nvidia-smi") is None:
        return "nvidia-smi is not on PATH: it samples the GPU's memory and utilisation; install it or fix PATH"
    return None


def _search_run_knows(flag: str) -> bool:
    """Whether ``python -m search.run --help`` lists ``flag`` (asked of the CLI itself, as a user would)."""
    proc = subprocess.run([sys.executable, "-m", "search.run", "--help"], capture_output=True, text=True)
    return proc.returncode == 0 and flag in proc.stdout.split()


def chosen_gpu() -> str:
    """The one GPU the levels use: the first that CUDA_VISIBLE_DEVICES names (an index or a UUID), else 0."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",")[0].strip()
    return visible or "0"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    why = refusal(args)
    if why:
        raise SystemExit(f"error: {why}")
    gpu = None if args.cpu_rehearsal else chosen_gpu()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    if gpu is not None:
        env["CUDA_VISIBLE_DEVICES"] = gpu  # one GPU, whatever the machine has: the trials pack onto it
    work = Path(tempfile.mkdtemp(prefix="gpu-packing-"))
    try:
        (work / "space.yaml").write_text(SPACE)
        idle = SmiSampler(gpu).poll() if gpu is not None else None
        # largest k first: a cold start (page cache, first CUDA use) then lands on a packed level, so the
        # speed-up over k = 1 errs low rather than high
        raw = [run_level(args, k, work, env, gpu) for k in sorted(args.levels, reverse=True)]
    finally:
        if args.keep_runs:
            print(f"the levels' stores are kept in {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)
    result = build_result(args, raw, idle)
    write_json(result, args.out, echo=False)
    print_table(result)
    print(f"wrote {args.out}")
    return 0


def build_result(args: argparse.Namespace, raw: list[dict[str, Any]], idle: dict[str, Any] | None) -> dict[str, Any]:
    from gan_models import load_images, resolve_data_root

    images = load_images("mnist", split="train", data_root=resolve_data_root(args.data_root)).images
    step_flops = StepFlops(images, budget=args.budget, seed=args.seed)
    for level in raw:
        add_flops(level, step_flops)
    peaks = peak_rates(args.cpu_rehearsal)  # last: this process takes the GPU only once the levels are done
    by_k = {lv["k"]: lv for lv in raw}
    base = summarize_level(by_k[1], peaks, None)
    levels = [summarize_level(by_k[k], peaks, base["trials_per_hour"]) for k in sorted(by_k)]
    best = best_level(levels)
    return {
        "benchmark": "gpu_packing",
        "device": REHEARSAL_DEVICE if args.cpu_rehearsal else (idle or {}).get("name") or "cuda",
        "rehearsal": args.cpu_rehearsal, "study": args.study, "budget": args.budget, "trials": args.trials,
        "seed": args.seed, "sampler": "random", "pruner": "none", "precision": args.precision, "space": SPACE,
        "gpu_idle": idle, "matmul_rate_flops": peaks,
        "matmul_rate_on": "cpu, float32, 2048x2048 (benchmarks.common.matmul_rate)" if args.cpu_rehearsal
        else f"gpu, {MATMUL_N}x{MATMUL_N}, fp32 without TF32 and bf16, best of 10 (CUDA events)",
        "flops_counted": FLOPS_NOTE, "levels": levels,
        "goal": f"the best level reaches >= {GOAL_SPEEDUP:g}x the trials/hour of k=1", "goal_speedup": GOAL_SPEEDUP,
        "best_level": best["k"], "speedup": best["speedup"],
        "goal_met": None if args.cpu_rehearsal or best["speedup"] is None else best["speedup"] >= GOAL_SPEEDUP,
        "best_flop_share": best["flop_share"], "machine": machine(),
    }


if __name__ == "__main__":
    sys.exit(main())
