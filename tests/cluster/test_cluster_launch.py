"""cluster.yaml launches: `ray up` of cluster.yaml itself (its provider and node_configs replaced by
Ray's fake multi-node provider, see fake_cluster.py) on this machine, in a network namespace of its
own, against real stores and AWS stand-ins there: PostgreSQL, moto's SSM and S3, and an instance
metadata service. Nothing is created for the cluster but what the one-time setup of docs/cluster.md
makes: the bucket, an empty PostgreSQL server, the four SSM parameters.

One cluster for the module, in order: `ray up` starts a head and no worker, with MLflow behind its
basic-auth app, every setting read at start (region from the metadata service, the rest from SSM);
the search driver as a Ray Job makes the autoscaler add GPU workers, whose trials log to MLflow with
the login their own start command read from SSM; a Ray Job asking for half a GPU lands on a GPU
worker; a job survives the death of the client that submitted it and `ray job stop` stops one;
`ray down` leaves nothing running. The stand-in workload is one line (``WORKLOAD``).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import shlex
import signal
import socket
import subprocess
import time

import pytest
import requests

import cluster_services as cs
import fake_cluster as fc

pytestmark = pytest.mark.cluster

PG_PASSWORD_PARAM = "/gan-refine-search/pg-password"
MLFLOW_PASSWORD_PARAM = "/gan-refine-search/mlflow-password"
PG_ADDRESS_PARAM = "/gan-refine-search/pg-address"
BUCKET_PARAM = "/gan-refine-search/bucket"
MLFLOW_USER = "admin"
REGION = "eu-north-1"  # the fake nodes' region, as the metadata service says; cluster.yaml names none for them
BUCKET = "gan-refine-search-test"
DATABASES = ("optuna", "mlflow", "mlflow_auth")


def gpu_task_entrypoint(cluster: fc.FakeCluster) -> list[str]:
    """The stand-in workload: one task with num_gpus=0.5 (tests/cluster/jobs/gpu_task.py), told the
    SHA-256 of MLflow's password to compare with the driver's and the task's."""
    password_sha256 = hashlib.sha256(cluster.mlflow_auth[1].encode()).hexdigest()
    return ["python", "tests/cluster/jobs/gpu_task.py", "3", password_sha256]


def search_entrypoint(cluster: fc.FakeCluster) -> list[str]:
    """The real workload: the search driver, as docs/cluster.md submits it (its MLflow server from
    the head's environment, MLFLOW_TRACKING_URI; the stores from the flags)."""
    return ["python", "-m", "search.run", "--study", "dot_latent", "--budget", "smoke", "--trials", "2",
            "--address", "auto", "--gpus-per-trial", "0.5", "--cpus-per-trial", "1",
            "--storage", f"postgresql+psycopg://gan@{cluster.pg_address}/optuna",
            "--storage-path", f"s3://{BUCKET}/gan-refine-search/ray"]


WORKLOAD = gpu_task_entrypoint  # the search driver: WORKLOAD = search_entrypoint


@pytest.fixture(scope="module")
def cluster():
    """`ray up` of cluster.yaml on the fake provider, in a network namespace with the one-time setup's
    resources; stopped (by its marker) whatever the tests did, then the stores."""
    pytest.importorskip("flask_wtf", reason="MLflow's basic-auth app needs Flask-WTF: pip install 'mlflow[auth]'")
    pytest.importorskip("moto.server", reason="moto[server] is not installed (pip install 'moto[server]')")
    problem = cs.postgres_available()
    if problem:
        pytest.skip(problem)
    import boto3

    with contextlib.ExitStack() as stack:
        try:
            stack.enter_context(fc.private_network())
        except PermissionError as exc:
            pytest.skip(f"the fake cluster needs a network namespace of its own (root): {exc}")
        pg = cs.start_postgres()  # empty: the head creates its databases
        stack.callback(pg.stop)
        moto = cs.start_moto_s3()
        stack.callback(moto.stop)
        imds = cs.start_instance_metadata(REGION)
        stack.callback(imds.stop)
        # The one-time setup's bucket and SSM parameters, in the nodes' region.
        aws = {"endpoint_url": moto.endpoint, "region_name": REGION, "aws_access_key_id": "testing",
               "aws_secret_access_key": "testing"}
        boto3.client("s3", **aws).create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})
        mlflow_password = secrets.token_urlsafe(18)
        pg_address = f"{pg.host}:{pg.port}"
        ssm = boto3.client("ssm", **aws)
        for name, value, kind in ((PG_PASSWORD_PARAM, pg.password, "SecureString"),
                                  (MLFLOW_PASSWORD_PARAM, mlflow_password, "SecureString"),
                                  (PG_ADDRESS_PARAM, pg_address, "String"), (BUCKET_PARAM, BUCKET, "String")):
            ssm.put_parameter(Name=name, Value=value, Type=kind, Overwrite=True)
        c = fc.FakeCluster.create(fc.load_cluster_yaml(), node_env=cs.node_aws_env(moto, imds))
        stack.callback(c.cleanup)
        c.pg = pg
        c.pg_address = pg_address
        c.pg_url = pg.url
        c.aws = aws
        c.imds = imds
        c.mlflow_uri = f"http://{fc.FAKE_NODE_IP}:{c.ports['mlflow']}"  # the head's private address, here
        c.mlflow_auth = (MLFLOW_USER, mlflow_password)
        yield c


