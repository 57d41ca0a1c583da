"""Resume bookkeeping, MLflow run handling and the study tables on real SQLite Optuna and MLflow stores
(no Ray: the end-to-end kill/resume runs are in test_search_e2e.py)."""

from __future__ import annotations

import socket

import optuna
import pandas as pd
import pytest
from optuna.trial import TrialState

from search.preflight import PreflightError, check_tracking_uri
from search.report import best_trials, pareto_front, trials_table
from search.resume import INTERRUPTED, finished_trials, reconcile_runs, recover_stale_trials
from search.studies import get_study
from search.tracking import TrackingError, TrialRun, client, end_trial_run, open_study_run, trial_runs

optuna.logging.set_verbosity(optuna.logging.WARNING)


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    root = tmp_path_factory.mktemp("stores")
    return f"sqlite:///{root / 'optuna.db'}", f"sqlite:///{root / 'mlflow.db'}"


def test_stale_trials_fail_and_rerun_and_runs_are_reconciled(stores):
    storage, uri = stores
    s = get_study("gan")
    study = optuna.create_study(study_name="resume-unit", storage=storage, directions=list(s.directions),
                                sampler=optuna.samplers.RandomSampler(0))
    sr = open_study_run(uri, "resume-unit", resume=False, tags={})
    runs = {}
    trials = []
    for n in range(4):
        t = study.ask()
        params = s.suggest(t)
        trials.append((t, params))
        runs[n] = TrialRun.open(sr, study_name="resume-unit", trial_number=t.number, params=params).run_id
    done, cut, pruned, failed = (t for t, _ in trials)
    study.tell(done, 123.0)
    end_trial_run(sr, runs[0], "COMPLETE")
    pruned.report(500.0, 25)
    study.tell(pruned, state=TrialState.PRUNED)  # the driver died before closing this run
    failed.set_user_attr("fail_reason", "training diverged at step 7: generator loss is nan")
    study.tell(failed, state=TrialState.FAIL)
    end_trial_run(sr, runs[3], "FAIL", {"fail_reason": "diverged"})

    # a restarted worker finds its run again: never a duplicate
    again = TrialRun.open(sr, study_name="resume-unit", trial_number=cut.number, params=trials[1][1])
    assert again.run_id == runs[1]

    assert recover_stale_trials(study) == [cut.number]
    frozen = {t.number: t for t in study.trials}
    assert frozen[cut.number].state == TrialState.FAIL and frozen[cut.number].user_attrs[INTERRUPTED] is True
    waiting = study.get_trials(states=(TrialState.WAITING,))
    assert len(waiting) == 1 and waiting[0].user_attrs["retry_of"] == cut.number
    assert [t.number for t in finished_trials(study)] == [0, 2, 3]  # the interrupted one does not count
    assert frozen[0].value == 123.0  # completed trials untouched

    counts = reconcile_runs(study, sr)
    assert counts == {"KILLED": 1, "FINISHED": 1}
    status = {int(r.data.tags["optuna.trial_number"]): (r.info.status, r.data.tags["optuna.state"])
              for r in trial_runs(sr)}
    assert status == {0: ("FINISHED", "COMPLETE"), 1: ("KILLED", "FAIL"), 2: ("FINISHED", "PRUNED"),
                      3: ("FAILED", "FAIL")}
    assert len(trial_runs(sr)) == 4
    assert reconcile_runs(study, sr) == {}  # idempotent

    # the re-enqueued params come back first, as a new trial
    t = study.ask()
    assert s.suggest(t) == trials[1][1] and t.number == 4


