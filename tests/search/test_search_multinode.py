"""A study on a Ray cluster whose worker nodes share no disk with the driver, as a real cluster's.

A head with no CPUs (so no trial runs beside the driver) and worker nodes each in their own mount
namespace, with tmpfs over the driver's folder, the data root and the evaluation cache: a trial
that opened any of them would fail. Trials get their data, evaluator and settings through Ray's
object store, log to a real `mlflow server` on 127.0.0.1 (artifacts proxied) and checkpoint to a
`file://` folder every node sees. Then a node's raylet is killed mid-trial: the trial resumes
from its checkpoint on the standby node and the study completes with no trial lost or duplicated.
"""

from __future__ import annotations

import secrets
import subprocess
import tempfile
from pathlib import Path

import pytest
from optuna.trial import TrialState

from loopback_cluster import LoopbackCluster, can_isolate
from search_helpers import PY, SMOKE_SPACE, artifact_paths, mlflow_runs, optuna_trials, wait_for, write

pytestmark = [pytest.mark.cluster, pytest.mark.skipif(bool(can_isolate()), reason=str(can_isolate()))]
DONE = {TrialState.COMPLETE, TrialState.PRUNED}


@pytest.fixture(scope="module")
def layout(tmp_path_factory, search_env):
    root = tmp_path_factory.mktemp("multinode")
    driver, shared = root / "driver", root / "shared"
    driver.mkdir()
    shared.mkdir()
    hidden = [driver, Path(search_env["GAN_DATA_ROOT"]), Path(search_env["GAN_EVAL_CACHE"]),
              Path.home() / ".cache"]
    return {"root": root, "driver": driver, "shared": shared, "hidden": hidden}


