"""A loopback Ray cluster whose worker nodes cannot see the driver's files, and an MLflow server.

The tests' own harness (the multi-node and server tests import it; ``benchmarks.cluster_scaling`` reuses
it as ``tests.loopback_cluster``) to run the cluster path on one machine as it runs on a real cluster.

The head starts with ``--num-cpus 0`` (no trial runs beside the driver). Each worker node is
``ray start --address`` inside its own mount namespace (``unshare -m``) with an empty tmpfs over
every folder it must not see: the driver's working folder, the data root and the evaluation
cache. That is how a real cluster's nodes stand to the driver: the same installed package, no
shared disk. Everything listens on 127.0.0.1; processes are stopped by process id.
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

RAY = str(Path(sys.executable).parent / "ray")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def can_isolate() -> str | None:
    """None when this machine can run such nodes, else why not (the test's skip reason)."""
    if shutil.which("unshare") is None:
        return "unshare(1) is not installed"
    if os.geteuid() != 0:
        return "mount namespaces with tmpfs need root"
    probe = subprocess.run(["unshare", "-m", "sh", "-c", "mount -t tmpfs none /mnt && umount /mnt"],
                           capture_output=True, text=True)
    return None if probe.returncode == 0 else f"unshare -m cannot mount here: {probe.stderr.strip()}"


def children(pid: int) -> list[int]:
    """Every descendant of ``pid`` (read from /proc)."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(")") + 2:].split()[1])
        parents.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        for c in parents.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


@dataclass
class Node:
    name: str
    proc: subprocess.Popen
    log: Path

    def raylet(self) -> int | None:
        return next((p for p in children(self.proc.pid) if "/raylet" in cmdline(p).split(" ")[0]), None)

    def runs_a_trial(self) -> bool:
        return any("ImplicitFunc" in cmdline(p) or "ray_trainable" in cmdline(p) for p in children(self.proc.pid))


@dataclass
class LoopbackCluster:
    root: Path
    hidden: list[Path]  # folders the worker nodes must not see
    env: dict[str, str]
    temp_dir: Path  # Ray's session folder: short, for its Unix sockets
    head_cpus: int = 0  # 0: only the driver runs beside the head, every trial goes to a worker node
    port: int = field(default_factory=free_port)
    nodes: list[Node] = field(default_factory=list)
    head: Node | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start_head(self) -> Node:
        """The head, in the foreground of its own session so that it is stopped by process id."""
        log = self.root / "head.log"
        proc = subprocess.Popen([RAY, "start", "--head", "--node-ip-address", "127.0.0.1", "--port", str(self.port),
                                 "--num-cpus", str(self.head_cpus), "--num-gpus", "0", "--include-dashboard", "false",
                                 "--temp-dir", str(self.temp_dir), "--disable-usage-stats", "--block"],
                                env=self.env, stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True)
        self.head = Node("head", proc, log)
        return self.head

    def add_node(self, name: str, cpus: int = 1) -> Node:
        mounts = " && ".join(f"mount -t tmpfs none {shlex.quote(str(p))}" for p in self.hidden)
        # nodes on one machine: every port its own, or the second node's agents cannot bind
        ports = " ".join(f"--{flag} {free_port()}" for flag in (
            "dashboard-agent-listen-port", "dashboard-agent-grpc-port", "metrics-export-port",
            "runtime-env-agent-port", "node-manager-port", "object-manager-port"))
        script = (f"mount --make-rprivate / && {mounts} && exec {RAY} start --address {self.address} "
                  f"--node-ip-address 127.0.0.1 --num-cpus {cpus} --num-gpus 0 --temp-dir {self.temp_dir} {ports} "
                  f"--block --disable-usage-stats")
        log = self.root / f"{name}.log"
        proc = subprocess.Popen(["unshare", "-m", "sh", "-c", script], env=self.env, stdout=log.open("w"),
                                stderr=subprocess.STDOUT, start_new_session=True)
        node = Node(name, proc, log)
        self.nodes.append(node)
        return node

    def wait_for_cpus(self, n: float, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            out = subprocess.run([sys.executable, "-c", f"import ray; ray.init(address='{self.address}', "
                                  "logging_level='ERROR'); print(ray.cluster_resources().get('CPU', 0))"],
                                 env=self.env, capture_output=True, text=True, timeout=120)
            if out.returncode == 0 and float(out.stdout.strip().splitlines()[-1]) >= n:
                return
            time.sleep(2)
        raise RuntimeError(f"the cluster did not reach {n} CPUs; logs in {self.root}")

    def stop(self) -> None:
        """Workers first, then the head: SIGTERM to each process group, SIGKILL to what is left."""
        for node in [*self.nodes, *([self.head] if self.head else [])]:
            stop_node(node)


def stop_node(node: Node, timeout: float = 30) -> None:
    left = [node.proc.pid, *children(node.proc.pid)]
    if node.proc.poll() is None:
        os.killpg(node.proc.pid, signal.SIGTERM)
        try:
            node.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            pass
    for pid in left:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    if node.proc.poll() is None:
        node.proc.wait(timeout)


def start_http_server(argv: list[str], *, ready_url: str, log: Path, env: dict[str, str], cwd: Path,
                      timeout: float = 180) -> subprocess.Popen:
    """Start a server in its own process group and wait until ``ready_url`` answers 200; on failure it
    is stopped and the error carries the tail of ``log``."""
    import requests

    with log.open("w") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=cwd, start_new_session=True)
    deadline = time.monotonic() + timeout
    while True:
        try:
            if requests.get(ready_url, timeout=2).status_code == 200:
                return proc
        except requests.RequestException:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            stop_process_group(proc)
            raise RuntimeError(f"{Path(argv[0]).name} {' '.join(argv[1:3])} did not start (exit {proc.returncode}): "
                               f"{log.read_text(errors='replace')[-3000:]}")
        time.sleep(0.5)


def start_mlflow_server(root: Path, env: dict[str, str], timeout: float = 180) -> tuple[subprocess.Popen, str]:
    """A real `mlflow server` on 127.0.0.1 over a SQLite store, proxying artifacts kept under ``root``."""
    port = free_port()
    uri = f"http://127.0.0.1:{port}"
    proc = start_http_server(
        [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", f"sqlite:///{root / 'server.db'}",
         "--artifacts-destination", str(root / "artifacts"), "--host", "127.0.0.1", "--port", str(port),
         "--workers", "1"],
        ready_url=uri + "/health", log=root / "mlflow-server.log", env=env, cwd=root, timeout=timeout)
    return proc, uri


def stop_process_group(proc: subprocess.Popen, timeout: float = 20) -> None:
    """Stop a process started in its own session, and its children (its group)."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout)
