"""Real servers on 127.0.0.1 for the cluster tests: PostgreSQL 15, moto's standalone server (S3, SSM, ...),
an `mlflow server` on both, and a stand-in for EC2's instance metadata service. Plain functions and
classes, so a test (or a person at a shell) can use them without pytest; `conftest.py` wraps them in
fixtures.

Everything listens on 127.0.0.1 and a free port, lives in a temporary folder, and is stopped by the
process id (or `pg_ctl`) of what was started here: nothing is found or killed by name.

- ``start_postgres()``: Debian's PostgreSQL 15 binaries (``/usr/lib/postgresql/15/bin``, or
  ``$GAN_PG_BIN``). They refuse to run as root, so as root they run as the ``postgres`` user
  (``runuser``) on a data folder chowned to it; as any other user they run as that user. TCP only
  (no Unix socket), password authentication (scram-sha-256) for one superuser with a random password.
- ``start_moto_s3()``: ``python -m moto.server`` (moto[server]); any access key is accepted. It
  serves every AWS API moto has, SSM included (cluster.yaml's nodes read their parameters there).
- ``start_mlflow_server()``: ``mlflow server`` with its stores configured the way ``cluster.yaml``
  configures the head's: from environment variables only (``MLFLOW_BACKEND_STORE_URI`` without a
  password, the password in ``PGPASSWORD``, ``MLFLOW_ARTIFACTS_DESTINATION=s3://...``), bound to
  127.0.0.1; without the head's basic-auth app (test_cluster_launch.py runs cluster.yaml's own command).
- ``start_instance_metadata(region)``: EC2's instance metadata service as cluster.yaml's start commands
  use it (IMDSv2: a session token first, every read with it), answering the node's region; botocore
  asks it when ``AWS_EC2_METADATA_SERVICE_ENDPOINT`` names it. A thread of this process.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from loopback_cluster import free_port, start_http_server, stop_process_group

PY = sys.executable
PG_BIN = Path(os.environ.get("GAN_PG_BIN", "/usr/lib/postgresql/15/bin"))
# Credentials that moto accepts and no real account has; never read from the user's AWS config.
DUMMY_AWS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",  # never ask an instance-metadata endpoint for credentials
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
}

# moto 5.2 stores the aws-chunked body of an upload that carries a trailing checksum (what the AWS
# SDK for C++ inside pyarrow >= 20 sends by default: crc64nvme) verbatim, framing and trailer included,
# so a checkpoint written by Ray Tune reads back corrupted. Real S3 decodes it. Asking the SDKs to add
# checksums only where an API requires them avoids the trailer: a test-only setting.
MOTO_CHECKSUMS = {
    "AWS_REQUEST_CHECKSUM_CALCULATION": "WHEN_REQUIRED",
    "AWS_RESPONSE_CHECKSUM_VALIDATION": "WHEN_REQUIRED",
}


class ServiceError(RuntimeError):
    """A server did not start; the message carries the end of its log."""


def wait_for_port(port: int, *, proc: subprocess.Popen | None, timeout: float, log: Path, what: str) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            pass
        if (proc is not None and proc.poll() is not None) or time.monotonic() > deadline:
            tail = log.read_text(errors="replace")[-3000:] if log.exists() else "(no log)"
            raise ServiceError(f"{what} did not open 127.0.0.1:{port}: {tail}")
        time.sleep(0.3)


# --- PostgreSQL -------------------------------------------------------------------------------------


def postgres_available() -> str | None:
    """None when PostgreSQL can be started here, else why not (for a skip message)."""
    for tool in ("initdb", "pg_ctl", "postgres"):
        if not (PG_BIN / tool).is_file():
            return (f"PostgreSQL server binaries not found in {PG_BIN} (apt-get install postgresql-15, "
                    f"or set GAN_PG_BIN to the folder holding initdb and pg_ctl)")
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        return "running as root and `runuser` is missing: PostgreSQL refuses to run as root"
    if os.geteuid() == 0:
        try:
            import pwd

            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root and there is no `postgres` user to run PostgreSQL as"
    return None


@dataclass
class Postgres:
    """A running PostgreSQL server: TCP on 127.0.0.1:``port``, superuser ``user``/``password``."""

    port: int
    user: str
    password: str
    root: Path
    host: str = "127.0.0.1"
    _as_postgres: bool = field(default=False, repr=False)

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def log(self) -> Path:
        return self.root / "postgres.log"

    def url(self, database: str, *, driver: str = "postgresql+psycopg", password: bool = True) -> str:
        """SQLAlchemy URL (Optuna's ``storage``, MLflow's backend store). ``password=False`` leaves it
        out: libpq then takes it from ``PGPASSWORD`` (or ``~/.pgpass``), as on the cluster."""
        auth = self.user + (":" + urllib.parse.quote(self.password, safe="") if password else "")
        return f"{driver}://{auth}@{self.host}:{self.port}/{database}"

    def connect(self, database: str = "postgres"):
        import psycopg

        return psycopg.connect(host=self.host, port=self.port, user=self.user, password=self.password,
                               dbname=database, autocommit=True, connect_timeout=10)

    def create_database(self, name: str) -> str:
        """Create database ``name`` (idempotent); returns its name."""
        with self.connect() as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
            if not exists:
                conn.execute(f'CREATE DATABASE "{name}"')
        return name

    def _pg_ctl(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run(_as_db_user([str(PG_BIN / "pg_ctl"), *args], self._as_postgres),
                              capture_output=True, text=True, timeout=timeout, cwd="/")

    def postmaster_pid(self) -> int | None:
        pid_file = self.data_dir / "postmaster.pid"
        try:
            return int(pid_file.read_text().splitlines()[0])
        except (OSError, ValueError, IndexError):
            return None

    def stop(self) -> None:
        """``pg_ctl stop -m fast``; if that fails, SIGTERM then SIGKILL to the postmaster's pid. Then
        the folder is removed."""
        pid = self.postmaster_pid()
        if pid is not None:
            try:
                done = self._pg_ctl("-D", str(self.data_dir), "-m", "fast", "-w", "-t", "30", "stop")
                ok = done.returncode == 0
            except subprocess.TimeoutExpired:
                ok = False
            if not ok:
                _kill_pid(pid)
        shutil.rmtree(self.root, ignore_errors=True)


def _as_db_user(cmd: list[str], as_postgres: bool) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *cmd] if as_postgres else cmd


def _kill_pid(pid: int, timeout: float = 15) -> None:
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.2)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def start_postgres(*, user: str = "gan") -> Postgres:
    """initdb a fresh cluster in a new folder under the system temp dir and start it on 127.0.0.1 and a
    free port. The folder is under /tmp (not pytest's 0700 tmp tree) so that the ``postgres`` user can
    reach it."""
    problem = postgres_available()
    if problem:
        raise ServiceError(problem)
    as_postgres = os.geteuid() == 0
    root = Path(tempfile.mkdtemp(prefix="gan-pg-"))
    password = secrets.token_urlsafe(18)
    pg = Postgres(port=free_port(), user=user, password=password, root=root, _as_postgres=as_postgres)
    pwfile = root / "pwfile"
    pwfile.write_text(password + "\n")
    if as_postgres:
        shutil.chown(root, "postgres", "postgres")
        shutil.chown(pwfile, "postgres", "postgres")
    pwfile.chmod(0o600)
    try:
        init = subprocess.run(
            _as_db_user([str(PG_BIN / "initdb"), "-D", str(pg.data_dir), "-U", user, f"--pwfile={pwfile}",
                         "--auth=scram-sha-256", "-E", "UTF8", "--locale=C.UTF-8", "--no-sync"], as_postgres),
            capture_output=True, text=True, timeout=180, cwd="/")
        pwfile.unlink()
        if init.returncode != 0:
            raise ServiceError(f"initdb failed: {init.stdout[-1500:]}{init.stderr[-1500:]}")
        # TCP on 127.0.0.1 only, no Unix socket; fsync off: a throwaway test database.
        options = (f"-c listen_addresses=127.0.0.1 -p {pg.port} -c unix_socket_directories='' "
                   f"-c fsync=off -c full_page_writes=off -c max_connections=60 -c shared_buffers=32MB")
        started = pg._pg_ctl("-D", str(pg.data_dir), "-l", str(pg.log), "-o", options, "-w", "-t", "60",
                             "start", timeout=90)
        if started.returncode != 0:
            log = pg.log.read_text(errors="replace")[-2000:] if pg.log.exists() else ""
            raise ServiceError(f"pg_ctl start failed: {started.stdout[-1000:]}{started.stderr[-1000:]} {log}")
        wait_for_port(pg.port, proc=None, timeout=30, log=pg.log, what="PostgreSQL")
    except BaseException:
        pg.stop()
        raise
    return pg


# --- moto S3 ----------------------------------------------------------------------------------------


@dataclass
class MotoS3:
    """moto's standalone server on 127.0.0.1:``port``; S3 clients reach it through ``env``."""

    port: int
    proc: subprocess.Popen
    root: Path

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def env(self) -> dict[str, str]:
        """The variables an S3 client needs to talk to this server and to nothing else:
        boto3/botocore read ``AWS_ENDPOINT_URL_S3``, MLflow's S3 artifact repository reads
        ``MLFLOW_S3_ENDPOINT_URL``, pyarrow (and so Ray Tune) reads ``AWS_ENDPOINT_URL_S3`` too."""
        return {**DUMMY_AWS, **MOTO_CHECKSUMS, "AWS_ENDPOINT_URL_S3": self.endpoint,
                "MLFLOW_S3_ENDPOINT_URL": self.endpoint}

    def pyarrow_uri(self, bucket: str, path: str = "") -> str:
        """An ``s3://`` URI that carries the endpoint itself (pyarrow's URI options), for code that
        takes a URI and no environment."""
        return f"s3://{bucket}/{path.strip('/')}?endpoint_override=127.0.0.1:{self.port}&scheme=http&region=us-east-1"

    def client(self):
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1",
                            aws_access_key_id="testing", aws_secret_access_key="testing")

    def create_bucket(self, name: str) -> str:
        c = self.client()
        try:
            c.create_bucket(Bucket=name)
        except c.exceptions.BucketAlreadyOwnedByYou:
            pass
        return name

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        pages = self.client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        return [o["Key"] for page in pages for o in page.get("Contents", [])]

    def stop(self) -> None:
        stop_process_group(self.proc)
        shutil.rmtree(self.root, ignore_errors=True)


