"""Bringing a study back to a consistent state after its driver stopped (Ctrl-C, SIGKILL, a crash).

Optuna's storage is the study's record; Ray's experiment folder of the dead session and MLflow's
run states are brought in line with it, never the other way round:

- a trial still RUNNING in Optuna lost its driver: it becomes FAIL (reason "interrupted", flag
  ``interrupted``) and its params are enqueued again, so the study reruns exactly that config as a
  new trial, continuing from the interrupted trial's last checkpoint (its URI in shared storage is
  kept in Optuna as the trial runs); completed, pruned and failed trials are kept and never rerun;
- an MLflow trial run still RUNNING gets the status of its Optuna trial (FINISHED / FAILED), or
  KILLED when that trial was interrupted; there is one run per Optuna trial number, so no duplicates;
- a study counts as done when its finished trials (complete, pruned, failed, not interrupted)
  reach ``--trials``.
"""

from __future__ import annotations

import os
import shlex
import socket
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .options import DEFAULT_RUNS_DIR, SearchOptions
from .tracking import RUN_STATUS, STATE_TAG, TRIAL_TAG, StudyRun, client, trial_runs

if TYPE_CHECKING:
    import optuna

INTERRUPTED = "interrupted"
CHECKPOINT_ATTR = "checkpoint_uri"  # a trial's latest Ray checkpoint, recorded by the driver as it goes
RESUME_FROM_ATTR = "resume_from"  # on a rerun of an interrupted trial: where to continue from
INTERRUPTED_REASON = "interrupted: the driver stopped while the trial ran; its params were enqueued again"
DRIVER_ATTR = "driver"
SEED_ATTR = "seed"  # a trial trained with its own seed (a confirmation); others train with the study's
CONFIRMS_ATTR = "confirms"  # a confirmation trial: the number of the trial it retrains with another seed
CARRIED_ATTRS = (SEED_ATTR, CONFIRMS_ATTR, "enqueued")  # user attrs a rerun of an interrupted trial keeps


def finished_trials(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    from optuna.trial import TrialState

    return [t for t in study.get_trials(deepcopy=False)
            if t.state in (TrialState.COMPLETE, TrialState.PRUNED)
            or (t.state == TrialState.FAIL and not t.user_attrs.get(INTERRUPTED))]


def recover_stale_trials(study: optuna.Study) -> list[int]:
    """Fail every RUNNING trial as interrupted and enqueue its params again; returns their numbers."""
    import optuna
    from optuna.trial import TrialState

    stale = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    for t in stale:
        live = optuna.Trial(study, t._trial_id)
        live.set_user_attr("fail_reason", INTERRUPTED_REASON)
        live.set_user_attr(INTERRUPTED, True)
        study.tell(t.number, state=TrialState.FAIL)
        # the rerun keeps what the cut-off trial was given besides its params (a confirmation's seed)
        attrs = {k: v for k, v in t.user_attrs.items() if k in CARRIED_ATTRS} | {"retry_of": t.number}
        if t.user_attrs.get(CHECKPOINT_ATTR):
            attrs[RESUME_FROM_ATTR] = t.user_attrs[CHECKPOINT_ATTR]
        study.enqueue_trial(t.params, user_attrs=attrs)
    return [t.number for t in stale]


def reconcile_runs(study: optuna.Study, study_run: StudyRun) -> dict[str, int]:
    """End every still-running MLflow trial run with the state its Optuna trial has; count by status."""
    from optuna.trial import TrialState

    by_number = {t.number: t for t in study.get_trials(deepcopy=False)}
    c = client(study_run.tracking_uri)
    counts: dict[str, int] = {}
    for run in trial_runs(study_run):
        if run.info.status not in ("RUNNING", "SCHEDULED"):
            continue
        trial = by_number.get(int(run.data.tags.get(TRIAL_TAG, -1)))
        if trial is None or trial.state == TrialState.RUNNING or trial.user_attrs.get(INTERRUPTED):
            status, state = "KILLED", "FAIL"
            c.set_tag(run.info.run_id, "fail_reason", INTERRUPTED_REASON)
        else:
            status, state = RUN_STATUS.get(trial.state.name, "FAILED"), trial.state.name
        c.set_tag(run.info.run_id, STATE_TAG, state)
        c.set_terminated(run.info.run_id, status=status)
        counts[status] = counts.get(status, 0) + 1
    return counts


def driver_record() -> dict[str, Any]:
    return {"host": socket.gethostname(), "pid": os.getpid()}


def live_driver(study: optuna.Study) -> dict[str, Any] | None:
    """The recorded driver of the study if it still runs on this host (another session's), else None."""
    rec = study.user_attrs.get(DRIVER_ATTR)
    if not rec or rec.get("host") != socket.gethostname() or rec.get("pid") == os.getpid():
        return None
    cmdline = Path(f"/proc/{int(rec['pid'])}/cmdline")
    try:
        alive = b"search" in cmdline.read_bytes()
    except OSError:
        return None
    return rec if alive else None


def resume_command(opts: SearchOptions, name: str) -> str:
    """The command that continues this study: every store and data flag it was started with."""
    args = ["python", "-m", "search.run", "--name", name, "--resume"]
    for flag, value in (("--runs-dir", None if opts.runs_dir == DEFAULT_RUNS_DIR else opts.runs_dir),
                        ("--storage", opts.storage), ("--tracking-uri", opts.tracking_uri),
                        ("--storage-path", opts.storage_path), ("--address", opts.address),
                        ("--data-root", opts.data_root)):
        if value is not None:
            args += [flag, str(value)]
    if not opts.download:
        args.append("--no-download")
    if opts.confirm:
        args += ["--confirm", str(opts.confirm)]
    return shlex.join(args)
