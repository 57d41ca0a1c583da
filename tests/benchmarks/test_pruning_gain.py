"""benchmarks.pruning_gain: the comparison's arithmetic, its refusals, and the replay of recorded curves through
the real pruners on the case that made asha-quorum the default (crossing curves, the best arriving second)."""

from __future__ import annotations

import datetime as dt
import math

import optuna
import pytest

from benchmarks import pruning_gain as pg

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _run(images: int, best: float, params: list, trials: int = 2) -> dict:
    return {"sampler": "random", "seed": 0, "budget": "smoke", "trials": [{}] * trials, "train_images": images,
            "best_fid": best, "wall_s": images / 100, "params": params}


def test_compare_gives_the_ratios_the_goals_bound():
    full = _run(10_000, 50.0, [{"a": 1}, {"a": 2}])
    kept = pg.compare(_run(3_000, 55.0, [{"a": 1}, {"a": 2}]), full)
    assert kept == {"same_configs": True, "images_ratio": 0.3, "best_fid_ratio": pytest.approx(1.1),
                    "wall_ratio": 0.3, "meets_goals": True}
    lost = pg.compare(_run(2_000, 71.0, [{"a": 1}, {"a": 3}]), full)
    assert lost["same_configs"] is False and lost["best_fid_ratio"] == pytest.approx(1.42)
    assert lost["meets_goals"] is False
    assert pg.compare(_run(3_100, 50.0, [{"a": 1}, {"a": 2}]), full)["meets_goals"] is False  # 31% of the images


@pytest.mark.parametrize("text, message", [
    ("asha,halving", "unknown pruner 'halving'; valid choices: asha, asha-quorum, median, percentile, hyperband"),
    ("none", "--pruner none leaves nothing to compare"),
])
def test_pruner_lists_are_checked(text, message):
    with pytest.raises(SystemExit, match=message):
        pg._pruners(text)


# smoke budget: reports at 1,600 / 3,200 / 4,800 / 6,400 images; successive halving's rungs at 1,600 and 4,800
CURVES = {
    0: ({1600: 318.0, 3200: 250.0, 4800: 184.0, 6400: 55.0}, 8.0),  # the best, but slow: second at the rung
    1: ({1600: 297.0, 3200: 260.0, 4800: 200.0, 6400: 88.0}, 4.0),
    2: ({1600: 369.0, 3200: 200.0, 4800: 150.0, 6400: 105.0}, 4.0),
    3: ({1600: 265.0, 3200: 220.0, 4800: 185.0, 6400: 78.0}, 4.0),
}


def _unpruned_study() -> optuna.Study:
    study = optuna.create_study(study_name="pruning-gain-unpruned")
    study.set_user_attr("search_settings", {"budget": "smoke"})
    for number, (curve, _) in CURVES.items():
        study.add_trial(optuna.trial.create_trial(
            value=curve[6400], intermediate_values=curve, params={"n": number},
            distributions={"n": optuna.distributions.IntDistribution(0, 3)}))
    return study


class _Recorded:
    """The unpruned study as replay reads it, each trial with its duration in CURVES (the replay's pace: duration
    over reports); Optuna's create_trial stamps both datetimes "now"."""

    def __init__(self, study: optuna.Study) -> None:
        self.study, self.user_attrs = study, study.user_attrs
        start = dt.datetime(2026, 12, 3, 12, 0, 0)
        self.trials = []
        for t in study.get_trials(deepcopy=True):
            t.datetime_start, t.datetime_complete = start, start + dt.timedelta(seconds=CURVES[t.number][1])
            self.trials.append(t)

    def get_trials(self, deepcopy: bool = False, states=None):
        return [t for t in self.trials if states is None or t.state in states]


def test_replay_asha_stops_the_best_that_arrives_second_and_the_quorum_keeps_it():
    recorded = _Recorded(_unpruned_study())
    full_images = 4 * 6400
    asha = pg.replay(recorded, "asha", slots=2)
    # trial 1 reaches 1,600 first (297); trial 0 then (318) is not the best there: stopped. Trial 3 (265, then
    # the best at 4,800 with 185 against 200) completes with 78: the best kept is 78 against 55 unpruned
    assert asha["pruned_trials"] == [0, 2]
    assert asha["train_images"] == 1600 + 6400 + 1600 + 6400 and asha["images_ratio"] == 16_000 / full_images
    assert asha["best_fid"] == 78.0 and asha["best_fid_ratio"] == pytest.approx(78 / 55)
    quorum = pg.replay(recorded, "asha-quorum", slots=2)
    # the first two arrivals go on at both rungs; trial 2 (third at 1,600, 369) and trial 3 (third at 4,800,
    # 185 against 184 and 200) are judged and stopped
    assert quorum["pruned_trials"] == [2, 3]
    assert quorum["train_images"] == 6400 + 6400 + 1600 + 4800 and quorum["images_ratio"] == 19_200 / full_images
    assert quorum["best_fid"] == 55.0 and quorum["best_fid_ratio"] == 1.0
    none = pg.replay(recorded, "none", slots=2)
    assert none["pruned_trials"] == [] and none["images_ratio"] == 1.0 and not math.isnan(none["best_fid"])