@pytest.fixture(scope="module")
def cluster(layout, search_env):
    # token authentication on, the token handed to every node through its environment (as on a real cluster)
    env = {**search_env, "RAY_DEDUP_LOGS": "0", "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}
    c = LoopbackCluster(root=layout["root"], hidden=layout["hidden"], env=env,
                        temp_dir=Path(tempfile.mkdtemp(prefix="rt", dir="/tmp")))
    try:
        c.start_head()
        c.add_node("node2")  # one at a time: nodes starting together race for their socket names
        c.wait_for_cpus(1)
        c.add_node("node3")
        c.wait_for_cpus(2)
        yield c
    finally:
        c.stop()


def _driver(args: list[str], layout, *, mlflow_uri: str, storage: str) -> list[str]:
    return [PY, "-m", "search.run", *args, "--tracking-uri", mlflow_uri, "--storage-path", storage,
            "--runs-dir", str(layout["driver"] / "runs")]


def test_worker_nodes_cannot_see_the_drivers_files(cluster, layout):
    import ray  # noqa: F401 - the probe below runs on a worker node through the real cluster

    hidden = [str(p) for p in layout["hidden"][:3]]
    script = (f"import os, ray; ray.init(address='{cluster.address}', logging_level='ERROR');\n"
              "@ray.remote(num_cpus=1)\n"
              "def look(paths): return [sorted(os.listdir(p)) if os.path.isdir(p) else None for p in paths]\n"
              f"print(ray.get(look.remote({hidden!r})))")
    out = subprocess.run([PY, "-c", script], env=cluster.env, capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "[[], [], []]"  # empty tmpfs where the driver has files


@pytest.fixture(scope="module")
def study(cluster, layout, mlflow_server):
    space = write(layout["root"] / "space.yaml", SMOKE_SPACE)
    storage = (layout["shared"] / "ray").as_uri()
    args = ["--study", "dot_latent", "--budget", "smoke", "--trials", "3", "--study-file", str(space),
            "--pruner", "none", "--address", cluster.address, "--quiet", "--max-concurrent", "2"]
    proc = subprocess.run(_driver(args, layout, mlflow_uri=mlflow_server["uri"], storage=storage),
                          cwd=layout["driver"], env=cluster.env, capture_output=True, text=True, timeout=900)
    return {"proc": proc, "storage": f"sqlite:///{layout['driver'] / 'runs' / 'optuna.db'}",
            "ray": layout["shared"] / "ray", "uri": mlflow_server["uri"]}


def test_study_on_nodes_that_share_no_disk(study):
    proc = study["proc"]
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    trials = optuna_trials(study["storage"], "dot_latent")
    assert len(trials) == 3 and {t.state for t in trials} <= DONE, [(t.state, t.user_attrs) for t in trials]
    parents, runs = mlflow_runs(study["uri"], "dot_latent")
    assert len(parents) == 1 and sorted(int(r.data.tags["optuna.trial_number"]) for r in runs) == [0, 1, 2]
    for run in runs:
        files = set(artifact_paths(study["uri"], run.info.run_id))
        assert "checkpoint/models.pt" in files and "refinement/frontier.png" in files, files
    # every trial's checkpoints went to the shared storage
    assert len(list(study["ray"].glob("dot_latent-session001/trial_*/checkpoint_*"))) == 3


def test_a_lost_node_resumes_its_trial_from_the_checkpoint(cluster, layout, mlflow_server, study):
    import os
    import signal

    space = write(layout["root"] / "space.yaml", SMOKE_SPACE)
    storage = (layout["shared"] / "ray-fault").as_uri()
    db = f"sqlite:///{layout['driver'] / 'runs' / 'optuna.db'}"
    args = ["--study", "gan", "--name", "fault", "--budget", "smoke", "--trials", "2", "--study-file", str(space),
            "--pruner", "none", "--address", cluster.address, "--quiet", "--max-concurrent", "1",
            "--max-failures", "2"]
    log = (layout["root"] / "fault-driver.log").open("w")
    proc = subprocess.Popen(_driver(args, layout, mlflow_uri=mlflow_server["uri"], storage=storage),
                            cwd=layout["driver"], env=cluster.env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        def reported_once():  # a trial has checkpointed at least once and is still running
            try:
                trials = optuna_trials(db, "fault")
            except Exception:  # noqa: BLE001 - not created yet
                return None
            return next((t for t in trials if t.state == TrialState.RUNNING and t.intermediate_values), None)

        wait_for(reported_once, proc)
        victim = wait_for(lambda: next((n for n in cluster.nodes if n.runs_a_trial()), None), proc, timeout=60)
        raylet = victim.raylet()
        assert raylet is not None
        os.kill(raylet, signal.SIGKILL)  # the node is lost mid-trial
        assert proc.wait(900) == 0, (layout["root"] / "fault-driver.log").read_text()[-5000:]
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()
    trials = optuna_trials(db, "fault")
    assert len(trials) == 2 and all(t.state == TrialState.COMPLETE for t in trials)
    _, runs = mlflow_runs(mlflow_server["uri"], "fault")
    assert sorted(int(r.data.tags["optuna.trial_number"]) for r in runs) == [0, 1]  # no duplicate runs
    resumed = [r for r in runs if int(r.data.tags.get("resumed_from_step", 0)) > 0]
    assert len(resumed) == 1, [r.data.tags for r in runs]
    assert all(r.info.status == "FINISHED" for r in runs)


CLI_REFUSALS = [
    (["--storage-path", "relative/ray"], "is a folder on this node only"),
    (["--tracking-uri", "sqlite:///m.db"], "is reachable from this node only"),
    (["--gpus-per-trial", "1"], "asks for more GPUs than the Ray cluster at"),
]


@pytest.mark.parametrize("override, expected", CLI_REFUSALS)
def test_cluster_refusals_are_one_line_and_write_nothing(cluster, layout, mlflow_server, tmp_path, override,
                                                         expected):
    args = ["--study", "gan", "--budget", "smoke", "--trials", "1", "--address", cluster.address,
            "--tracking-uri", mlflow_server["uri"], "--storage-path", (tmp_path / "shared").as_uri(),
            "--runs-dir", str(tmp_path / "runs")]
    for flag, value in zip(override[::2], override[1::2], strict=True):
        i = args.index(flag) if flag in args else None
        if i is None:
            args += [flag, value]
        else:
            args[i + 1] = value
    out = subprocess.run([PY, "-m", "search.run", *args], cwd=tmp_path, env=cluster.env, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode != 0
    errors = [ln for ln in out.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and expected in errors[0], out.stderr[-3000:]
    assert not (tmp_path / "runs").exists() and not (tmp_path / "shared").exists()
