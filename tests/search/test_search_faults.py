"""Faults on the real stack: the driver stopped by Ctrl-C, by SIGTERM (what `timeout` and batch schedulers
send) and by SIGKILL mid-study, then --resume; a trial's worker killed mid-trial and retried from its last
Ray checkpoint; the disk under --runs-dir filling up mid-study, then --resume once space is freed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from optuna.trial import TrialState

from search_helpers import PY, SMOKE_SPACE, mlflow_runs, optuna_trials, run_cli, small_tmpfs, wait_for, write

pytestmark = pytest.mark.slow
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)


def _start(args: list[str], cwd: Path, env) -> subprocess.Popen:
    log = open(cwd / f"driver-{time.monotonic_ns()}.log", "w")
    proc = subprocess.Popen([PY, "-m", "search.run", *args], cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    proc.log_path = Path(log.name)  # type: ignore[attr-defined]
    return proc


def _reap(proc: subprocess.Popen) -> None:
    """Whatever the driver's session still holds (Ray's processes) goes with it."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _snapshot(storage: str, name: str):
    try:
        return optuna_trials(storage, name)
    except Exception:  # noqa: BLE001 - the study is not created yet
        return []


def _complete_and_running(storage: str, name: str, n_complete: int):
    trials = _snapshot(storage, name)
    done = [t for t in trials if t.state == TrialState.COMPLETE]
    running = [t for t in trials if t.state == TrialState.RUNNING]
    return trials if len(done) >= n_complete and running else None


