"""`ray up` / `ray down` of cluster.yaml on this one machine, with Ray's fake multi-node provider.

The test config is cluster.yaml itself, loaded with a YAML parser: everything in it (setup and start
commands, file_mounts, docker, auth, node types, their resources and worker counts) is used as
written, and only what names AWS resources is replaced (``fake_config``): the ``provider`` section,
and each node type's ``node_config`` (EC2's launch parameters), which becomes empty. The keys the file
leaves to Ray's AWS defaults get them the way `ray up` fills them for ``type: aws`` (Ray's own
``fillout_defaults``); for the ``external`` provider below Ray would fill in nothing.

Ray ships a provider that fakes a multi-node cluster on one machine
(``ray.autoscaler._private.fake_multi_node.node_provider.FakeMultiNodeProvider``): when the
autoscaler "launches" a node it starts another raylet here with the node type's resources (a
``GPU: 1`` worker advertises one GPU, none needed). Two things keep it from serving `ray up` as is:

1. ``provider: type: fake_multinode`` makes Ray load its defaults from
   ``fake_multi_node/example.yaml``, which Ray's wheel does not ship (``FileNotFoundError`` in
   ``ray up``, in the head's autoscaler and in ``ray.cluster_utils.AutoscalingCluster``). We use the
   provider's own hook instead: ``provider: type: external, module: <class>``. For ``external``
   Ray's defaults are a built-in minimal dict, so no file is read, installed or removed.
2. The provider assumes a head that `ray start` already runs (it is always in its node list, it
   cannot create or tag one, and it has no command runner: `ray up` would ssh to the node id).
   ``LocalFakeProvider`` adds what `ray up` / `ray down` need and nothing else: the head exists once
   `ray up` creates it, nodes and tags are kept in a JSON file shared by the processes that use the
   provider (`ray up`, the head's autoscaler, `ray down`), and commands for a node run here, in a
   shell whose HOME is that node's own folder (so `~/ray_bootstrap_config.yaml`, `~/.ray/auth_token`
   and file_mounts land per node, as over ssh). The docker section stays in the config: this
   provider's command runner runs a node's commands on this machine, where its container would run
   them (`ray down`'s ``docker stop`` fails and Ray only warns).

The machine the fake nodes share stands in for EC2 (``private_network`` and the node environment):

- its own network namespace, whose only interface is loopback: the ports cluster.yaml's commands
  fix (Ray's 6379, 8076, the dashboard's 8265, MLflow's 5000) are free whatever else runs on the
  machine, every server listens inside it, and the head's private address, as Ray picks it
  (``ray.util.get_node_ip_address()``), is 127.0.0.1 (``FAKE_NODE_IP``);
- the AWS services a node reads at start: moto (SSM, S3) and an instance metadata service
  (tests/cluster/cluster_services.py), through the environment of a node's commands;
- on each fake node's PATH, ahead of the real ones: ``ray`` (below) and ``pip``, which records a
  ``pip install`` in ``~/pip-install.jsonl`` instead of installing (the node is this machine, whose
  environment is the project's already; tests/cluster/test_cluster_yaml.py checks the pins against
  pyproject.toml).

Workers are still created and terminated by FakeMultiNodeProvider's own code, in the head's
autoscaler process (node updaters are off, as in Ray's own fake cluster: a fake worker is a raylet
started by the provider, not a machine that runs worker_setup_commands). What a worker's raylet
inherits comes from the worker's own start commands, though: ``LocalFakeProvider`` runs
worker_start_ray_commands (from the head's ``~/ray_bootstrap_config.yaml``, with ``RAY_HEAD_IP``
as the autoscaler sets it) in a fresh node environment, where the shim's ``ray start`` records the
environment instead of starting; the raylet then gets exactly what those commands exported (a real
worker's region and MLflow login), and none of what only the head's start command exported (the
PostgreSQL password).

Stopping: on a real node `ray stop` stops every Ray process of the machine; here that would stop
other people's Ray too. The ``ray`` shim runs the real CLI except for ``ray stop``, which stops this
fake cluster's processes only: those whose environment carries this cluster's marker (every process
started through a fake node, and their children, inherit it), killed by process id. ``ray down``
uses the same path, then terminates the nodes in the state file.
"""

