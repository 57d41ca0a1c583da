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
import socket
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from .tracking import RUN_STATUS, STATE_TAG, TRIAL_TAG, StudyRun, client, trial_runs

INTERRUPTED = "interrupted"
CHECKPOINT_ATTR = "checkpoint_uri"  # a trial's latest Ray checkpoint, recorded by the driver as it goes
RESUME_FROM_ATTR = "resume_from"  # on a rerun of an interrupted trial: where to continue from
INTERRUPTED_REASON = "interrupted: the driver stopped while the trial ran; its params were enqueued again"
DRIVER_ATTR = "driver"


def finished_trials(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    return [t for t in study.get_trials(deepcopy=False)
            if t.state in (TrialState.COMPLETE, TrialState.PRUNED)
            or (t.state == TrialState.FAIL and not t.user_attrs.get(INTERRUPTED))]


def recover_stale_trials(study: optuna.Study) -> list[int]:
    """Fail every RUNNING trial as interrupted and enqueue its params again; returns their numbers."""
    stale = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    for t in stale:
        live = optuna.Trial(study, t._trial_id)
        live.set_user_attr("fail_reason", INTERRUPTED_REASON)
        live.set_user_attr(INTERRUPTED, True)
        study.tell(t.number, state=TrialState.FAIL)
        attrs = {"retry_of": t.number}
        if t.user_attrs.get(CHECKPOINT_ATTR):
            attrs[RESUME_FROM_ATTR] = t.user_attrs[CHECKPOINT_ATTR]
        study.enqueue_trial(t.params, user_attrs=attrs)
    return [t.number for t in stale]


def reconcile_runs(study: optuna.Study, study_run: StudyRun) -> dict[str, int]:
    """End every still-running MLflow trial run with the state its Optuna trial has; count by status."""
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
