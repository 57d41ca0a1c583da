"""The study's stores outside the head work with the real packages: Optuna on PostgreSQL, MLflow on
PostgreSQL + S3 through its server, Ray Tune checkpoints on S3 (moto stands in for S3)."""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path

import pytest

pytestmark = pytest.mark.cluster


def test_optuna_study_lives_in_postgres(pg_database, postgres_server):
    import optuna
    from sqlalchemy.engine import make_url

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(study_name="dot_latent", storage=pg_database, direction="minimize")
    # Fixed points, not sampled ones: the golden best value below must not depend on a draw.
    for x in (-1.0, 0.25, 0.75):
        study.enqueue_trial({"x": x})
    study.optimize(lambda t: (t.suggest_float("x", -1, 1) - 0.5) ** 2, n_trials=3)
    trial = study.ask()
    trial.report(12.5, step=100)
    study.tell(trial, state=optuna.trial.TrialState.PRUNED)

    # Another process (the resumed driver on a new head) loads the same study from the database.
    code = ("import optuna, sys; s = optuna.load_study(study_name='dot_latent', storage=sys.argv[1]); "
            "print(len(s.trials), sum(t.state.name == 'PRUNED' for t in s.trials), s.best_value, s.best_params['x'])")
    out = subprocess.run([sys.executable, "-c", code, pg_database], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    # Both 0.25 and 0.75 score 0.0625; the first one told is the best.
    assert out.stdout.split() == ["4", "1", "0.0625", "0.25"]

    # ... and it really is PostgreSQL that holds it.
    with postgres_server.connect(make_url(pg_database).database) as conn:
        names = [r[0] for r in conn.execute("SELECT study_name FROM studies").fetchall()]
    assert names == ["dot_latent"]


def test_mlflow_server_keeps_runs_in_postgres_and_artifacts_in_s3(mlflow_pg_s3_server, moto_s3_server, s3_bucket,
                                                                  postgres_server, tmp_path, monkeypatch):
    from mlflow import MlflowClient
    from sqlalchemy.engine import make_url

    # The client has no S3 settings at all: artifacts go through the server (proxied), which is what
    # lets a driver write them with no bucket credentials.
    for key in ("AWS_ENDPOINT_URL_S3", "MLFLOW_S3_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(key, raising=False)
    client = MlflowClient(mlflow_pg_s3_server.uri)
    exp_id = client.create_experiment(f"cluster-{uuid.uuid4().hex[:6]}")
    assert client.get_experiment(exp_id).artifact_location.startswith("mlflow-artifacts:")
    run = client.create_run(exp_id, tags={"search.role": "trial"})
    client.log_param(run.info.run_id, "loss", "hinge")
    for step, fid in enumerate([80.0, 41.5, 30.25]):
        client.log_metric(run.info.run_id, "fid_intermediate", fid, step=step)
    artifact = tmp_path / "frontier.csv"
    artifact.write_text("step,fid\n0,80.0\n1,41.5\n")
    client.log_artifact(run.info.run_id, str(artifact), artifact_path="refinement")
    client.set_terminated(run.info.run_id)

    # The artifact is an object in the bucket, under the server's --artifacts-destination.
    prefix = mlflow_pg_s3_server.artifacts_destination.removeprefix(f"s3://{s3_bucket}/")
    key = f"{prefix}/{exp_id}/{run.info.run_id}/artifacts/refinement/frontier.csv"
    assert key in moto_s3_server.keys(s3_bucket, prefix)
    body = moto_s3_server.client().get_object(Bucket=s3_bucket, Key=key)["Body"].read()
    assert body == artifact.read_bytes()

    # The run's metrics are rows in PostgreSQL, not in a file on the server's disk.
    with postgres_server.connect(make_url(mlflow_pg_s3_server.backend_store_uri).database) as conn:
        rows = conn.execute("SELECT step, value FROM metrics WHERE run_uuid = %s AND key = 'fid_intermediate' "
                            "ORDER BY step", (run.info.run_id,)).fetchall()
    assert [tuple(r) for r in rows] == [(0, 80.0), (1, 41.5), (2, 30.25)]
    assert list(Path(mlflow_pg_s3_server.root).glob("**/*.db")) == []
    # And a client reads the artifact back through the server.
    back = client.download_artifacts(run.info.run_id, "refinement/frontier.csv", str(tmp_path / "back"))
    assert Path(back).read_bytes() == artifact.read_bytes()


def _tune_checkpoints(storage_path: str, name: str, env: dict[str, str]):
    """A Tune run that checkpoints steps 1 and 2 and then fails (a lost node), and a restore that
    resumes the errored trial from its checkpoint in storage and finishes step 3."""
    import ray
    from ray import tune

    def trainable(config):
        import tempfile

        from ray.tune import Checkpoint

        start = 0
        ckpt = tune.get_checkpoint()
        if ckpt is not None:
            with ckpt.as_directory() as d:
                start = int((Path(d) / "step.txt").read_text())
        for step in range(start + 1, 4):
            if start == 0 and step == 3:
                raise RuntimeError("the node running this trial was lost")
            with tempfile.TemporaryDirectory() as d:
                (Path(d) / "step.txt").write_text(str(step))
                tune.report({"step": step, "resumed_from": start}, checkpoint=Checkpoint.from_directory(d))

    ray.init(num_cpus=1, include_dashboard=False, runtime_env={"env_vars": env}, log_to_driver=False)
    try:
        run = tune.with_resources(trainable, {"cpu": 1})
        tuner = tune.Tuner(run, run_config=tune.RunConfig(
            name=name, storage_path=storage_path, checkpoint_config=tune.CheckpointConfig(num_to_keep=1)))
        first = tuner.fit()[0]
        assert first.error is not None
        with first.checkpoint.as_directory() as d:
            assert (Path(d) / "step.txt").read_text() == "2"
        base, _, query = storage_path.partition("?")
        experiment = f"{base.rstrip('/')}/{name}" + (f"?{query}" if query else "")
        again = tune.Tuner.restore(experiment, run, resume_errored=True).fit()[0]
        return first, again
    finally:
        ray.shutdown()


@pytest.mark.parametrize("route", ["uri", "env"])
def test_ray_tune_checkpoints_on_s3(route, moto_s3_server, s3_bucket, s3_env, monkeypatch):
    """Ray Tune's storage on S3 with the endpoint given two ways:

    - ``uri``: in the storage path itself, pyarrow's URI options
      (``s3://bucket/ray?endpoint_override=127.0.0.1:PORT&scheme=http``): the filesystem object built
      from it carries the endpoint to every worker; nothing else is needed but credentials.
    - ``env``: a plain ``s3://bucket/ray`` and ``AWS_ENDPOINT_URL_S3`` in the environment of the driver
      and of every worker (here through the job's runtime_env), which pyarrow reads.
    """
    name = f"tune-{route}-{uuid.uuid4().hex[:6]}"
    if route == "uri":
        storage_path = moto_s3_server.pyarrow_uri(s3_bucket, "ray")
        env = {k: v for k, v in s3_env.items() if k != "AWS_ENDPOINT_URL_S3"}
        monkeypatch.delenv("AWS_ENDPOINT_URL_S3")
    else:
        storage_path = f"s3://{s3_bucket}/ray"
        env = s3_env
    _, again = _tune_checkpoints(storage_path, name, env)
    keys = moto_s3_server.keys(s3_bucket, f"ray/{name}/")
    assert any(k.endswith("/step.txt") and "/checkpoint_" in k for k in keys), keys
    assert any(k.endswith("tuner.pkl") for k in keys), keys  # the experiment state a restore reads
    # The restored trial did not start over: it resumed from its checkpoint in the bucket.
    assert again.error is None, again.error
    assert again.metrics["step"] == 3 and again.metrics["resumed_from"] == 2