from __future__ import annotations

import copy
import ctypes
import fcntl
import json
import os
import re
import shlex
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
CLUSTER_YAML = REPO / "cluster.yaml"
PY = sys.executable
MARKER = "GAN_FAKE_CLUSTER_DIR"  # environment variable that tags every process of one fake cluster
PROVIDER_MODULE = "fake_cluster.LocalFakeProvider"
# The head's private address on the fake: the one interface of the fake's network namespace is
# loopback, so Ray's choice of node address (what cluster.yaml's start commands bind Ray and MLflow
# to) is 127.0.0.1.
FAKE_NODE_IP = "127.0.0.1"
START_CAPTURE = "GAN_FAKE_RAY_START_CAPTURE"  # set: the shim's `ray start` records its environment
PIP_RECORD = "pip-install.jsonl"  # in a fake node's home: each `pip install` its commands ran
SHELL_NOISE = ("_", "PWD", "OLDPWD", "SHLVL")


# --- cluster.yaml -> the test config ----------------------------------------------------------------


def load_cluster_yaml(path: Path = CLUSTER_YAML) -> dict:
    """cluster.yaml as `ray up` reads it: a YAML file, nothing filled in."""
    return yaml.safe_load(path.read_text())


def head_start_port(cluster: dict) -> int:
    """The GCS port of the head's `ray start --head` in cluster.yaml."""
    (cmd,) = [c for c in cluster["head_start_ray_commands"] if "ray start --head" in c]
    return int(re.search(r"--port=(\d+)", cmd).group(1))


def mlflow_port(cluster: dict) -> int:
    """The port of the head's `mlflow server` in cluster.yaml."""
    (cmd,) = [c for c in cluster["head_start_ray_commands"] if "mlflow server" in c]
    return int(re.search(r"mlflow server [^>]*--port (\d+)", cmd).group(1))


def fake_config(cluster: dict, *, state_dir: Path, node_env: dict[str, str]) -> dict:
    """The config `ray up` gets on the fake: cluster.yaml (``cluster``, as loaded) with Ray's AWS
    defaults where the file has none, its ``provider`` section replaced by the fake provider's, and
    each node type's ``node_config`` emptied. Nothing else changes; test_cluster_yaml.py checks
    exactly this.

    The fake provider's settings: where its state lives; the head's GCS address (cluster.yaml's
    head command starts the GCS on ``FAKE_NODE_IP`` and its ``--port``), which Ray's fake provider
    gives the raylets it starts; node updaters off and a launch per node, as in Ray's own fake
    cluster; ``node_env``, added to the environment of every command run on a fake node (the test's
    stand-ins for what an EC2 node has: the AWS endpoints of moto and of the metadata service)."""
    from ray.autoscaler._private.util import fillout_defaults

    cfg = fillout_defaults(copy.deepcopy(cluster))  # cluster.yaml has provider type aws
    cfg["provider"] = {
        "type": "external",
        "module": PROVIDER_MODULE,
        "state_dir": str(state_dir),
        "gcs_address": f"{FAKE_NODE_IP}:{head_start_port(cluster)}",
        "disable_node_updaters": True,
        "disable_launch_config_check": True,
        "launch_multiple": True,
        "use_node_id_as_ip": True,
        "node_env": dict(node_env),
    }
    for node_type in cfg["available_node_types"].values():
        node_type["node_config"] = {}
    return cfg