def job_status(cluster: fc.FakeCluster, job_id: str) -> str:
    r = requests.get(f"{cluster.dashboard}/api/jobs/{job_id}", timeout=10,
                     headers={"Authorization": f"Bearer {cluster.token}"})
    if r.status_code == 404:
        return "NOT_SUBMITTED_YET"
    r.raise_for_status()
    return r.json()["status"]


def wait_job(cluster: fc.FakeCluster, job_id: str, states: set[str], timeout: float) -> str:
    return cluster.wait_for(lambda: (s := job_status(cluster, job_id)) in states and s, timeout,
                            f"job {job_id} to reach {sorted(states)}")


def job_logs(cluster: fc.FakeCluster, job_id: str) -> str:
    return cluster.job("logs", job_id, check=False).stdout


def tagged_json(text: str, tag: str) -> dict:
    for line in text.splitlines():
        if line.startswith(tag + " "):
            return json.loads(line[len(tag) + 1:])
    raise AssertionError(f"no {tag} line in:\n{text[-3000:]}")


def port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0


def gpu_workers(cluster: fc.FakeCluster) -> list[str]:
    return [n for n, e in cluster.nodes_in_state().items() if e["tags"].get("ray-user-node-type") == "gpu_worker"]


def test_up_starts_the_head_alone_with_token_auth_and_mlflow_behind_basic_auth(cluster):
    cluster.up()
    nodes = cluster.nodes_in_state()
    assert [e["tags"]["ray-user-node-type"] for e in nodes.values()] == ["head"]
    status = cluster.ray("status", "--address", cluster.gcs_address).stdout
    assert "gpu_worker" not in status.split("Pending:")[0], status
    assert "0.0/8.0 CPU" in status and "GPU" not in status, status
    # cluster.yaml's setup command ran on the head as written (the fake's pip records it)
    (setup,) = fc.load_cluster_yaml()["setup_commands"]
    recorded = [json.loads(line)["argv"] for line in (cluster.head_home / fc.PIP_RECORD).read_text().splitlines()]
    assert recorded == [shlex.split(setup)[1:]]
    # The region came from the metadata service, IMDSv2 only: a token first, every read with it.
    assert ("PUT", "/latest/api/token", False) in cluster.imds.requests
    reads = [r for r in cluster.imds.requests if r[0] == "GET"]
    assert reads and all(with_token for _, _, with_token in reads), reads
    assert {path.rstrip("/") for _, path, _ in reads} == {"/latest/meta-data/placement/availability-zone"}
    # The head made the databases the stores need in the empty PostgreSQL server (address from SSM).
    with cluster.pg.connect() as conn:
        names = {r[0] for r in conn.execute("SELECT datname FROM pg_database")}
    assert set(DATABASES) <= names, names
    # Token authentication: the Jobs API refuses a request without the token.
    assert requests.get(f"{cluster.dashboard}/api/jobs/", timeout=10).status_code == 401
    assert requests.get(f"{cluster.dashboard}/api/jobs/", timeout=10,
                        headers={"Authorization": f"Bearer {cluster.token}"}).status_code == 200
    # The head's MLflow server (cluster.yaml's command): up, /health open to anyone (the driver's
    # preflight asks it from every node, without credentials) ...
    mlflow = cluster.mlflow_uri
    cluster.wait_for(lambda: _healthy(mlflow), 240, "the head's MLflow server")
    # ... everything else behind the login (the admin user, its password from SSM) ...
    experiment = f"{mlflow}/api/2.0/mlflow/experiments/get?experiment_id=0"
    assert requests.get(experiment, timeout=10).status_code == 401
    assert requests.get(experiment, timeout=10, auth=(MLFLOW_USER, "not-the-password")).status_code == 401
    assert requests.get(experiment, timeout=10, auth=cluster.mlflow_auth).status_code == 200
    assert requests.get(f"{mlflow}/version", timeout=10).status_code == 401
    # ... a Host header --allowed-hosts does not list is refused (DNS rebinding), credentials or not
    assert requests.get(experiment, timeout=10, auth=cluster.mlflow_auth,
                        headers={"Host": "rebind.example:5000"}).status_code == 403
    # the users live in PostgreSQL (they outlive the head): the admin, created from SSM's password
    with cluster.pg.connect("mlflow_auth") as conn:
        assert conn.execute("SELECT username, is_admin FROM users").fetchall() == [(MLFLOW_USER, True)]
    # the auth app's ini on the head: owner-only, no password in it
    ini = cluster.head_home / "mlflow-auth.ini"
    assert ini.stat().st_mode & 0o777 == 0o600
    assert "password" not in ini.read_text() and cluster.mlflow_auth[1] not in ini.read_text()
    # bound to the head's address (127.0.0.1 on the fake), not to a wildcard: another local address of
    # the machine (127.0.0.2, on the loopback too) gets no answer
    with socket.socket() as s:
        s.settimeout(2)
        assert s.connect_ex(("127.0.0.2", cluster.ports["mlflow"])) != 0, "MLflow answers on 127.0.0.2"
    # artifacts go through the server's proxy
    from mlflow import MlflowClient

    os.environ.update(MLFLOW_TRACKING_USERNAME=MLFLOW_USER, MLFLOW_TRACKING_PASSWORD=cluster.mlflow_auth[1])
    try:
        assert MlflowClient(mlflow).get_experiment("0").artifact_location.startswith("mlflow-artifacts:")
    finally:
        for name in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
            os.environ.pop(name, None)


