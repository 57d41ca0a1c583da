"""Helpers for the search tests: the CLI in a subprocess, small study files, store readers."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from loopback_cluster import free_port, stop_process_group  # noqa: F401 - re-exported to the tests

PY = sys.executable

# A space small enough for 2 CPU cores: the MLP pair, at most 2 critic steps. The study file is the
# product's own way to narrow a registered space; every other parameter is still searched.
SMOKE_SPACE = "params:\n  architecture: mlp\n  n_critic: {low: 1, high: 2}\n  batch_size: [32, 64]\n"
GOOD_CONFIG = {"architecture": "mlp", "loss": "bce", "n_critic": 1, "lr_g": 0.0002, "lr_d": 0.0002, "beta1": 0.5,
               "beta2": 0.999, "spectral_norm": False, "dropout": 0.0, "batch_norm": True, "ema_decay": 0.0,
               "latent_prior": "normal", "batch_size": 64}


def plan_for(study: str, storage: str, **options):
    """The plan ``python -m search.run --study STUDY --budget smoke`` makes (recipes off unless asked for),
    by the CLI's own step, on a machine without GPUs."""
    from search.hardware import Hardware
    from search.options import SearchOptions
    from search.settings import plan_study

    opts = SearchOptions(**{"study": study, "budget": "smoke", "recipes": False, **options})
    return plan_study(opts, storage, Hardware(cluster=False, gpus=0, cpus=2))


def run_cli(args: list[str], *, cwd: Path, env: dict[str, str], timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([PY, "-m", "search.run", *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def optuna_trials(storage: str, name: str):
    import optuna

    return optuna.load_study(study_name=name, storage=storage).get_trials(deepcopy=False)


def mlflow_runs(uri: str, name: str):
    """(parent runs, trial runs) of a study's experiment."""
    from mlflow import MlflowClient
    from mlflow.entities import ViewType

    c = MlflowClient(uri)
    exp = c.get_experiment_by_name(name)
    runs = c.search_runs([exp.experiment_id], run_view_type=ViewType.ALL, max_results=1000)
    parents = [r for r in runs if r.data.tags.get("search.role") == "study"]
    trials = [r for r in runs if r.data.tags.get("search.role") == "trial"]
    return parents, trials


def artifact_paths(uri: str, run_id: str, path: str = "") -> list[str]:
    from mlflow import MlflowClient

    c = MlflowClient(uri)
    out = []
    for f in c.list_artifacts(run_id, path):
        out.extend(artifact_paths(uri, run_id, f.path) if f.is_dir else [f.path])
    return out


def wait_for(predicate, proc: subprocess.Popen, timeout: float = 600):
    """Poll ``predicate`` until it returns something truthy, while the driver ``proc`` still runs."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        assert proc.poll() is None, f"driver exited early with {proc.returncode}"
        time.sleep(0.5)
    raise AssertionError("timed out waiting")


@contextlib.contextmanager
def small_tmpfs(folder: Path, size: str) -> Iterator[Path]:
    """``folder`` as a tmpfs of ``size`` (e.g. "20m") for the duration: a disk that fills up (needs root; the
    test is skipped, saying why, where mounting is refused). Unmounted after, even when busy."""
    import pytest

    folder.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)], capture_output=True,
                             text=True)
    if mounted.returncode != 0:
        pytest.skip(f"needs root to mount a small tmpfs: {mounted.stderr.strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)
