"""The study's status line and per-trial lines, on a controlled clock (the smoke budget: 6,400 images a trial)."""

from __future__ import annotations

import io

import pytest

from search.progress import StudyProgress

from search_helpers import plan_for

NOWHERE = "sqlite:////nonexistent/optuna.db"  # no study there: the plan reads nothing and writes nothing


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def _progress(clock, pruner: str = "none") -> tuple[StudyProgress, io.StringIO]:
    out = io.StringIO()
    p = StudyProgress(plan=plan_for("dot_latent", NOWHERE, trials=4, pruner=pruner), n_before={}, every_s=30.0,
                      stream=out, live_bar=False, clock=clock)
    return p, out


def test_eta_from_the_pace_of_trained_images():
    clock = Clock()
    p, out = _progress(clock)
    p.trial_started(0)
    p.trial_started(1)
    assert p.eta_s() == float("inf")  # no pace yet
    clock.t += 10.0
    p.trial_step(0, 3200)
    p.trial_step(1, 3200)  # 6,400 images in 10 s: 640 images/s
    # ahead: 2 trials not started (12,800) + 3,200 + 3,200 left in the running ones = 19,200 images -> 30 s
    assert p.eta_s() == pytest.approx(30.0)
    clock.t += 10.0
    p.trial_finished(0, "PRUNED", [480.0], 3200)  # stopped early: its remaining images vanish from the ETA
    p.trial_step(1, 6400)
    # 9,600 images in 20 s (480/s); ahead: 2 not started (12,800) + 0 in trial 1 -> 26.7 s
    assert p.eta_s() == pytest.approx(12800 / 480)


def test_eta_counts_the_share_a_pruner_leaves_to_a_trial_not_yet_started():
    from search.hardware import PRUNER_SPEND

    clock = Clock()
    p, _ = _progress(clock, pruner="asha")
    p.trial_started(0)
    clock.t += 10.0
    p.trial_step(0, 3200)  # 320 images/s
    # ahead: the running trial's 3,200 + 3 not started x 6,400 x 0.259 (successive halving's expected spend)
    assert p.eta_s() == pytest.approx((3200 + 3 * 6400 * PRUNER_SPEND["asha"][0]) / 320)


def test_lines_per_finished_trial_and_status_every_period():
    clock = Clock()
    p, out = _progress(clock)
    p.refresh()  # the first refresh prints at once
    p.trial_started(0)
    clock.t += 5
    p.refresh()  # within the period: nothing
    clock.t += 60
    p.trial_finished(0, "COMPLETE", [42.125], 6400)
    p.trial_started(1)
    clock.t += 3
    p.trial_finished(1, "FAIL", None, 1600)
    p.trial_started(2)
    p.trial_finished(2, "PRUNED", [480.0], 1600)
    clock.t += 30
    p.refresh()
    lines = out.getvalue().splitlines()
    assert lines[0] == "study dot_latent: 0 complete, 0 pruned, 0 failed, 0 running of 4 | elapsed 0:00 | ETA ?"
    assert lines[1] == "trial    0 COMPLETE fid 42.12                  images     6,400  time 1:05"
    # 65 s since the last status line: the refresh after the trial's line prints one
    assert lines[2] == ("study dot_latent: 1 complete, 0 pruned, 0 failed, 0 running of 4 | best fid 42.12 (trial 0) "
                        "| elapsed 1:05 | ETA 3:15")  # 6,400 images in 65 s; 3 trials x 6,400 images ahead
    assert lines[3] == "trial    1 FAIL     -                          images     1,600  time 0:03"
    assert lines[4] == "trial    2 PRUNED   fid_intermediate 480       images     1,600  time 0:00"
    assert lines[5].startswith("study dot_latent: 1 complete, 1 pruned, 1 failed, 0 running of 4 | "
                               "best fid 42.12 (trial 0) | elapsed 1:38 | ETA ")
    assert len(lines) == 6


def test_best_of_one_objective_none_of_two_and_resumed_counts():
    clock = Clock()
    out = io.StringIO()
    p = StudyProgress(plan=plan_for("pareto", NOWHERE, name="s", trials=3, pruner="none"), n_before={"COMPLETE": 1},
                      stream=out, live_bar=False, clock=clock)
    p.trial_finished(1, "COMPLETE", [0.5, 0.2], 6400)
    assert p.best is None  # two objectives: no single best
    single = StudyProgress(plan=plan_for("gan", NOWHERE, name="s", trials=3), n_before={"COMPLETE": 1}, stream=out,
                           live_bar=False, clock=clock)
    single.trial_finished(1, "COMPLETE", [80.0], 6400)
    single.trial_finished(2, "COMPLETE", [70.0], 6400)
    assert single.best == (70.0, 2)
    assert single.status().startswith("study s: 3 complete, 0 pruned, 0 failed, 0 running of 3 | best fid 70")