def _healthy(uri: str) -> bool:
    try:
        return requests.get(uri + "/health", timeout=2).status_code == 200
    except requests.RequestException:
        return False


def test_what_a_driver_can_learn_about_launchable_node_types(cluster):
    """Record (for search/preflight.py) which API tells a driver, with no GPU node up yet, what the
    autoscaler can launch. See the printed AUTOSCALER_VIEW line."""
    cluster.job("submit", "--working-dir", str(fc.REPO / "tests" / "cluster" / "jobs"),
                "--submission-id", "autoscaler-view", "--", "python", "autoscaler_view.py", timeout=180)
    view = tagged_json(job_logs(cluster, "autoscaler-view"), "AUTOSCALER_VIEW")
    print("AUTOSCALER_VIEW", json.dumps(view, indent=1))
    assert view["cluster_resources"].get("GPU", 0) == 0  # no GPU node is up yet
    # On Ray 2.60 `ray up` (autoscaler v2) publishes no cluster config in the GCS: the
    # ray._private.state API search/preflight.py relies on answers None here ...
    assert view["gcs_cluster_config"] is None and view["get_max_resources_from_cluster_config"] is None
    # ... while the autoscaling config `ray up` put on the head names the GPU node type.
    assert view["bootstrap_config_node_types"]["gpu_worker"] == {"resources": {"CPU": 4, "GPU": 1},
                                                                 "max_workers": 4}
    assert gpu_workers(cluster) == []


def test_the_search_driver_as_a_job_scales_gpu_workers_from_zero(cluster, data_root):
    """The real workload: `search.run --gpus-per-trial 0.5` submitted as a Ray Job while no GPU node
    exists; the driver accepts the GPUs the autoscaler can launch, the autoscaler adds gpu workers,
    the trials run there (on the CPU: no CUDA here), the study's record lands in PostgreSQL and its
    checkpoints in the bucket."""
    import boto3
    import optuna

    assert gpu_workers(cluster) == []
    cluster.job("submit", "--working-dir", str(fc.REPO), "--submission-id", "search", "--no-wait",
                "--", *search_entrypoint(cluster), "--data-root", str(data_root))
    assert wait_job(cluster, "search", {"SUCCEEDED", "FAILED", "STOPPED"}, 1500) == "SUCCEEDED", \
        job_logs(cluster, "search")[-6000:]
    logs = job_logs(cluster, "search")
    assert "its autoscaler can add nodes with 1 GPUs" in logs
    assert gpu_workers(cluster)
    storage = cluster.pg_url("optuna")
    trials = optuna.load_study(study_name="dot_latent", storage=storage).get_trials(deepcopy=False)
    assert len(trials) == 2 and {t.state.name for t in trials} <= {"COMPLETE", "PRUNED"}
    # the trials' runs, which the workers created themselves, logged in with what their start command
    # read from SSM
    runs = requests.post(f"{cluster.mlflow_uri}/api/2.0/mlflow/runs/search", timeout=30, auth=cluster.mlflow_auth,
                         json={"experiment_ids": [_experiment_id(cluster, "dot_latent")],
                               "filter": "tags.`search.role` = 'trial'"})
    assert runs.status_code == 200, runs.text
    assert len(runs.json().get("runs", [])) == 2, runs.json()
    s3 = boto3.client("s3", **cluster.aws)
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix="gan-refine-search/ray/").get("Contents", [])]
    assert any("/checkpoint_" in k for k in keys), keys[:20]
    # the trials' MLflow artifacts (sample grids, models), through the head's proxy, in the bucket the
    # head read from SSM
    assert s3.list_objects_v2(Bucket=BUCKET, Prefix="gan-refine-search/mlflow/").get("Contents")


