"""Checks before the first trial, and starting Ray: a failure here costs seconds; the same failure inside
every trial costs the whole study. Each raises ``PreflightError`` with one line naming the problem and the fix.

Where the study runs decides what is acceptable:

- **this machine** (no ``--address``): Ray is started here, every worker shares this disk, so the
  default stores (SQLite files and a local folder under ``runs/``) are fine;
- **a cluster** (``--address``): its nodes share no disk, so every place a trial writes must be
  one that every node reaches: checkpoints in ``s3://``, ``gs://`` or ``file://`` storage (``file://``
  is the user's word that the folder is shared, e.g. NFS), MLflow behind an ``http(s)://`` server
  that proxies artifacts, so workers need no bucket credentials. Both are then tried *from a
  worker node* by a tiny Ray task: a marker written and read back, the server's ``/health``.
"""

from __future__ import annotations

import os
import shutil
import urllib.parse
import uuid
from dataclasses import dataclass
from pathlib import Path

from gan_models.paths import missing_folders, remove_empty_folders

from .urls import is_sqlite, sqlite_path

SHARED_STORAGE_SCHEMES = ("s3", "gs", "gcs", "file", "hdfs", "abfs", "abfss")
PROBE_TIMEOUT_S = 120.0


class PreflightError(RuntimeError):
    """One line: what cannot work, and what to do instead."""


@dataclass(frozen=True)
class Placement:
    """Where trials run: this machine only, or a cluster whose nodes share no disk."""

    cluster: bool
    address: str | None

    @property
    def where(self) -> str:
        return f"the Ray cluster at {self.address}" if self.cluster else "this machine"


# --- pure checks: nothing running, nothing written ------------------------------------------------


def check_writable_folder(path: Path, what: str) -> None:
    """``path`` is (or can be created as) a folder we may write into; creates nothing."""
    from gan_models.checkpoint import OutputDirError, check_writable_dir

    try:
        check_writable_dir(path, what=what)
    except OutputDirError as exc:
        raise PreflightError(str(exc)) from None


def check_storage_path(storage_path: str, placement: Placement) -> None:
    """Ray's checkpoint storage must be reachable from every node that can run a trial."""
    scheme = urllib.parse.urlparse(storage_path).scheme
    if "://" in storage_path and scheme not in SHARED_STORAGE_SCHEMES:
        raise PreflightError(f"--storage-path {storage_path}: unsupported scheme {scheme!r}; valid choices: "
                             f"a folder, {', '.join(s + '://' for s in SHARED_STORAGE_SCHEMES)}")
    if placement.cluster and "://" not in storage_path:
        raise PreflightError(
            f"--storage-path {storage_path} is a folder on this node only, and {placement.where} shares no disk "
            f"between nodes: pass s3://BUCKET/PATH, gs://BUCKET/PATH, or file:///PATH for a filesystem mounted "
            f"at the same path on every node (NFS)")
    if "://" not in storage_path:
        check_writable_folder(Path(storage_path), "--storage-path")


def check_tracking_placement(tracking_uri: str, placement: Placement) -> None:
    """Trials log to MLflow from their own node: on a cluster only a server reaches every node."""
    scheme = urllib.parse.urlparse(tracking_uri).scheme
    if placement.cluster and scheme not in ("http", "https"):
        raise PreflightError(
            f"--tracking-uri {tracking_uri} is reachable from this node only, and trials on {placement.where} log "
            f"from their own nodes: start `mlflow server --host HOST --port 5000 --artifacts-destination "
            f"s3://BUCKET/mlflow` where every node reaches it and pass --tracking-uri http://HOST:5000")


def server_problem(uri: str, *, timeout: float) -> str | None:
    """None when the MLflow server at ``uri`` answers /health with 200; else one line saying what failed.

    MLflow's own client retries an unreachable server with back-off for minutes; a direct request
    with a short timeout answers at once."""
    import requests

    try:
        status = requests.get(uri.rstrip("/") + "/health", timeout=timeout).status_code
    except requests.RequestException as exc:
        return (f"MLflow tracking server {uri} is unreachable ({type(exc).__name__}); start it or pass another "
                f"--tracking-uri")
    if status != 200:
        return f"MLflow tracking server {uri} answered /health with HTTP {status}"
    return None