@contextmanager
def _state_lock(state_dir: Path):
    with open(state_dir / "nodes.lock", "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def head_only_names(head_start_commands: list[str]) -> set[str]:
    """The variables the head's `ray start --head` command assigns (and so may give the head's Ray
    processes): what a worker's raylet must not inherit on the fake unless its own commands set it."""
    found: set[str] = set()
    for cmd in head_start_commands:
        if "ray start --head" in cmd:
            found |= set(re.findall(r"(?<![\w$-])([A-Z][A-Z0-9_]*)=", cmd))
    return found


# --- the fake's network: a namespace of its own --------------------------------------------------------

_CLONE_NEWNET = 0x40000000
_SIOCGIFFLAGS, _SIOCSIFFLAGS, _IFF_UP = 0x8913, 0x8914, 0x1


def _loopback_up() -> None:
    """``ip link set lo up``, by ioctl (a new network namespace's loopback is down)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        request = struct.pack("16sH22x", b"lo", 0)
        flags = struct.unpack("16sH22x", fcntl.ioctl(s, _SIOCGIFFLAGS, request))[1]
        fcntl.ioctl(s, _SIOCSIFFLAGS, struct.pack("16sH22x", b"lo", flags | _IFF_UP))


@contextmanager
def private_network():
    """For the duration, this thread (and every process it starts) is in a new network namespace
    with loopback only; then back in the one it was in. Needs CAP_SYS_ADMIN (root): PermissionError
    otherwise. The namespace goes away with the last process in it."""
    libc = ctypes.CDLL(None, use_errno=True)
    with open(f"/proc/self/task/{threading.get_native_id()}/ns/net") as before:
        if libc.unshare(_CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise PermissionError(err, f"unshare(CLONE_NEWNET): {os.strerror(err)}")
        try:
            _loopback_up()
            yield
        finally:
            if libc.setns(before.fileno(), _CLONE_NEWNET) != 0:
                err = ctypes.get_errno()
                raise OSError(err, f"setns back to the original network namespace: {os.strerror(err)}")


# --- processes of one fake cluster ------------------------------------------------------------------


def _ancestors() -> set[int]:
    pids, pid = set(), os.getpid()
    while pid > 1:
        pids.add(pid)
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            break
        pid = int(stat.rsplit(")", 1)[1].split()[1])  # field 4: the parent's pid
    return pids


def cluster_pids(state_dir: str | Path) -> list[int]:
    """Process ids whose environment carries this fake cluster's marker (never this process or its
    ancestors). Read from /proc: Linux only, like the fake provider."""
    want = f"{MARKER}={state_dir}".encode()
    skip = _ancestors()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) in skip:
            continue
        try:
            environ = (entry / "environ").read_bytes()
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z" and want in environ.split(b"\0"):
            found.append(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def kill_pids(pids: list[int], grace: float = 10.0) -> None:
    """SIGTERM to each, then SIGKILL to whatever is left after ``grace`` seconds."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            try:
                os.kill(pid, sig)
            except (ProcessLookupError, PermissionError):
                pass
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and any(_alive(p) for p in pids):
            time.sleep(0.2)
        pids = [p for p in pids if _alive(p)]
        if not pids:
            return


def stop_cluster_processes(state_dir: str | Path) -> int:
    """Stop every process of the fake cluster, in rounds (a dying raylet may still start a worker)."""
    total = 0
    for _ in range(5):
        pids = cluster_pids(state_dir)
        if not pids:
            break
        total += len(pids)
        kill_pids(pids)
    return total


