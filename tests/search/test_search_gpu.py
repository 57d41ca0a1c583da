"""Trials on GPUs, end to end through the real CLI.

- On any machine: a locally started Ray with one logical GPU (``--num-gpus 1``) and 2 CPUs gets three
  trials at ``--gpus-per-trial 0.25``; the CPUs cap them at two at once, which the study says before it
  starts and measures after (the third trial waits for a CPU, so it must not count as sharing the GPU
  while it waits). torch sees no CUDA there, so the trials train on the CPU (marker slow).
- Where CUDA is present (marker gpu): the same study on the real GPU, whose trials train there and
  write their peak GPU memory to their MLflow runs.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from optuna.trial import TrialState

from search_helpers import SMOKE_SPACE, mlflow_runs, optuna_trials, run_cli, write


def _packed_study(tmp_path: Path, env: dict[str, str], extra: list[str], *, trials: int, gpus_per_trial: str) -> dict:
    space = write(tmp_path / "space.yaml", SMOKE_SPACE)
    proc = run_cli(["--study", "dot_latent", "--budget", "smoke", "--trials", str(trials), "--study-file", str(space),
                    "--pruner", "none", "--seed", "0", "--gpus-per-trial", gpus_per_trial, "--cpus-per-trial", "1",
                    "--num-cpus", "2", "--precision", "bf16", *extra], cwd=tmp_path, env=env, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    runs = tmp_path / "runs"
    trials = optuna_trials(f"sqlite:///{runs / 'optuna.db'}", "dot_latent")
    parents, trial_runs = mlflow_runs(f"sqlite:///{runs / 'mlflow.db'}", "dot_latent")
    return {"proc": proc, "trials": trials, "parent": parents[0], "runs": trial_runs}


def _check_packing(study: dict, gpus_per_trial: str) -> str:
    trials, runs = study["trials"], study["runs"]
    assert {t.state for t in trials} == {TrialState.COMPLETE}
    gpus = {t.user_attrs["gpu"] for t in trials}
    assert len(gpus) == 1 and re.fullmatch(r"[0-9.]+:0", next(iter(gpus)))  # all on GPU 0 of this node
    for t in trials:  # Ray started each trial's actor after Optuna's ask and before its end
        assert t.datetime_start.timestamp() <= t.user_attrs["ran_from"] <= t.datetime_complete.timestamp()
    line = re.search(rf"^GPU (\S+): {len(trials)} trials, up to (\d) at once", study["proc"].stdout, re.M)
    assert line and line.group(1) in gpus
    assert study["parent"].data.metrics["gpus_used"] == 1.0
    assert study["parent"].data.metrics["gpu_trials_at_once_max"] == float(line.group(2))
    assert study["parent"].data.params["precision"] == "bf16"
    for run in runs:  # the study-wide settings that change the numbers are each trial's params
        assert run.data.params["precision"] == "bf16" and run.data.params["gpus_per_trial"] == gpus_per_trial
        assert run.data.tags["gpu"] in gpus
    return line.group(2)


@pytest.mark.slow
def test_cpus_cap_trials_sharing_one_logical_gpu(tmp_path, search_env):
    study = _packed_study(tmp_path, search_env, ["--num-gpus", "1"], trials=3, gpus_per_trial="0.25")
    assert ("note: CPUs cap GPU sharing: a node with 1 GPUs and 2 CPUs runs 2 trials at once where "
            "--gpus-per-trial 0.25 fits 4; --cpus-per-trial 0.5 would fill them") in study["proc"].stdout
    # two slots of 1 CPU each: two ran together, and the third, asked ahead by Ray while it waited for
    # a CPU, counts from when it got one
    assert _check_packing(study, "0.25") == "2"
    for run in study["runs"]:
        assert run.data.tags["device"] == "cpu"  # a logical GPU torch cannot see: trained on the CPU
        assert "gpu_memory_peak_mib" not in run.data.metrics


@pytest.mark.gpu
def test_two_trials_share_the_real_gpu(tmp_path, search_env):
    study = _packed_study(tmp_path, search_env, [], trials=2, gpus_per_trial="0.5")
    _check_packing(study, "0.5")
    for run in study["runs"]:
        assert run.data.tags["device"].startswith("cuda (")
        assert run.data.metrics["gpu_memory_peak_mib"] > 0
        assert run.data.metrics["gpu_memory_reserved_peak_mib"] >= run.data.metrics["gpu_memory_peak_mib"]
