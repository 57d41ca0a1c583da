"""search.quorum_halving: a rung judges only once η trials have reached it."""

import math

import optuna
import pytest

from search.quorum_halving import QuorumHalvingPruner

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _study(direction: str = "minimize", **kw) -> optuna.Study:
    pruner = QuorumHalvingPruner(min_resource=kw.get("min_resource", 10), max_resource=kw.get("max_resource", 90),
                                 reduction_factor=3)
    return optuna.create_study(direction=direction, pruner=pruner)


def _run(study: optuna.Study, curve: dict[int, float]) -> tuple[str, int]:
    """One trial reporting ``curve`` in order until pruned: its state and last step."""
    t = study.ask()
    for step, value in curve.items():
        t.report(value, step)
        if t.should_prune():
            study.tell(t, state=optuna.trial.TrialState.PRUNED)
            return "PRUNED", step
    study.tell(t, list(curve.values())[-1])
    return "COMPLETE", step


def test_rungs_are_min_resource_times_eta_powers_below_the_budget():
    assert QuorumHalvingPruner(min_resource=54_000, max_resource=486_000).rungs() == [54_000, 162_000]
    assert QuorumHalvingPruner(min_resource=10, max_resource=91).rungs() == [10, 30, 90]


def test_the_second_arrival_goes_on_where_optunas_successive_halving_stops_it():
    """The pruning_gain case: hinge-sn reached the first rung at 297, san-sn then at 318 (and ended best)."""
    curves = [{10: 297.0, 30: 200.3}, {10: 317.9, 30: 183.7}]
    quorum = _study()
    assert [_run(quorum, c) for c in curves] == [("COMPLETE", 30), ("COMPLETE", 30)]
    optuna_sha = optuna.create_study(pruner=optuna.pruners.SuccessiveHalvingPruner(min_resource=10,
                                                                                    reduction_factor=3))
    assert [_run(optuna_sha, c) for c in curves] == [("COMPLETE", 30), ("PRUNED", 10)]


def test_with_a_quorum_only_the_best_floor_n_over_eta_go_on():
    study = _study()
    # first rung values 5, 4, 3 arrive (no quorum before the third): all go on; then a 4th at 3.5: n = 4, the
    # best ⌊4/3⌋ = 1 is 3, so 3.5 stops; a 5th at 2 is the best: goes on; at n = 6 the best 2 are 2 and 3
    results = [_run(study, {10: v}) for v in (5.0, 4.0, 3.0, 3.5, 2.0)]
    assert [r[0] for r in results] == ["COMPLETE", "COMPLETE", "COMPLETE", "PRUNED", "COMPLETE"]
    assert _run(study, {10: 3.0}) == ("COMPLETE", 10)  # ties with the 2nd best: promoted
    assert _run(study, {10: 3.01}) == ("PRUNED", 10)  # n = 7: best 2 are 2 and 3


def test_each_rung_is_judged_once_at_the_report_that_reaches_it():
    study = _study()
    for v in (1.0, 2.0, 3.0):  # three trials at rung 10; none reach 30
        _run(study, {10: v})
    # the best at rung 10, then the worst at step 20: not judged there (10 < 20 < 30)
    assert _run(study, {10: 0.5, 20: 99.0}) == ("COMPLETE", 20)
    # a trial that skips a mark is judged at the first report past the rung, by that report's value
    assert _run(study, {5: 0.5, 12: 9.0}) == ("PRUNED", 12)


def test_other_trials_are_compared_by_their_first_report_at_or_past_the_rung():
    study = _study()
    for curve in ({12: 1.0}, {15: 2.0}, {11: 3.0}):
        _run(study, curve)
    assert _run(study, {10: 2.5}) == ("PRUNED", 10)  # n = 4: the best one is 1.0
    assert _run(study, {10: 0.9}) == ("COMPLETE", 10)


def test_maximize_keeps_the_largest_values():
    study = _study("maximize")
    for v in (0.5, 0.6, 0.7):
        _run(study, {10: v})
    assert _run(study, {10: 0.65}) == ("PRUNED", 10)
    assert _run(study, {10: 0.8}) == ("COMPLETE", 10)


def test_a_nan_value_stops_the_trial_at_a_rung():
    assert _run(_study(), {10: math.nan}) == ("PRUNED", 10)


@pytest.mark.parametrize("kw, message", [
    ({"min_resource": 0, "max_resource": 9}, "min_resource must be >= 1, got 0"),
    ({"min_resource": 9, "max_resource": 9}, r"max_resource must be > min_resource \(9\), got 9"),
    ({"min_resource": 1, "max_resource": 9, "reduction_factor": 1}, "reduction_factor must be >= 2, got 1"),
])
def test_bad_settings_are_refused_with_the_rule(kw, message):
    with pytest.raises(ValueError, match=message):
        QuorumHalvingPruner(**kw)