def ray_shim_main(argv: list[str]) -> None:
    """The ``ray`` on a fake node's PATH: ``ray stop`` stops this fake cluster only. While a fake
    worker's start commands run (``START_CAPTURE`` set), ``ray stop`` has nothing to stop and
    ``ray start`` records its environment there for the provider, which starts the raylet."""
    capture = os.environ.get(START_CAPTURE)
    if capture and len(argv) > 1 and argv[1] in ("start", "stop"):
        if argv[1] == "start":
            env = {k: v for k, v in os.environ.items() if k != START_CAPTURE}
            fd = os.open(capture, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                json.dump({"argv": argv[1:], "env": env}, f)
        print(f"fake worker: `ray {argv[1]}` is the provider's")
        return
    if len(argv) > 1 and argv[1] == "stop":
        n = stop_cluster_processes(os.environ[MARKER])
        print(f"fake node: stopped {n} processes of this fake cluster")
        return
    from ray.scripts.scripts import main

    sys.argv = ["ray", *argv[1:]]
    main()


def pip_shim_main(argv: list[str]) -> None:
    """The ``pip`` on a fake node's PATH: ``pip install ...`` (cluster.yaml's setup command) is recorded
    in ``~/pip-install.jsonl`` and installs nothing, the node being this machine; anything else is
    the real pip."""
    if len(argv) > 1 and argv[1] == "install":
        with open(Path.home() / PIP_RECORD, "a") as f:
            f.write(json.dumps({"argv": argv[1:]}) + "\n")
        print("fake node: `pip install` recorded, not run (this machine's environment is the node's)")
        return
    os.execv(PY, [PY, "-m", "pip", *argv[1:]])


# --- the provider and its command runner ------------------------------------------------------------

from ray.autoscaler._private.command_runner import _with_environment_variables  # noqa: E402
from ray.autoscaler._private.fake_multi_node.node_provider import (  # noqa: E402
    FAKE_HEAD_NODE_ID,
    FakeMultiNodeProvider,
)
from ray.autoscaler._private.util import with_head_node_ip  # noqa: E402
from ray.autoscaler.command_runner import CommandRunnerInterface  # noqa: E402
from ray.autoscaler.tags import (  # noqa: E402
    NODE_KIND_HEAD,
    NODE_KIND_WORKER,
    TAG_RAY_NODE_KIND,
)


def node_environment(provider_config: dict, node_id: str) -> dict[str, str]:
    state_dir = Path(provider_config["state_dir"])
    home = state_dir / "nodes" / node_id / "home"
    home.mkdir(parents=True, exist_ok=True)
    # nothing of the AWS settings of the process that runs the command (a node has its own: node_env)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_ADDRESS", "PYTEST_", MARKER, "AWS_"))}
    env.update({
        "HOME": str(home),
        "PATH": f"{state_dir / 'bin'}:{Path(PY).parent}:{env.get('PATH', '/usr/bin:/bin')}",
        "PYTHONPATH": str(HERE),
        "RAY_FAKE_CLUSTER": "1",
        "AUTOSCALER_UPDATE_INTERVAL_S": "1",
        "RAY_USAGE_STATS_ENABLED": "0",
        "RAY_TMPDIR": str(state_dir / "t"),  # this cluster's session folders, away from /tmp/ray
        MARKER: str(state_dir),
    })
    env.update(provider_config.get("node_env", {}))
    return env


HEAD_ONLY_ENV = ("RAY_OVERRIDE_RESOURCES", "RAY_OVERRIDE_LABELS", "RAY_CLOUD_INSTANCE_ID", "RAY_NODE_TYPE_NAME")


@contextmanager
def _environment(set_: dict[str, str], unset):
    """This process's environment with ``set_`` set and ``unset`` removed, for the duration."""
    names = set(set_) | set(unset)
    saved = {k: os.environ[k] for k in names if k in os.environ}
    try:
        for k in unset:
            os.environ.pop(k, None)
        os.environ.update(set_)
        yield
    finally:
        for k in names:
            os.environ.pop(k, None)
        os.environ.update(saved)


@contextmanager
def _ray_params_defaults(**defaults):
    """Ray's fake provider builds each worker's ``RayParams`` itself: for the duration, ``defaults``
    are added to the ones it builds (those it sets itself win)."""
    import ray._private.parameter as parameter

    real, built = parameter.RayParams, []

    def ray_params(*args, **kwargs):
        built.append(True)
        return real(*args, **{**defaults, **kwargs})

    parameter.RayParams = ray_params
    try:
        yield
    finally:
        parameter.RayParams = real
    assert built, "Ray's fake provider did not build RayParams through ray._private.parameter"


class LocalCommandRunner(CommandRunnerInterface):
    """Runs a fake node's commands here, as the SSH command runner would run them there: ``bash``
    in the node's home, with the node's environment; rsync becomes a copy into the node's home."""

    def __init__(self, log_prefix: str, node_id: str, provider_config: dict):
        self.log_prefix = log_prefix
        self.node_id = node_id
        self.env = node_environment(provider_config, node_id)
        self.home = Path(self.env["HOME"])
        self.log = Path(provider_config["state_dir"]) / "nodes" / node_id / "commands.log"

    def _remote(self, path: str) -> Path:
        return Path(str(self.home) + path[1:]) if path.startswith("~") else Path(path)

    def run(self, cmd: str | None = None, timeout: int = 120, exit_on_fail: bool = False,
            port_forward=None, with_output: bool = False, environment_variables: dict | None = None,
            run_env: str = "auto", ssh_options_override_ssh_key: str = "", shutdown_after_run: bool = False,
            silent: bool = False):
        if not cmd:
            return b"" if with_output else None
        if environment_variables:
            cmd = _with_environment_variables(cmd, environment_variables)
        with open(self.log, "a") as log:
            log.write(f"$ {cmd}\n")
            log.flush()
            done = subprocess.run(["bash", "-c", cmd], cwd=self.home, env=self.env, stdin=subprocess.DEVNULL,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
            log.write(done.stdout.decode(errors="replace"))
        if done.returncode != 0:
            from ray.autoscaler._private.subprocess_output_util import ProcessRunnerError

            raise ProcessRunnerError("Command failed", "ssh_command_failed", code=done.returncode,
                                     command=["bash", "-c", cmd])
        return done.stdout if with_output else None

    def run_rsync_up(self, source: str, target: str, options: dict | None = None) -> None:
        dest = self._remote(target)
        if os.path.isdir(source):
            shutil.copytree(source, dest, dirs_exist_ok=True)
        else:
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, dest)

    def run_rsync_down(self, source: str, target: str, options: dict | None = None) -> None:
        src = self._remote(source)
        if src.is_dir():
            shutil.copytree(src, target, dirs_exist_ok=True)
        else:
            shutil.copyfile(src, target)

    def remote_shell_command_str(self) -> str:
        return f"cd {shlex.quote(str(self.home))} && bash"

    def run_init(self, *, as_head: bool, file_mounts: dict, sync_run_yet: bool):
        return None


class LocalFakeProvider(FakeMultiNodeProvider):
    """FakeMultiNodeProvider plus the head lifecycle, tags and command runner that `ray up` and
    `ray down` need; state shared by processes through ``<state_dir>/nodes.json``."""

    def __init__(self, provider_config: dict[str, Any], cluster_name: str):
        super().__init__(provider_config, cluster_name)
        self._state_dir = Path(provider_config["state_dir"])
        self._state_dir.mkdir(parents=True, exist_ok=True)
        self._state_file = self._state_dir / "nodes.json"
        self._nodes = {}  # the parent's always-present head: here the head exists once `ray up` made it
        self._install_shims()
        self._refresh()

    # state shared through the file ---------------------------------------------------------------

    def _read(self) -> dict:
        try:
            return json.loads(self._state_file.read_text())
        except (OSError, ValueError):
            return {}

    def _write(self, state: dict) -> None:
        tmp = self._state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=1, sort_keys=True))
        tmp.replace(self._state_file)

    def _refresh(self) -> None:
        with self.lock, _state_lock(self._state_dir):
            state = self._read()
        for node_id, entry in state.items():
            self._nodes.setdefault(node_id, {})["tags"] = entry["tags"]
        for node_id in [n for n in self._nodes if n not in state]:
            self._nodes.pop(node_id)

    def _install_shims(self) -> None:
        for name, main in (("ray", "ray_shim_main"), ("pip", "pip_shim_main")):
            shim = self._state_dir / "bin" / name
            if shim.exists():
                continue
            shim.parent.mkdir(parents=True, exist_ok=True)
            shim.write_text(f"#!{PY}\nimport sys\nsys.path.insert(0, {str(HERE)!r})\n"
                            f"import fake_cluster\nfake_cluster.{main}(sys.argv)\n")
            shim.chmod(0o755)

    # NodeProvider ------------------------------------------------------------------------------------

    def non_terminated_nodes(self, tag_filters):
        self._refresh()
        return super().non_terminated_nodes(tag_filters)

    def is_running(self, node_id):
        self._refresh()
        return node_id in self._nodes

    def is_terminated(self, node_id):
        return not self.is_running(node_id)

    def node_tags(self, node_id):
        self._refresh()
        return self._nodes[node_id]["tags"]

    def set_node_tags(self, node_id, tags):
        with self.lock, _state_lock(self._state_dir):
            state = self._read()
            state[node_id]["tags"].update(tags)
            self._write(state)
        self._refresh()

    def create_node(self, node_config, tags, count):
        """`ray up` creating the head: the head is this machine; its Ray is started afterwards by
        the head's start commands, through the command runner."""
        assert tags.get(TAG_RAY_NODE_KIND) == NODE_KIND_HEAD and count == 1, (tags, count)
        with self.lock, _state_lock(self._state_dir):
            state = self._read()
            state[FAKE_HEAD_NODE_ID] = {"tags": dict(tags)}
            self._write(state)
        self._refresh()

    def create_node_with_resources_and_labels(self, node_config, tags, count, resources, labels):
        if tags.get(TAG_RAY_NODE_KIND) == NODE_KIND_HEAD:
            return self.create_node(node_config, tags, count)
        before = set(self._nodes)
        with self.lock:
            super().create_node_with_resources_and_labels(node_config, tags, count, resources, labels)
        with self.lock, _state_lock(self._state_dir):
            state = self._read()
            for node_id in set(self._nodes) - before:
                node = self._nodes[node_id].get("node")
                pids = [info.process.pid for infos in (node.all_processes.values() if node else [])
                        for info in infos if info.process is not None]
                state[node_id] = {"tags": dict(self._nodes[node_id]["tags"]), "pids": pids}
            self._write(state)

    def _create_node_with_resources_and_labels(self, node_config, tags, count, resources, labels):
        """One worker: its start commands run first (``worker_start_environment``); Ray's fake provider
        then starts its raylet in this process, the head's autoscaler, whose environment is the head's:
        for the duration, the worker's exports replace what only the head's start command set (its
        secrets) and what `ray up` exported for the head's `ray start` (its resources, instance id,
        node type, from which a worker's raylet would take the head's resources: no GPU).

        The worker gets its own temp dir, as a real node has its own disk: by default a worker uses
        the head's, and each node's runtime-env agent unpacks a job's working_dir there with
        overwrite, so a worker's trials would delete the directory the driver runs in."""
        with self.lock:
            suffix = f"{self._next_node_id + 1:05d}"
            node_id = f"{FAKE_HEAD_NODE_ID[:-5]}{suffix}"  # the parent's next id
            exported, head_only = self.worker_start_environment(node_id)
            temp_dir = self._state_dir / f"w{suffix}"  # short: Ray's Unix sockets live under it
            with _environment(exported, head_only - set(exported)), _ray_params_defaults(temp_dir=str(temp_dir)):
                super()._create_node_with_resources_and_labels(node_config, tags, count, resources, labels)

    def worker_start_environment(self, node_id: str) -> tuple[dict[str, str], set[str]]:
        """Run the head's autoscaling config's worker_start_ray_commands as the autoscaler runs them on
        a new worker (``RAY_HEAD_IP`` first), in a fresh environment of node ``node_id``, with the
        shim's ``ray start`` recording instead of starting. Returns the variables they exported and
        the names only the head's start sets (its command, `ray up`'s exports). A failing command
        fails the launch, as it would on AWS."""
        head_home = self._state_dir / "nodes" / FAKE_HEAD_NODE_ID / "home"
        config = yaml.safe_load((head_home / "ray_bootstrap_config.yaml").read_text())  # JSON is YAML
        head_ip = self.provider_config["gcs_address"].rsplit(":", 1)[0]
        head_only = head_only_names(config["head_start_ray_commands"]) | set(HEAD_ONLY_ENV)
        # the environment a new worker's shell starts with: nothing of the head's start command
        base = {k: v for k, v in node_environment(self.provider_config, node_id).items() if k not in head_only}
        capture = self._state_dir / "nodes" / node_id / "ray-start.json"
        log = self._state_dir / "nodes" / node_id / "commands.log"
        try:
            with open(log, "a") as out:
                for cmd in with_head_node_ip(config["worker_start_ray_commands"], head_ip):
                    out.write(f"$ {cmd}\n")
                    out.flush()
                    done = subprocess.run(["bash", "-c", cmd], cwd=base["HOME"],
                                          env={**base, START_CAPTURE: str(capture)}, stdin=subprocess.DEVNULL,
                                          stdout=out, stderr=subprocess.STDOUT, timeout=300)
                    if done.returncode != 0:
                        raise RuntimeError(f"worker start command exited {done.returncode} (see {log}): {cmd}")
            recorded = json.loads(capture.read_text())["env"]
        finally:
            capture.unlink(missing_ok=True)
        exported = {k: v for k, v in recorded.items() if base.get(k) != v and k not in SHELL_NOISE}
        return exported, head_only

    def terminate_node(self, node_id):
        with self.lock:
            entry = self._nodes.pop(node_id, None) or {}
            with _state_lock(self._state_dir):
                state = self._read()
                recorded = state.pop(node_id, {})
                self._write(state)
            if entry.get("node") is not None:  # a worker this process started: Ray's own way
                self._terminate_node(entry)
            elif recorded.get("tags", {}).get(TAG_RAY_NODE_KIND) == NODE_KIND_WORKER:
                kill_pids(recorded.get("pids", []))
            else:  # the head: everything of this fake cluster
                stop_cluster_processes(self._state_dir)

    def get_command_runner(self, log_prefix, node_id, auth_config, cluster_name, process_runner, use_internal_ip,
                           docker_config=None):
        return LocalCommandRunner(log_prefix, node_id, self.provider_config)