def node_aws_env(moto: MotoS3, imds: InstanceMetadata) -> dict[str, str]:
    """The AWS side of a fake EC2 node's environment: every AWS API (SSM, S3) at moto with moto's dummy
    credentials (a real node's come from its instance profile), and the instance metadata stand-in.
    No region: a node asks the metadata service for its own, as cluster.yaml's start commands do."""
    env = {k: v for k, v in moto.env.items() if k not in ("AWS_DEFAULT_REGION", "AWS_REGION",
                                                          "AWS_EC2_METADATA_DISABLED")}
    env.update(AWS_ENDPOINT_URL=moto.endpoint, AWS_EC2_METADATA_SERVICE_ENDPOINT=imds.endpoint)
    return env


def start_moto_s3() -> MotoS3:
    root = Path(tempfile.mkdtemp(prefix="gan-moto-"))
    port = free_port()
    log = root / "moto.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([PY, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                                stdout=out, stderr=subprocess.STDOUT, cwd=root, start_new_session=True,
                                env={**os.environ, **DUMMY_AWS})
    server = MotoS3(port=port, proc=proc, root=root)
    try:
        wait_for_port(port, proc=proc, timeout=60, log=log, what="moto_server")
    except BaseException:
        server.stop()
        raise
    return server


# --- MLflow server on PostgreSQL + S3 ----------------------------------------------------------------


