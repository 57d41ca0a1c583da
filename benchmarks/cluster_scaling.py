"""What splitting a study across nodes that share no disk costs: one node against two, same study.

The same fixed study (``--trials`` trials of ``--study`` at ``--budget``, pruner none, a fixed
seed, so every run trains the same configurations) runs twice in one invocation, both through the
cluster path (``--address``, an `mlflow server` on 127.0.0.1 with proxied artifacts, ``file://``
checkpoint storage), so the only difference is the placement:

- ``one_node``:  a Ray head with ``--cpus`` CPUs that runs every trial;
- ``two_nodes``: a head with no CPU (only the driver) and two worker nodes with ``--cpus / 2``
  CPUs each, each in its own mount namespace with the driver's folders hidden (benchmarks/
  tests/loopback_cluster.py, the harness the multi-node tests use): trials get everything through Ray's object store.

Reported per run: the study's wall time (first trial start to last trial end, Optuna's timestamps),
the driver's whole time, and per trial the time spent outside its trainable (Optuna's trial
duration minus Ray's ``time_total_s``: scheduling, actor start, fetching the payload). Goal: the
two-node study loses at most 15% wall time against the one-node study.

    python -m benchmarks.cluster_scaling --budget smoke --trials 4
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import machine, write_json
from tests.loopback_cluster import LoopbackCluster, can_isolate, start_mlflow_server, stop_process_group

GOAL_WALL_LOSS = 0.15
SPACE = "params:\n  architecture: mlp\n  n_critic: 1\n  batch_size: 64\n  loss: [bce, hinge]\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--study", default="dot_latent")
    p.add_argument("--budget", default="smoke", help="smoke | small | full (default smoke)")
    p.add_argument("--trials", type=int, default=4)
    p.add_argument("--cpus", type=int, default=2, help="CPUs in all: one node has them all, two nodes half each")
    p.add_argument("--data-root", help="dataset folder; default $GAN_DATA_ROOT")
    p.add_argument("--out", default="benchmarks/results/cluster_scaling.json")
    args = p.parse_args(argv)
    if args.cpus < 2 or args.cpus % 2:
        raise SystemExit(f"error: --cpus must be an even number >= 2, got {args.cpus}")
    why = can_isolate()
    if why:
        raise SystemExit(f"error: cannot start isolated nodes here: {why}")

    work = Path(tempfile.mkdtemp(prefix="cluster-scaling-"))
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32), "PYTHONUNBUFFERED": "1"}
    if args.data_root:
        env["GAN_DATA_ROOT"] = str(Path(args.data_root).resolve())
    env["GAN_EVAL_CACHE"] = str(work / "eval-cache")
    (work / "space.yaml").write_text(SPACE)
    server, uri = start_mlflow_server(work, env)
    try:
        runs = {"one_node": _run(args, work, env, uri, workers=0), "two_nodes": _run(args, work, env, uri, workers=2)}
    finally:
        stop_process_group(server)
    loss = runs["two_nodes"]["study_wall_s"] / runs["one_node"]["study_wall_s"] - 1.0
    write_json({
        "benchmark": "cluster_scaling", "study": args.study, "budget": args.budget, "trials": args.trials,
        "cpus": args.cpus, "runs": runs, "wall_loss": loss, "goal_wall_loss": GOAL_WALL_LOSS,
        "meets_goal": loss <= GOAL_WALL_LOSS, "machine": machine(),
    }, args.out)
    return 0


def _run(args, work: Path, env: dict[str, str], uri: str, *, workers: int) -> dict:
    label = "two_nodes" if workers else "one_node"
    root = work / label
    driver, shared = root / "driver", root / "shared"
    driver.mkdir(parents=True)
    shared.mkdir()
    data_root = Path(env.get("GAN_DATA_ROOT", Path.home() / ".cache" / "gan-refine-search" / "data"))
    hidden = [driver, data_root, Path(env["GAN_EVAL_CACHE"])]
    cluster = LoopbackCluster(root=root, hidden=hidden, env=env, temp_dir=Path(tempfile.mkdtemp(prefix="rt")),
                              head_cpus=0 if workers else args.cpus)
    try:
        cluster.start_head()
        for i in range(workers):
            cluster.add_node(f"node{i + 2}", cpus=args.cpus // workers)
            cluster.wait_for_cpus((i + 1) * (args.cpus // workers))
        cluster.wait_for_cpus(args.cpus)
        began = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, "-m", "search.run", "--study", args.study, "--name", f"scaling-{label}",
             "--budget", args.budget, "--trials", str(args.trials), "--study-file", str(work / "space.yaml"),
             "--pruner", "none", "--seed", "0", "--address", cluster.address, "--tracking-uri", uri,
             "--storage-path", (shared / "ray").as_uri(), "--runs-dir", str(driver / "runs"), "--quiet"],
            cwd=driver, env=env, capture_output=True, text=True)
        driver_s = time.perf_counter() - began
    finally:
        cluster.stop()
    if proc.returncode:
        raise SystemExit(f"error: the {label} study failed:\n{proc.stderr[-3000:]}")
    return {**_timings(f"sqlite:///{driver / 'runs' / 'optuna.db'}", f"scaling-{label}", shared / "ray"),
            "driver_s": driver_s}


def _timings(storage: str, name: str, ray_dir: Path) -> dict:
    """Wall time from Optuna's timestamps; per trial, its duration minus Ray's time inside the trainable."""
    import optuna

    trials = optuna.load_study(study_name=name, storage=storage).get_trials(deepcopy=False)
    inside = {}
    for result in ray_dir.glob("*/trial_*/result.json"):
        lines = [json.loads(ln) for ln in result.read_text().splitlines() if ln.strip()]
        if lines:
            number = int(result.parent.name.split("_")[1])
            inside[number] = float(lines[-1]["time_total_s"])
    outside = [t.duration.total_seconds() - inside[t.number] for t in trials if t.number in inside and t.duration]
    start = min(t.datetime_start for t in trials)
    end = max(t.datetime_complete for t in trials)
    return {"study_wall_s": (end - start).total_seconds(), "states": sorted(t.state.name for t in trials),
            "outside_trainable_s": outside, "outside_trainable_mean_s": sum(outside) / max(1, len(outside))}


if __name__ == "__main__":
    sys.exit(main())