def test_resume_reuses_the_parent_run_and_refuses_a_duplicate(stores):
    _, uri = stores
    first = open_study_run(uri, "parent-unit", resume=False, tags={"budget": "smoke"})
    with pytest.raises(TrackingError, match="already has study 'parent-unit'.s parent run"):
        open_study_run(uri, "parent-unit", resume=False, tags={})
    client(uri).set_terminated(first.parent_run_id, "KILLED")
    again = open_study_run(uri, "parent-unit", resume=True, tags={})
    assert again == first
    assert client(uri).get_run(first.parent_run_id).info.status == "RUNNING"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_tracking_server_fails_fast():
    with pytest.raises(PreflightError, match=r"MLflow tracking server http://127.0.0.1:\d+ is unreachable"):
        check_tracking_uri(f"http://127.0.0.1:{_free_port()}")
    with pytest.raises(PreflightError, match="use sqlite:///PATH.db or http://HOST:PORT"):
        check_tracking_uri("file:///tmp/mlruns")


def _table(points):
    return pd.DataFrame([{"number": i, "state": st, "precision": p, "recall": r, "value_0": -p}
                         for i, (st, p, r) in enumerate(points)])


def test_pareto_front_golden():
    table = _table([("COMPLETE", 0.9, 0.1), ("COMPLETE", 0.5, 0.5), ("COMPLETE", 0.4, 0.4),
                    ("COMPLETE", 0.1, 0.9), ("COMPLETE", 0.5, 0.45), ("PRUNED", 1.0, 1.0)])
    front = pareto_front(table)
    assert sorted(front["number"]) == [0, 1, 3]
    assert list(front["recall"]) == sorted(front["recall"])
    best = best_trials(get_study("pareto"), table)
    assert sorted(best["number"]) == [0, 1, 3]
    top = best_trials(get_study("gan"), table.assign(value_0=[5.0, 1.0, 3.0, 2.0, 4.0, 0.0]), n=2)
    assert list(top["number"]) == [1, 3]  # minimised FID; the pruned trial's value does not count


def test_trials_table_mixed_types_write_to_parquet(tmp_path):
    study = optuna.create_study()
    for v in (1.0, 2.0):
        t = study.ask()
        t.suggest_categorical("spectral_norm", [False, True])
        t.set_user_attr("note", True if v == 1.0 else "text")
        study.tell(t, v)
    table = trials_table(study)
    table.to_parquet(tmp_path / "t.parquet")
    back = pd.read_parquet(tmp_path / "t.parquet")
    assert list(back["state"]) == ["COMPLETE", "COMPLETE"] and list(back["value_0"]) == [1.0, 2.0]


def test_intermediate_fid_plot_marks_pruned_curves_where_they_were_cut():
    from search.report import plot_intermediate

    study = optuna.create_study()
    for values, state in (({25: 300.0, 50: 200.0, 75: 150.0}, TrialState.COMPLETE), ({25: 500.0, 50: 480.0},
                                                                                     TrialState.PRUNED)):
        t = study.ask()
        for step, v in values.items():
            t.report(v, step)
        study.tell(t, 150.0 if state == TrialState.COMPLETE else None, state=state)
    ax = plot_intermediate(study)
    styles = [(tuple(line.get_xdata()), line.get_linestyle(), line.get_marker()) for line in ax.get_lines()]
    assert styles == [((25, 50, 75), "-", "None"), ((25, 50), "--", "None"), ((50,), "None", "x")]
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == ["trial 0 (complete)", "trial 1 (pruned at 50)"]


def test_a_rerun_of_an_interrupted_confirmation_keeps_its_seed(stores):
    """A cut-off trial is enqueued again with what it was given besides its params (search.confirm's seed)."""
    storage, _ = stores
    study = optuna.create_study(study_name="carry-unit", storage=storage)
    study.enqueue_trial({"x": 0.5}, user_attrs={"seed": 3, "confirms": 7, "note": "dropped"})
    t = study.ask()
    t.suggest_float("x", 0.0, 1.0)
    assert recover_stale_trials(study) == [t.number]
    rerun = study.get_trials(states=(TrialState.WAITING,))[0]
    assert rerun.user_attrs == {"seed": 3, "confirms": 7, "retry_of": t.number}