@dataclass
class MlflowServer:
    uri: str
    proc: subprocess.Popen
    root: Path
    backend_store_uri: str
    artifacts_destination: str

    def stop(self) -> None:
        stop_process_group(self.proc)
        shutil.rmtree(self.root, ignore_errors=True)


def mlflow_server_env(pg: Postgres, s3: MotoS3, *, database: str, artifacts: str) -> dict[str, str]:
    """The head's MLflow configuration, as environment variables (no password in a URI or a file)."""
    return {**s3.env, "PGPASSWORD": pg.password,
            "MLFLOW_BACKEND_STORE_URI": pg.url(database, password=False),
            "MLFLOW_ARTIFACTS_DESTINATION": artifacts}


def start_mlflow_server(pg: Postgres, s3: MotoS3, *, database: str = "mlflow", bucket: str,
                        prefix: str = "mlflow", timeout: float = 240) -> MlflowServer:
    """``mlflow server`` on 127.0.0.1 with its backend in PostgreSQL database ``database`` and its
    artifacts proxied to ``s3://bucket/prefix`` in moto."""
    pg.create_database(database)
    s3.create_bucket(bucket)
    root = Path(tempfile.mkdtemp(prefix="gan-mlflow-"))
    port = free_port()
    env = {**os.environ, **mlflow_server_env(pg, s3, database=database, artifacts=f"s3://{bucket}/{prefix}")}
    uri = f"http://127.0.0.1:{port}"
    try:
        proc = start_http_server([PY, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
                                  "--workers", "1"], ready_url=uri + "/health", log=root / "server.log", env=env,
                                 cwd=root, timeout=timeout)
    except RuntimeError as exc:
        shutil.rmtree(root, ignore_errors=True)
        raise ServiceError(str(exc)) from None
    return MlflowServer(uri=uri, proc=proc, root=root, backend_store_uri=env["MLFLOW_BACKEND_STORE_URI"],
                        artifacts_destination=env["MLFLOW_ARTIFACTS_DESTINATION"])


