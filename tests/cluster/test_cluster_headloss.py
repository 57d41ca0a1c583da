"""Losing the head: a study whose state lives outside it (Optuna and MLflow on PostgreSQL, artifacts and
Ray checkpoints on S3) survives SIGKILL of its driver and its whole Ray runtime, and finishes from a
fresh Ray head with a new temporary folder: every trial ends in exactly one final state, one MLflow
run per trial, the cut-off trial reruns from its checkpoint read back from S3.

Real servers on 127.0.0.1: PostgreSQL 15 (Debian's binaries), moto's S3 server, `mlflow server`
with a PostgreSQL backend and an S3 artifact destination (tests/cluster/conftest.py).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from optuna.trial import TrialState

from search_helpers import SMOKE_SPACE, mlflow_runs, wait_for, write

pytestmark = pytest.mark.cluster


def _driver(args: list[str], cwd: Path, env: dict[str, str], log: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "search.run", *args], cwd=cwd, env=env, stdout=log.open("w"),
                            stderr=subprocess.STDOUT, start_new_session=True)


def test_a_study_outlives_its_head(tmp_path, data_root, postgres_server, moto_s3_server, s3_bucket,
                                   mlflow_pg_s3_server):
    import optuna
    from mlflow import MlflowClient

    from gan_models import load_models

    postgres_server.create_database("headloss")
    storage = postgres_server.url("headloss")
    tracking = mlflow_pg_s3_server.uri
    space = write(tmp_path / "space.yaml", SMOKE_SPACE + "  loss: bce\n")
    env = {**os.environ, **moto_s3_server.env, "GAN_DATA_ROOT": str(data_root), "PYTHONUNBUFFERED": "1",
           "GAN_EVAL_CACHE": str(tmp_path / "eval-cache")}
    stores = ["--storage", storage, "--tracking-uri", tracking,
              "--storage-path", f"s3://{s3_bucket}/headloss/ray", "--runs-dir", str(tmp_path / "runs")]
    args = ["--study", "gan", "--budget", "smoke", "--trials", "3", "--pruner", "none", "--study-file", str(space),
            "--num-cpus", "2", "--max-concurrent", "1", *stores]

    # 1. the study runs; once trial 0 is complete and trial 1 has checkpointed, the head is lost
    # Ray's session folder: short (its Unix sockets' paths are limited to 107 bytes), new for each head
    first = _driver(args, tmp_path, {**env, "RAY_TMPDIR": tempfile.mkdtemp(prefix="rt", dir="/tmp")},
                    tmp_path / "driver-1.log")
    db = optuna.storages.RDBStorage(storage)  # one engine for all the polling: PostgreSQL counts connections
    try:
        def cut_point():
            try:
                trials = optuna.load_study(study_name="gan", storage=db).get_trials(deepcopy=False)
            except KeyError:
                return None
            done = [t for t in trials if t.state == TrialState.COMPLETE]
            running = [t for t in trials if t.state == TrialState.RUNNING and t.user_attrs.get("checkpoint_uri")]
            return running[0] if done and running else None

        victim = wait_for(cut_point, first, timeout=900)
        os.killpg(first.pid, signal.SIGKILL)  # the driver and every Ray process it started: the head is gone
        first.wait(60)
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
    assert victim.user_attrs["checkpoint_uri"].startswith(f"s3://{s3_bucket}/headloss/ray/gan-session001/")

    # 2. a fresh head (a new Ray, a new temporary folder) continues the study from the shared stores
    resume = ["--name", "gan", "--resume", "--num-cpus", "2", "--max-concurrent", "1", *stores]
    second = subprocess.run([sys.executable, "-m", "search.run", *resume], cwd=tmp_path, capture_output=True,
                            text=True, env={**env, "RAY_TMPDIR": tempfile.mkdtemp(prefix="rt", dir="/tmp")},
                            timeout=900)
    (tmp_path / "driver-2.log").write_text(second.stdout + second.stderr)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    assert f"trials {victim.number} were interrupted" in second.stdout

    trials = optuna.load_study(study_name="gan", storage=db).get_trials(deepcopy=False)
    assert all(t.state in (TrialState.COMPLETE, TrialState.FAIL) for t in trials)  # nothing left RUNNING
    cut = trials[victim.number]
    assert cut.state == TrialState.FAIL and cut.user_attrs["interrupted"] is True
    (rerun,) = [t for t in trials if t.user_attrs.get("retry_of") == victim.number]
    assert rerun.state == TrialState.COMPLETE and rerun.params == victim.params, rerun.user_attrs.get("fail_reason")
    # it continued from the checkpoint the lost head had written to S3, not from step 0 (the intermediate
    # values are recorded at images trained: batch_size x n_critic a step)
    assert rerun.user_attrs["resume_from"] == cut.user_attrs["checkpoint_uri"]
    images_per_step = victim.params["batch_size"] * victim.params["n_critic"]
    assert rerun.user_attrs["resumed_from_step"] * images_per_step >= min(victim.intermediate_values)
    assert sum(t.state == TrialState.COMPLETE for t in trials) == 3  # --trials 3 finished trials

    parents, runs = mlflow_runs(tracking, "gan")
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    numbers = [int(r.data.tags["optuna.trial_number"]) for r in runs]
    assert sorted(numbers) == sorted(set(numbers)) == [t.number for t in trials]  # one run per trial
    by_number = {int(r.data.tags["optuna.trial_number"]): r for r in runs}
    assert by_number[victim.number].info.status == "KILLED"
    client = MlflowClient(tracking)
    for t in trials:
        if t.state == TrialState.COMPLETE:  # the model, read back from S3 through the server
            local = client.download_artifacts(by_number[t.number].info.run_id, "checkpoint/models.pt",
                                              str(tmp_path / f"models-{t.number}"))
            models = load_models(local)
            assert models.step * models.config.images_per_step >= 6400  # the smoke budget's images
    keys = [o["Key"] for o in moto_s3_server.client().list_objects_v2(
        Bucket=s3_bucket, Prefix="headloss/ray/").get("Contents", [])]
    assert any(k.startswith("headloss/ray/gan-session001/") for k in keys)
    assert any(k.startswith("headloss/ray/gan-session002/") for k in keys)