# --- driving it from a test --------------------------------------------------------------------------


class FakeCluster:
    """One fake cluster: its folder, config file, client environment, and the CLI calls on it.

    ``client_env`` is the environment of the user's terminal: HOME with the user's Ray token in
    ``~/.ray/auth_token`` (what `ray get-auth-token --generate` makes), ``RAY_AUTH_MODE=token``.
    ``ports``: what cluster.yaml's commands open on the head (the GCS, MLflow) and Ray's dashboard,
    on its default port (cluster.yaml sets none)."""

    def __init__(self, config: dict, state_dir: Path, ports: dict[str, int]):
        self.config = config
        self.state_dir = state_dir
        self.ports = ports
        self.config_file = state_dir / "cluster.yaml"
        self.config_file.write_text(yaml.safe_dump(config, sort_keys=False))
        self.client_home = state_dir / "client-home"
        (self.client_home / ".ray").mkdir(parents=True, exist_ok=True)
        token_file = self.client_home / ".ray" / "auth_token"
        if not token_file.exists():
            import secrets

            token_file.write_text(secrets.token_hex(32))
            token_file.chmod(0o600)
        self.token = token_file.read_text().strip()
        self.client_env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", MARKER))}
        self.client_env.update({"HOME": str(self.client_home), "RAY_AUTH_MODE": "token",
                                "RAY_FAKE_CLUSTER": "1", "RAY_USAGE_STATS_ENABLED": "0",
                                "PYTHONPATH": str(HERE), "PATH": f"{Path(PY).parent}:{os.environ.get('PATH', '')}"})

    @classmethod
    def create(cls, cluster: dict, *, node_env: dict[str, str] | None = None) -> FakeCluster:
        """The fake cluster of ``cluster`` (cluster.yaml as loaded), in a new folder. Call it inside
        ``private_network()``: cluster.yaml's ports are fixed."""
        from ray._private.ray_constants import DEFAULT_DASHBOARD_PORT

        # short: Ray's Unix sockets live under <state_dir>/t/ray/session_*/sockets (108-byte limit)
        state_dir = Path(tempfile.mkdtemp(prefix="gfc-"))
        config = fake_config(cluster, state_dir=state_dir, node_env=node_env or {})
        ports = {"gcs": head_start_port(cluster), "mlflow": mlflow_port(cluster), "dashboard": DEFAULT_DASHBOARD_PORT}
        return cls(config, state_dir, ports)

    @property
    def dashboard(self) -> str:
        return f"http://{FAKE_NODE_IP}:{self.ports['dashboard']}"

    @property
    def gcs_address(self) -> str:
        return f"{FAKE_NODE_IP}:{self.ports['gcs']}"

    @property
    def head_home(self) -> Path:
        return self.state_dir / "nodes" / FAKE_HEAD_NODE_ID / "home"

    def ray(self, *args: str, timeout: float = 300, check: bool = True, env: dict | None = None
            ) -> subprocess.CompletedProcess:
        """The `ray` CLI from the user's terminal."""
        done = subprocess.run([str(Path(PY).parent / "ray"), *args], env={**self.client_env, **(env or {})},
                              capture_output=True, text=True, timeout=timeout, cwd=self.state_dir)
        if check and done.returncode != 0:
            raise AssertionError(f"ray {' '.join(args)} exited {done.returncode}:\n{done.stdout[-4000:]}\n"
                                 f"{done.stderr[-4000:]}\n{self.logs_tail()}")
        return done

    def up(self) -> subprocess.CompletedProcess:
        return self.ray("up", str(self.config_file), "--yes", "--no-config-cache", "--log-style", "record",
                        timeout=600)

    def down(self) -> subprocess.CompletedProcess:
        return self.ray("down", str(self.config_file), "--yes", "--log-style", "record", timeout=300)

    def job(self, *args: str, timeout: float = 300, check: bool = True) -> subprocess.CompletedProcess:
        return self.ray("job", args[0], "--address", self.dashboard, *args[1:], timeout=timeout, check=check)

    def pids(self) -> list[int]:
        return cluster_pids(self.state_dir)

    def nodes_in_state(self) -> dict:
        try:
            return json.loads((self.state_dir / "nodes.json").read_text())
        except (OSError, ValueError):
            return {}

    def session_logs(self) -> Path | None:
        found = sorted((self.state_dir / "t" / "ray").glob("session_2*"))
        return found[-1] / "logs" if found else None

    def logs_tail(self, names=("monitor.log", "monitor.err", "monitor.out", "dashboard.err"), n: int = 3000) -> str:
        logs = self.session_logs()
        out = []
        head_log = self.state_dir / "nodes" / FAKE_HEAD_NODE_ID / "commands.log"
        if head_log.exists():
            out.append(f"--- head commands.log\n{head_log.read_text(errors='replace')[-n:]}")
        if logs:
            for name in names:
                p = logs / name
                if p.exists():
                    out.append(f"--- {name}\n{p.read_text(errors='replace')[-n:]}")
        return "\n".join(out)

    def cleanup(self) -> None:
        """Whatever the test left running (by the marker), the config cache `ray down` wrote for
        this cluster (``$TMPDIR/ray-config-<hash>``), then the folder."""
        stop_cluster_processes(self.state_dir)
        for cache in Path(tempfile.gettempdir()).glob("ray-config-*"):
            try:
                if str(self.state_dir) in cache.read_text(errors="replace"):
                    cache.unlink()
            except OSError:
                pass
        shutil.rmtree(self.state_dir, ignore_errors=True)

    def wait_for(self, predicate, timeout: float, what: str, interval: float = 1.0):
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}\n{self.logs_tail()}")
            time.sleep(interval)