def test_ctrl_c_and_sigkill_then_resume_lose_and_rerun_nothing(tmp_path, search_env):
    space = write(tmp_path / "space.yaml", SMOKE_SPACE)
    storage, tracking = f"sqlite:///{tmp_path / 'runs' / 'optuna.db'}", f"sqlite:///{tmp_path / 'runs' / 'mlflow.db'}"
    common = ["--num-cpus", "2", "--max-concurrent", "1", "--quiet"]
    kept: dict[int, tuple] = {}

    def keep(trials):
        for t in trials:
            if t.state in FINISHED:
                kept.setdefault(t.number, (t.state, t.values, t.datetime_complete, t.params))

    # 1. Ctrl-C once a trial has completed and the next one runs: the driver settles what it cut off
    proc = _start(["--study", "gan", "--budget", "smoke", "--trials", "4", "--study-file", str(space), "--seed", "0",
                   "--pruner", "none", *common], tmp_path, search_env)
    try:
        keep(wait_for(lambda: _complete_and_running(storage, "gan", 1), proc))
        proc.send_signal(signal.SIGINT)
        assert proc.wait(300) == 130
    finally:
        _reap(proc)
    trials = optuna_trials(storage, "gan")
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    cut = [t for t in trials if t.user_attrs.get("interrupted")]
    assert cut and all(t.state == TrialState.FAIL for t in cut)
    parents, runs = mlflow_runs(tracking, "gan")
    assert parents[0].info.status == "KILLED" and not [r for r in runs if r.info.status == "RUNNING"]

    # 2. --resume, then SIGTERM once one more trial has completed: as Ctrl-C, with exit 143, and no stack dump
    proc = _start(["--name", "gan", "--resume", *common], tmp_path, search_env)
    try:
        keep(wait_for(lambda: _complete_and_running(storage, "gan", 2), proc))
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(300) == 143
    finally:
        _reap(proc)
    output = proc.log_path.read_text()
    assert "interrupted; continue with: python -m search.run --name gan --resume" in output
    assert "SIGTERM received" not in output and "Traceback" not in output and "*** " not in output
    assert not [t for t in optuna_trials(storage, "gan") if t.state == TrialState.RUNNING]

    # 3. --resume, then SIGKILL once one more trial has completed: nothing gets settled this time
    proc = _start(["--name", "gan", "--resume", *common], tmp_path, search_env)
    try:
        keep(wait_for(lambda: _complete_and_running(storage, "gan", 3), proc))
        proc.send_signal(signal.SIGKILL)
        proc.wait(60)
    finally:
        _reap(proc)
    assert [t for t in optuna_trials(storage, "gan") if t.state == TrialState.RUNNING]  # left behind by SIGKILL

    # 4. --resume finishes the study
    done = run_cli(["--name", "gan", "--resume", *common], cwd=tmp_path, env=search_env, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "were interrupted; marked FAIL and enqueued again" in done.stdout

    trials = optuna_trials(storage, "gan")
    assert {t.state for t in trials} <= set(FINISHED)  # nothing RUNNING or WAITING
    counted = [t for t in trials if not t.user_attrs.get("interrupted")]
    assert len(counted) == 4
    for number, (state, values, completed, params) in kept.items():  # nothing lost or changed
        t = trials[number]
        assert (t.state, t.values, t.datetime_complete, t.params) == (state, values, completed, params)
    interrupted = [t for t in trials if t.user_attrs.get("interrupted")]
    assert len(interrupted) >= 3
    for t in interrupted:  # each interrupted config ran again as a new trial
        reruns = [r for r in trials if r.user_attrs.get("retry_of") == t.number]
        assert len(reruns) == 1 and reruns[0].params == t.params and reruns[0].state in FINISHED
    complete_params = [json.dumps(t.params, sort_keys=True) for t in trials if t.state == TrialState.COMPLETE]
    assert len(complete_params) == len(set(complete_params))  # no completed config ran twice

    parents, runs = mlflow_runs(tracking, "gan")
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    numbers = sorted(int(r.data.tags["optuna.trial_number"]) for r in runs)
    assert len(numbers) == len(set(numbers))  # one run per Optuna trial
    assert set(numbers) <= {t.number for t in trials}
    assert not [r for r in runs if r.info.status in ("RUNNING", "SCHEDULED")]
    by_number = {int(r.data.tags["optuna.trial_number"]): r for r in runs}
    for t in interrupted:
        if t.number in by_number:
            assert by_number[t.number].info.status == "KILLED"
    for t in trials:
        if t.state == TrialState.COMPLETE:
            assert by_number[t.number].info.status == "FINISHED"
    sessions = sorted(p.name for p in (tmp_path / "runs" / "ray").iterdir())
    assert sessions == ["gan-session001", "gan-session002", "gan-session003", "gan-session004"]


def test_dead_worker_is_retried_from_its_last_checkpoint(tmp_path, search_env):
    space = write(tmp_path / "space.yaml", SMOKE_SPACE + "  loss: bce\n")
    proc = _start(["--study", "gan", "--budget", "smoke", "--trials", "1", "--study-file", str(space),
                   "--num-cpus", "2", "--max-failures", "2", "--quiet"], tmp_path, search_env)
    session = tmp_path / "runs" / "ray" / "gan-session001"

    def first_report():
        for result in session.glob("trial_0000_*/result.json"):
            lines = result.read_text().splitlines()
            if lines:
                return json.loads(lines[0])
        return None

    try:
        first = wait_for(first_report, proc)
        os.kill(int(first["pid"]), signal.SIGKILL)  # the trial's worker process, not the driver
        assert proc.wait(900) == 0
    finally:
        _reap(proc)
    (trial,) = optuna_trials(f"sqlite:///{tmp_path / 'runs' / 'optuna.db'}", "gan")
    assert trial.state == TrialState.COMPLETE
    assert trial.user_attrs["resumed_from_step"] >= first["step"] and trial.user_attrs["train_images"] == 6400
    results = [json.loads(line) for line in next(session.glob("trial_0000_*/result.json")).read_text().splitlines()]
    assert len({r["pid"] for r in results}) == 2  # a second worker finished the trial
    restarted = [r for r in results if r["pid"] != first["pid"]]
    assert restarted[0]["step"] > restarted[0]["resumed_from_step"] >= first["step"]
    _, runs = mlflow_runs(f"sqlite:///{tmp_path / 'runs' / 'mlflow.db'}", "gan")
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
    assert int(runs[0].data.tags["resumed_from_step"]) == trial.user_attrs["resumed_from_step"]


@pytest.fixture
def small_disk(tmp_path):
    """A 260 MB tmpfs as --runs-dir: enough for a 3-trial smoke study's checkpoints, and quick to fill."""
    with small_tmpfs(tmp_path / "runs", "260m") as folder:
        yield folder


def test_a_full_disk_stops_the_study_in_one_line_and_resume_continues(tmp_path, small_disk, search_env):
    import shutil

    args = ["--study", "gan", "--budget", "smoke", "--trials", "3", "--num-cpus", "2", "--max-concurrent", "1",
            "--runs-dir", str(small_disk)]
    storage = f"sqlite:///{small_disk / 'optuna.db'}"
    proc = subprocess.Popen([PY, "-m", "search.run", *args], cwd=tmp_path, env=search_env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        wait_for(lambda: [t for t in _snapshot(storage, "gan") if t.state == TrialState.RUNNING], proc)
        filler = small_disk / "filler"  # the disk fills while a trial runs: its next checkpoint cannot be written
        subprocess.run(["fallocate", "-l", str(shutil.disk_usage(small_disk).free - 2**19), str(filler)], check=True)
        out, err = proc.communicate(timeout=600)
    finally:
        _reap(proc)
    assert proc.returncode == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"error: no space left on the disk of --runs-dir {small_disk} (")
    assert "the trials left need about" in lines[0] and "MB free" in lines[0]
    assert lines[0].endswith(f"continue with: python -m search.run --name gan --resume --runs-dir {small_disk}")
    # the records are readable and nothing finished was lost; recipes not yet started stay enqueued
    trials = optuna_trials(storage, "gan")
    assert trials and all(t.state in (*FINISHED, TrialState.RUNNING, TrialState.WAITING) for t in trials)
    assert any(t.state == TrialState.RUNNING for t in trials)  # the interrupted trial, for --resume to redo

    filler.unlink()  # space freed: the same study continues
    done = run_cli(["--name", "gan", "--resume", "--runs-dir", str(small_disk), "--num-cpus", "2"], cwd=tmp_path,
                   env=search_env, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    trials = optuna_trials(storage, "gan")
    assert {t.state for t in trials} <= set(FINISHED)
    assert len([t for t in trials if not t.user_attrs.get("interrupted")]) == 3
    _, runs = mlflow_runs(f"sqlite:///{small_disk / 'mlflow.db'}", "gan")
    assert not [r for r in runs if r.info.status == "RUNNING"]
