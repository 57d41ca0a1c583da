"""Fixtures of the cluster tests: the stores that outlive the head, as real servers on 127.0.0.1.

Session-scoped servers (started once, stopped at the end, by process id / ``pg_ctl``):

- ``postgres_server``: PostgreSQL 15 (``cluster_services.Postgres``). ``pg_database`` creates a fresh
  database in it per test and returns its SQLAlchemy URL (``postgresql+psycopg://``, password
  included), e.g. an Optuna storage.
- ``moto_s3_server``: moto's server (``cluster_services.MotoS3``): S3, and SSM for the start commands'
  reads; ``s3_bucket`` is a bucket in it.
- ``s3_env``: function-scoped; sets, for this test only (monkeypatch), the variables that point every
  S3 client of this process (boto3, pyarrow, MLflow) at moto with dummy credentials, and returns
  them as a dict for subprocesses and Ray runtime environments.

Module-scoped:

- ``mlflow_pg_s3_server``: ``mlflow server`` on 127.0.0.1 whose backend store is a PostgreSQL
  database and whose artifacts go to ``s3://<s3_bucket>/mlflow-<id>`` in moto, its stores configured
  through environment variables as ``cluster.yaml`` configures the head's server (without the head's
  basic-auth app and private address, which test_cluster_launch.py runs).

A test that loses the head (or the MLflow server) and resumes keeps using the same PostgreSQL server
and bucket: they are session-scoped precisely so that they outlive whatever the test kills.

test_cluster_launch.py starts its own PostgreSQL, moto and instance metadata service inside the fake
cluster's network namespace (fake_cluster.private_network), where these session servers are out of reach.
"""

from __future__ import annotations

import uuid

import pytest

import cluster_services as cs


@pytest.fixture(scope="session")
def postgres_server():
    problem = cs.postgres_available()
    if problem:
        pytest.skip(problem)
    pg = cs.start_postgres()
    try:
        yield pg
    finally:
        pg.stop()


@pytest.fixture
def pg_database(postgres_server):
    """A new, empty database in ``postgres_server``; returns its SQLAlchemy URL (password included)."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    postgres_server.create_database(name)
    return postgres_server.url(name)


@pytest.fixture(scope="session")
def moto_s3_server():
    try:
        import moto.server  # noqa: F401
    except ImportError:
        pytest.skip("moto[server] is not installed (pip install 'moto[server]')")
    s3 = cs.start_moto_s3()
    try:
        yield s3
    finally:
        s3.stop()


@pytest.fixture(scope="session")
def s3_bucket(moto_s3_server) -> str:
    return moto_s3_server.create_bucket("gan-refine-search-test")


@pytest.fixture
def s3_env(moto_s3_server, monkeypatch) -> dict[str, str]:
    env = moto_s3_server.env
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


@pytest.fixture(scope="module")
def mlflow_pg_s3_server(postgres_server, moto_s3_server, s3_bucket):
    suffix = uuid.uuid4().hex[:8]
    server = cs.start_mlflow_server(postgres_server, moto_s3_server, database=f"mlflow_{suffix}",
                                    bucket=s3_bucket, prefix=f"mlflow-{suffix}")
    try:
        yield server
    finally:
        server.stop()