def check_tracking_uri(uri: str, *, timeout: float = 5.0) -> None:
    """The tracking store is usable from here, before any trial starts."""
    scheme = urllib.parse.urlparse(uri).scheme
    if scheme in ("http", "https"):
        problem = server_problem(uri, timeout=timeout)
        if problem:
            raise PreflightError(problem)
    elif is_sqlite(uri):  # created with the study, once every check has passed
        check_writable_folder(sqlite_path(uri).parent, "the MLflow store folder")
    elif scheme in ("", "file"):
        raise PreflightError(f"tracking URI {uri!r}: use sqlite:///PATH.db or http://HOST:PORT (MLflow's file "
                             f"store cannot hold the study's nested runs reliably across processes)")
    else:  # another database URL (postgresql://, mysql://, ...): one query tells
        from .tracking import client

        try:
            client(uri).search_experiments(max_results=1)
        except Exception as exc:  # noqa: BLE001 - whatever the driver raises, the store is unusable
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise PreflightError(f"MLflow tracking store {uri} is unusable: {first}") from None


def check_server_artifacts(tracking_uri: str, placement: Placement) -> None:
    """On a cluster, a server that hands clients a local artifact path makes each worker write to
    its own disk; the server must proxy artifacts (``mlflow-artifacts:``) or use a bucket."""
    if not placement.cluster:
        return
    from .tracking import client

    default = client(tracking_uri).get_experiment("0")
    location = default.artifact_location if default is not None else ""
    scheme = urllib.parse.urlparse(location).scheme
    if scheme in ("", "file"):
        raise PreflightError(
            f"MLflow server {tracking_uri} stores artifacts at {location}, a path each worker would write on its "
            f"own disk: restart it with --artifacts-destination s3://BUCKET/mlflow (it then proxies artifacts, "
            f"so workers need no bucket credentials)")


# --- checks that need Ray -------------------------------------------------------------------------


BOOTSTRAP_CONFIG = Path("~/ray_bootstrap_config.yaml")  # where `ray up` leaves the autoscaling config on the head


def launchable_node_types() -> list[dict[str, float]] | None:
    """The resources of each node type the cluster's autoscaler may still launch (max count > 0);
    None when no autoscaler describes any (a fixed cluster, or this machine).

    Two sources: the cluster config an autoscaler publishes in the GCS (KubeRay does), and the
    autoscaling config `ray up` writes on the head, where a study submitted as a Ray Job runs
    (Ray 2.60's `ray up` publishes nothing in the GCS)."""
    try:
        from ray._private.state import state

        config = state.get_cluster_config()
    except Exception:  # noqa: BLE001 - an older GCS: fall back to the head's file
        config = None
    if config is not None and config.node_group_configs:
        return [{k: float(v) for k, v in g.resources.items()} for g in config.node_group_configs if g.max_count != 0]
    path = BOOTSTRAP_CONFIG.expanduser()
    if not path.is_file():
        return None
    try:
        import yaml

        found = yaml.safe_load(path.read_text())  # `ray up` writes JSON, which YAML reads too
        types = found["available_node_types"]
        head = found.get("head_node_type")
        return [{k: float(v) for k, v in t.get("resources", {}).items()} for name, t in types.items()
                if name != head and int(t.get("max_workers", 0)) > 0]
    except (OSError, KeyError, TypeError, ValueError, yaml.YAMLError):
        return None


def check_resources(*, cpus_per_trial: float, gpus_per_trial: float, placement: Placement) -> str | None:
    """The per-trial request fits a node that exists now or one the autoscaler can add.
    Returns a note for the log when the study relies on the autoscaler."""
    import ray

    now = ray.cluster_resources()
    gpus, cpus = float(now.get("GPU", 0.0)), float(now.get("CPU", 0.0))
    if gpus_per_trial <= gpus and cpus_per_trial <= cpus:
        return None
    types = launchable_node_types() if placement.cluster else None
    # a trial's bundle must fit on one node: some node type the autoscaler may launch must hold it
    fits = [t for t in types or () if t.get("GPU", 0.0) >= gpus_per_trial and t.get("CPU", 0.0) >= cpus_per_trial]
    if fits:
        return (f"the cluster has {gpus:g} GPUs and {cpus:g} CPUs now; its autoscaler can add nodes with "
                f"{fits[0].get('GPU', 0.0):g} GPUs and {fits[0].get('CPU', 0.0):g} CPUs, so trials wait for them")
    if gpus_per_trial > gpus:
        more = ""
        if types is not None:
            per_type = ", ".join(f"{t.get('GPU', 0.0):g}" for t in types) or "no"
            more = f", nor can its autoscaler add a node with that many (its node types have {per_type} GPUs)"
        raise PreflightError(
            f"--gpus-per-trial {gpus_per_trial:g} asks for more GPUs than {placement.where} has ({gpus:g}){more}; "
            f"lower it (fractions like 0.5 share a GPU), add GPU nodes, or use --gpus-per-trial 0")
    raise PreflightError(f"--cpus-per-trial {cpus_per_trial:g} asks for more CPUs than {placement.where} has "
                         f"({cpus:g}); lower it")


