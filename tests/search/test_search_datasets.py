"""A study on another dataset end to end: its evaluator trained into a user folder, then
`search.run --dataset kmnist`, on synthetic KMNIST files (nothing downloaded)."""

from __future__ import annotations

import pytest
from optuna.trial import TrialState

from evaluation.classifier import EVALUATOR_DIR_ENV
from evaluation.train_classifier import main as train_classifier_main

from search_helpers import SMOKE_SPACE, mlflow_runs, optuna_trials, run_cli, write
from synthetic_data import write_idx_dataset

pytestmark = pytest.mark.slow


def test_smoke_study_on_kmnist_scores_with_the_user_folder_evaluator(tmp_path, search_env, monkeypatch):
    data = write_idx_dataset(tmp_path / "data", "kmnist", n_train=2000, n_test=1000)  # smoke scores 1000 reals
    evaluators = tmp_path / "evaluators"
    assert train_classifier_main(["--dataset", "kmnist", "--data-root", str(data), "--evaluator-dir", str(evaluators),
                                  "--epochs", "2", "--batch-size", "100"]) == 0
    env = {**search_env, EVALUATOR_DIR_ENV: str(evaluators), "GAN_DATA_ROOT": str(data)}
    space = write(tmp_path / "space.yaml", SMOKE_SPACE)
    proc = run_cli(["--study", "gan", "--dataset", "kmnist", "--budget", "smoke", "--trials", "2", "--pruner", "none",
                    "--study-file", str(space), "--num-cpus", "2"], cwd=tmp_path, env=env, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    trials = optuna_trials(f"sqlite:///{tmp_path / 'runs' / 'optuna.db'}", "gan")
    assert [t.state for t in trials] == [TrialState.COMPLETE, TrialState.COMPLETE]
    _, runs = mlflow_runs(f"sqlite:///{tmp_path / 'runs' / 'mlflow.db'}", "gan")
    for run in runs:
        assert run.data.tags["dataset"] == "kmnist" and run.data.tags["evaluator"].startswith("kmnist-lenet")
        assert len(run.data.tags["evaluator_sha256"]) == 64
    # --resume keeps the dataset the study was created with; another one is a one-line refusal
    refused = run_cli(["--name", "gan", "--resume", "--dataset", "mnist"], cwd=tmp_path, env=env, timeout=300)
    assert refused.returncode != 0
    assert refused.stderr.strip().splitlines()[-1].startswith("error: --dataset mnist conflicts with the resumed")
