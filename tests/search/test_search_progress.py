"""The study's status line and per-trial lines, on a controlled clock."""

from __future__ import annotations

import io

import pytest

from search.progress import StudyProgress


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def _progress(clock, **kw) -> tuple[StudyProgress, io.StringIO]:
    out = io.StringIO()
    p = StudyProgress(name="dot_latent", n_trials=4, n_before={}, steps_per_trial=100, objectives=("fid",),
                      directions=("minimize",), every_s=30.0, stream=out, live_bar=False, clock=clock, **kw)
    return p, out


def test_eta_from_the_pace_of_trained_steps():
    clock = Clock()
    p, out = _progress(clock)
    p.trial_started(0)
    p.trial_started(1)
    assert p.eta_s() == float("inf")  # no pace yet
    clock.t += 10.0
    p.trial_step(0, 50)
    p.trial_step(1, 50)  # 100 steps in 10 s: 10 steps/s
    # ahead: 2 trials not started (200) + 50 + 50 left in the running ones = 300 steps -> 30 s
    assert p.eta_s() == pytest.approx(30.0)
    clock.t += 10.0
    p.trial_finished(0, "PRUNED", [480.0], 50)  # stopped early: its remaining steps vanish from the ETA
    p.trial_step(1, 100)
    # 150 steps in 20 s (7.5/s); ahead: 2 not started (200) + 0 in trial 1 -> 26.7 s
    assert p.eta_s() == pytest.approx(200 / 7.5)


def test_lines_per_finished_trial_and_status_every_period():
    clock = Clock()
    p, out = _progress(clock)
    p.refresh()  # the first refresh prints at once
    p.trial_started(0)
    clock.t += 5
    p.refresh()  # within the period: nothing
    clock.t += 60
    p.trial_finished(0, "COMPLETE", [42.125], 100)
    p.trial_started(1)
    clock.t += 3
    p.trial_finished(1, "FAIL", None, 25)
    p.trial_started(2)
    p.trial_finished(2, "PRUNED", [480.0], 25)
    clock.t += 30
    p.refresh()
    lines = out.getvalue().splitlines()
    assert lines[0] == "study dot_latent: 0 complete, 0 pruned, 0 failed, 0 running of 4 | elapsed 0:00 | ETA ?"
    assert lines[1] == "trial    0 COMPLETE fid 42.12                  steps    100  time 1:05"
    # 65 s since the last status line: the refresh after the trial's line prints one
    assert lines[2] == ("study dot_latent: 1 complete, 0 pruned, 0 failed, 0 running of 4 | best fid 42.12 (trial 0) "
                        "| elapsed 1:05 | ETA 3:15")  # 100 steps in 65 s; 3 trials x 100 steps ahead
    assert lines[3] == "trial    1 FAIL     -                          steps     25  time 0:03"
    assert lines[4] == "trial    2 PRUNED   fid_intermediate 480       steps     25  time 0:00"
    assert lines[5].startswith("study dot_latent: 1 complete, 1 pruned, 1 failed, 0 running of 4 | "
                               "best fid 42.12 (trial 0) | elapsed 1:38 | ETA ")
    assert len(lines) == 6


def test_best_follows_the_direction_and_resumed_counts():
    clock = Clock()
    out = io.StringIO()
    p = StudyProgress(name="s", n_trials=3, n_before={"COMPLETE": 1}, steps_per_trial=10, objectives=("precision",),
                      directions=("maximize",), stream=out, live_bar=False, clock=clock)
    p.trial_finished(1, "COMPLETE", [0.5], 10)
    p.trial_finished(2, "COMPLETE", [0.7], 10)
    assert p.best == (0.7, 2)
    assert p.status().startswith("study s: 3 complete, 0 pruned, 0 failed, 0 running of 3 | best precision 0.7")
