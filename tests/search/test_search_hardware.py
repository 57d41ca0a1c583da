"""What the machine chooses when the command line does not (search.hardware), and the estimate's arithmetic."""

from __future__ import annotations

import math

import pytest

from search.budgets import BUDGETS
from search.hardware import (
    PRUNER_SPEND,
    Hardware,
    Speed,
    choose,
    estimate_s,
    fit_trials,
    gpus_per_trial,
    local_hardware,
    trials_at_once,
)
from search.studies import get_study

LAPTOP = Hardware(cluster=False, gpus=0, cpus=2)
GPU_BOX = Hardware(cluster=False, gpus=2, cpus=16)


def test_without_a_gpu_the_small_budget_and_the_mlp_pair():
    choice = choose(LAPTOP, budget=None, narrowed={})
    assert (choice.budget, choice.narrowing) == ("small", {"architecture": "mlp"})
    assert choice.note.startswith("no GPU here: budget small and the mlp pair only")
    # a study file that names the architecture keeps it; an explicit --budget is never second-guessed
    assert choose(LAPTOP, budget=None, narrowed={"architecture": "dcgan"}).narrowing == {}
    assert choose(LAPTOP, budget="full", narrowed={}) is None


def test_with_gpus_or_a_cluster_the_full_budget():
    assert choose(GPU_BOX, budget=None, narrowed={}).budget == "full"
    assert choose(GPU_BOX, budget=None, narrowed={}).note.startswith("2 GPU(s) here: budget full")
    cluster = Hardware(cluster=True, gpus=0, cpus=0)
    assert choose(cluster, budget=None, narrowed={}).budget == "full" and cluster.has_gpus
    assert local_hardware(cluster=False, num_gpus=3, num_cpus=5) == Hardware(cluster=False, gpus=3, cpus=5)


def test_gpu_share_and_trials_at_once():
    assert gpus_per_trial(None, gpus_available=True) == 0.25 and gpus_per_trial(None, gpus_available=False) == 0.0
    assert gpus_per_trial(0.5, gpus_available=False) == 0.5  # given: kept (the preflight judges it)
    assert trials_at_once(LAPTOP, cpus_per_trial=1, gpus_per_trial=0, max_concurrent=None) == 2
    assert trials_at_once(GPU_BOX, cpus_per_trial=1, gpus_per_trial=0.25, max_concurrent=None) == 8
    assert trials_at_once(GPU_BOX, cpus_per_trial=4, gpus_per_trial=0.25, max_concurrent=None) == 4
    assert trials_at_once(GPU_BOX, cpus_per_trial=1, gpus_per_trial=0.25, max_concurrent=3) == 3


def test_successive_halvings_expected_spend_is_the_papers_arithmetic():
    spend, complete = PRUNER_SPEND["asha"]
    # η = 3, three rungs: a ninth for all, two ninths more for a third, six ninths more for a ninth
    assert spend == pytest.approx(1 / 9 + (1 / 3) * (2 / 9) + (1 / 9) * (6 / 9))
    assert spend == pytest.approx(0.259, abs=1e-3)
    assert complete == pytest.approx(1 / 9) and PRUNER_SPEND["none"] == (1.0, 1.0)


def test_quorum_halvings_expected_spend_is_its_arithmetic_for_an_hour_long_study():
    # 18 trials (the main command's on 2 cores): the first η - 1 = 2 arrivals at each rung go on, then a third
    n, eta = 18, 3
    second = (eta - 1) + (n - (eta - 1)) / eta
    last = (eta - 1) + (second - (eta - 1)) / eta
    spend, complete = PRUNER_SPEND["asha-quorum"]
    assert spend == pytest.approx((n / 9 + second * 2 / 9 + last * 6 / 9) / n, abs=0.005)
    assert complete == pytest.approx(last / n, abs=0.005)


def test_every_pruner_has_an_expected_spend():
    from search.samplers import PRUNERS

    assert set(PRUNER_SPEND) == set(PRUNERS)
    assert all(0 < complete <= spend <= 1 for spend, complete in PRUNER_SPEND.values())


def test_estimate_golden():
    budget, speed = BUDGETS["smoke"], Speed(images_per_s=640.0, score_s_per_sample=0.001)
    # no pruning, 4 trials 2 at once, no refinement: each trial trains 6,400 images in 10 s, reports 4 FIDs of
    # 500 samples (2 s) and scores 1,000 samples (1 s): (4 x 13 s) / 2 + 20 s to start Ray = 46 s
    assert estimate_s(get_study("gan"), budget, trials=4, pruner="none", at_once=2, speed=speed,
                      startup_trials=1) == pytest.approx(46.0)
    # successive halving: the first 2 in full, the other 2 at 0.259 of a trial's images and 1/9 complete
    spend, complete = PRUNER_SPEND["asha"]
    full = 2 + 2 * spend
    expected = 20 + (full * (10 + 2) + (2 + 2 * complete) * 1) / 2
    assert estimate_s(get_study("gan"), budget, trials=4, pruner="asha", at_once=2, speed=speed,
                      startup_trials=1) == pytest.approx(expected)
    refining = estimate_s(get_study("dot_latent"), budget, trials=4, pruner="none", at_once=2, speed=speed,
                          startup_trials=1)
    # + per complete trial: 1,000 samples x ~10 steps at the training pace (15.6 s) and 4 more scorings (4 s)
    assert refining == pytest.approx(46.0 + 4 * (1000 * 10 / 640 + 4 * 1000 * 0.001) / 2)
    assert math.isfinite(refining)


def test_fit_trials_takes_the_most_that_fit():
    assert fit_trials(lambda n: 100.0 * n, limit_s=450.0, most=20) == 4
    assert fit_trials(lambda n: 100.0 * n, limit_s=5000.0, most=20) == 20  # capped
    assert fit_trials(lambda n: 1e9, limit_s=60.0, most=20) == 1  # never none


def test_a_new_study_without_trials_is_sized_to_the_time_limit(tmp_path):
    from search.recipes import RECIPES

    from search_helpers import plan_for

    plan = plan_for("gan", f"sqlite:///{tmp_path / 'o.db'}", recipes=True)
    sized = plan.with_trials(3)
    assert sized.settings.trials == 3 and [label for label, _ in sized.enqueued] == [
        f"recipe {n}" for n in list(RECIPES)[:3]]
    assert sized.notes[-1].endswith("left out: only 3 trials")