def _experiment_id(cluster: fc.FakeCluster, name: str) -> str:
    r = requests.get(f"{cluster.mlflow_uri}/api/2.0/mlflow/experiments/get-by-name", timeout=30,
                     auth=cluster.mlflow_auth, params={"experiment_name": name})
    assert r.status_code == 200, r.text
    return r.json()["experiment"]["experiment_id"]


def test_a_gpu_workload_makes_the_autoscaler_add_gpu_workers(cluster):
    # the study before it scaled from zero; this plain task must land on a gpu worker too
    started = time.monotonic()
    cluster.job("submit", "--working-dir", str(fc.REPO), "--submission-id", "gpu-workload", "--no-wait",
                "--", *WORKLOAD(cluster))
    assert wait_job(cluster, "gpu-workload", {"SUCCEEDED", "FAILED", "STOPPED"}, 300) == "SUCCEEDED", \
        job_logs(cluster, "gpu-workload")
    elapsed = time.monotonic() - started
    assert gpu_workers(cluster), cluster.nodes_in_state()
    if WORKLOAD is gpu_task_entrypoint:
        seen = tagged_json(job_logs(cluster, "gpu-workload"), "GPU_TASK")
        assert seen["node_id"] != seen["driver_node_id"]  # the task ran on a new node, not the head
        assert seen["gpu_ids"], seen  # ... that has a GPU
        assert seen["project"] and os.path.isdir(os.path.join(seen["project"], "search")), seen
        assert seen["pgpassword_set"], seen  # the driver has the database password (SSM -> env)
        # MLflow's address and login: the driver's from the head's start command, the task's from the
        # worker's own (SSM -> env); the worker never gets the database password
        for side in ("driver", "task"):
            assert seen[f"{side}_mlflow"] == {"uri": cluster.mlflow_uri, "user": MLFLOW_USER,
                                              "password_matches": True}, seen
        assert seen["task_pgpassword_set"] is False, seen
        # each node's region, from the metadata service, in the environment of its Ray processes
        assert seen["driver_region"] == seen["task_region"] == REGION, seen
    status = cluster.ray("status", "--address", cluster.gcs_address).stdout
    assert "gpu_worker" in status, status
    print(f"GPU workload done in {elapsed:.0f} s, workers: {gpu_workers(cluster)}")


def test_a_job_outlives_its_client_and_job_stop_stops_one(cluster):
    # `ray job submit` without --no-wait follows the logs; the user's terminal (or laptop) goes away.
    client = subprocess.Popen(
        [str(fc.Path(fc.PY).parent / "ray"), "job", "submit", "--address", cluster.dashboard,
         "--submission-id", "outlives-client", "--", "python", "-c",
         "import time; time.sleep(12); print('JOB_DONE', flush=True)"],
        env=cluster.client_env, cwd=cluster.state_dir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True)
    try:
        wait_job(cluster, "outlives-client", {"RUNNING"}, 120)
    finally:
        os.killpg(client.pid, signal.SIGKILL)
        client.wait(30)
    assert job_status(cluster, "outlives-client") == "RUNNING"
    assert wait_job(cluster, "outlives-client", {"SUCCEEDED", "FAILED", "STOPPED"}, 120) == "SUCCEEDED"
    assert "JOB_DONE" in job_logs(cluster, "outlives-client")
    assert "succeeded" in cluster.job("status", "outlives-client").stdout.lower()

    cluster.job("submit", "--submission-id", "to-stop", "--no-wait", "--", "python", "-c",
                "import time; time.sleep(600)")
    wait_job(cluster, "to-stop", {"RUNNING"}, 120)
    cluster.job("stop", "to-stop")
    assert wait_job(cluster, "to-stop", {"STOPPED", "FAILED", "SUCCEEDED"}, 60) == "STOPPED"


def test_down_removes_everything(cluster):
    assert cluster.pids()
    cluster.down()
    assert cluster.nodes_in_state() == {}
    cluster.wait_for(lambda: not cluster.pids(), 30, "the fake cluster's processes to exit")
    assert not port_open(cluster.ports["gcs"]) and not port_open(cluster.ports["dashboard"])
    assert not port_open(cluster.ports["mlflow"])