def sharing_note(*, cpus_per_trial: float, gpus_per_trial: float) -> str | None:
    """Whether the alive nodes' CPUs keep fractional-GPU trials from filling their GPUs."""
    import ray

    from .packing import cpu_bound_note

    nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]
    return cpu_bound_note(nodes, cpus_per_trial=cpus_per_trial, gpus_per_trial=gpus_per_trial)


def trial_nodes(cpus_per_trial: float, gpus_per_trial: float) -> list[dict]:
    """The alive nodes whose resources can hold one trial."""
    import ray

    out = []
    for node in ray.nodes():
        res = node.get("Resources", {})
        if node.get("Alive") and res.get("CPU", 0.0) >= cpus_per_trial and res.get("GPU", 0.0) >= gpus_per_trial:
            out.append(node)
    return out


def probe_here(storage_path: str, tracking_uri: str) -> str | None:
    """Write, read back and delete a marker in the checkpoint storage; ask the tracking server for
    /health. Returns None, or one line saying what failed. Runs on whichever node calls it."""
    import pyarrow.fs as pafs

    marker_name = f".preflight-{uuid.uuid4().hex}"
    created: list[Path] = []  # folders this probe makes on a local filesystem, removed again after it
    try:
        if "://" in storage_path:
            fs, root = pafs.FileSystem.from_uri(storage_path)
        else:
            fs, root = pafs.LocalFileSystem(), str(Path(storage_path).resolve())
        if isinstance(fs, pafs.LocalFileSystem):
            created = missing_folders(root)
        fs.create_dir(root, recursive=True)
        marker = f"{root.rstrip('/')}/{marker_name}"
        with fs.open_output_stream(marker) as f:
            f.write(b"search.preflight")
        with fs.open_input_stream(marker) as f:
            ok = f.read() == b"search.preflight"
        fs.delete_file(marker)
        if not ok:
            return f"checkpoint storage {storage_path} returned other bytes than were written"
    except Exception as exc:  # noqa: BLE001 - any filesystem error is the answer
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return f"checkpoint storage {storage_path} is not writable: {first}"
    finally:
        remove_empty_folders(created)  # Ray makes them again when the study runs
    if urllib.parse.urlparse(tracking_uri).scheme in ("http", "https"):
        import requests

        problem = server_problem(tracking_uri, timeout=10)
        if problem:
            return problem
        # /health needs no login; a server behind MLflow's basic-auth app refuses everything else
        # to a node without MLFLOW_TRACKING_USERNAME/PASSWORD, and its trials would fail at their first log
        user = os.environ.get("MLFLOW_TRACKING_USERNAME")
        auth = (user, os.environ.get("MLFLOW_TRACKING_PASSWORD", "")) if user else None
        try:
            status = requests.get(tracking_uri.rstrip("/") + "/api/2.0/mlflow/experiments/search",
                                  params={"max_results": 1}, auth=auth, timeout=10).status_code
        except requests.RequestException as exc:
            return f"MLflow tracking server {tracking_uri} is unreachable ({type(exc).__name__})"
        if status in (401, 403):
            return (f"MLflow server {tracking_uri} refused this node's login (HTTP {status}): set "
                    f"MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD on every node")
    return None


def probe_nodes(storage_path: str, tracking_uri: str, *, cpus_per_trial: float, gpus_per_trial: float,
                placement: Placement) -> str | None:
    """Run ``probe_here`` on every node that can hold a trial (on a cluster), else here.
    Raises PreflightError naming the first node that failed; returns a note for the log."""
    if not placement.cluster:
        problem = probe_here(storage_path, tracking_uri)
        if problem:
            raise PreflightError(problem)
        return None
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    nodes = trial_nodes(cpus_per_trial, gpus_per_trial)
    if not nodes:
        problem = probe_here(storage_path, tracking_uri)
        if problem:
            raise PreflightError(f"from the driver's node: {problem}")
        return "no node that can run a trial is up yet: storage and tracking were checked from the driver's node"
    remote = ray.remote(num_cpus=0, max_retries=0)(probe_here)
    refs = {node["NodeManagerAddress"] + " " + node["NodeID"][:8]: remote.options(
        scheduling_strategy=NodeAffinitySchedulingStrategy(node_id=node["NodeID"], soft=False)).remote(
        storage_path, tracking_uri) for node in nodes}
    try:
        answers = dict(zip(refs, ray.get(list(refs.values()), timeout=PROBE_TIMEOUT_S), strict=True))
    except ray.exceptions.GetTimeoutError:
        raise PreflightError(f"the storage/tracking probe on the worker nodes did not answer within "
                             f"{PROBE_TIMEOUT_S:.0f} s") from None
    except ray.exceptions.RayError as exc:
        raise PreflightError(f"the storage/tracking probe failed on a worker node: "
                             f"{str(exc).strip().splitlines()[-1]}") from None
    for node, problem in answers.items():
        if problem:
            raise PreflightError(f"from node {node}: {problem}")
    return None