# --- EC2's instance metadata service ------------------------------------------------------------------


@dataclass
class InstanceMetadata:
    """An IMDSv2 stand-in on 127.0.0.1:``port``: ``PUT /latest/api/token`` gives a session token, and a
    ``GET`` answers only with that token (``HttpTokens: required``, as cluster.yaml launches its nodes).
    ``requests`` records each request: (method, path, whether it carried the token)."""

    port: int
    region: str
    server: ThreadingHTTPServer
    requests: list[tuple[str, str, bool]]

    @property
    def endpoint(self) -> str:
        """What ``AWS_EC2_METADATA_SERVICE_ENDPOINT`` takes (botocore's setting for a custom endpoint)."""
        return f"http://127.0.0.1:{self.port}/"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def start_instance_metadata(region: str) -> InstanceMetadata:
    token = secrets.token_urlsafe(24)
    seen: list[tuple[str, str, bool]] = []
    answers = {"/latest/meta-data/placement/availability-zone": f"{region}a",
               "/latest/meta-data/placement/region": region}

    class Handler(BaseHTTPRequestHandler):
        def _reply(self, status: int, body: str = "") -> None:
            data = body.encode()
            self.send_response(status)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_PUT(self):  # noqa: N802 - http.server's name
            seen.append(("PUT", self.path, False))
            if self.path == "/latest/api/token" and self.headers.get("X-aws-ec2-metadata-token-ttl-seconds"):
                self._reply(200, token)
            else:
                self._reply(400)

        def do_GET(self):  # noqa: N802
            with_token = self.headers.get("X-aws-ec2-metadata-token") == token
            seen.append(("GET", self.path, with_token))
            if not with_token:
                self._reply(401)  # no IMDSv1
            elif self.path.rstrip("/") in answers:
                self._reply(200, answers[self.path.rstrip("/")])
            else:
                self._reply(404)

        def log_message(self, format, *args):  # noqa: A002 - quiet
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="fake-imds", daemon=True).start()
    return InstanceMetadata(port=server.server_address[1], region=region, server=server, requests=seen)