# --- disk space -----------------------------------------------------------------------------------

MB = 2**20


def checkpoint_bytes(architectures: tuple[str, ...], *, ema: bool) -> int:
    """The largest trainer checkpoint of these architectures: float32 weights of G and D, Adam's two
    moments of each, and the averaged G (counted from the networks themselves, built on the CPU)."""
    from gan_models import NetworkConfig, build_discriminator, build_generator

    largest = 0
    for arch in architectures:
        cfg = NetworkConfig(architecture=arch, batch_norm=True)
        g = sum(p.numel() for p in build_generator(cfg).parameters())
        d = sum(p.numel() for p in build_discriminator(cfg).parameters())
        largest = max(largest, 4 * (3 * (g + d) + (g if ema else 0)))
    return largest


def study_disk_bytes(*, trials: int, checkpoint: int, reports: int) -> int:
    """What a study leaves under --runs-dir: Ray keeps each trial's last checkpoint; MLflow keeps a complete
    trial's networks (G, D, averaged G: about a third of a checkpoint) and every run's sample grids."""
    grids = reports * 40_000  # a 64-sample PNG grid per report
    return trials * (checkpoint + checkpoint // 3 + grids) + 32 * MB  # + the two SQLite stores


def check_disk_space(folder: Path, need: int, *, what: str) -> None:
    """The filesystem under ``folder`` has ``need`` bytes free (its nearest existing ancestor is measured)."""
    probe = folder
    while not probe.exists():
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    if free < need:
        raise PreflightError(f"--runs-dir {folder} has {free / MB:,.0f} MB free; {what} need about "
                             f"{need / MB:,.0f} MB: free space, point --runs-dir elsewhere, or run fewer --trials")


# --- Ray --------------------------------------------------------------------------------------------


def start_ray(*, address: str | None, num_cpus: int | None, num_gpus: int | None, verbose: bool) -> None:
    """Start Ray on this machine, or join the cluster at ``address``; quietly, unless ``verbose``."""
    import logging
    import warnings

    import ray

    # quiet: Ray's notes on token authentication and the like are its own business, not the study's; so is
    # a failed snapshot of Tune's experiment state (Optuna's storage is the study's record)
    level = logging.WARNING if verbose else logging.ERROR
    if not verbose:
        logging.getLogger("ray.tune.execution.experiment_state").setLevel(logging.CRITICAL)
    try:
        with warnings.catch_warnings():
            if not verbose:
                warnings.simplefilter("ignore")
            if address:
                ray.init(address=address, logging_level=level, log_to_driver=verbose)
            else:
                ray.init(num_cpus=num_cpus, num_gpus=num_gpus, include_dashboard=False, logging_level=level,
                         log_to_driver=verbose)
    except (ConnectionError, RuntimeError, ValueError, OSError) as exc:
        raise PreflightError(f"cannot start or join Ray ({address or 'local'}): {str(exc).splitlines()[0]}") from None


def check_ray(storage_path: str, tracking_uri: str, *, cpus_per_trial: float, gpus_per_trial: float,
              placement: Placement) -> list[str]:
    """The started Ray can run this study's trials and reach its stores from their nodes; notes for the log."""
    notes = [check_resources(cpus_per_trial=cpus_per_trial, gpus_per_trial=gpus_per_trial, placement=placement),
             probe_nodes(storage_path, tracking_uri, cpus_per_trial=cpus_per_trial, gpus_per_trial=gpus_per_trial,
                         placement=placement),
             sharing_note(cpus_per_trial=cpus_per_trial, gpus_per_trial=gpus_per_trial)]
    return [n for n in notes if n]


def cluster_has_gpus() -> bool:
    """Whether the joined cluster has GPUs now, or its autoscaler can launch a node with some."""
    import ray

    if float(ray.cluster_resources().get("GPU", 0.0)) > 0:
        return True
    return any(t.get("GPU", 0.0) > 0 for t in launchable_node_types() or ())
