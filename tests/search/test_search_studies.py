"""Studies, spaces, narrowing, budgets and the sampler/pruner registries (no Ray)."""

from __future__ import annotations

import dataclasses

import optuna
import pytest

from gan_models import TrainConfig, get_loss
from refinement import METHODS, RefineConfig
from search import BUDGETS, PRUNERS, SAMPLERS, STUDIES, get_budget, get_study, list_studies, make_pruner, make_sampler
from search.space import Categorical, FloatRange, IntRange, SpaceError, read_study_file
from search.studies import refine_config, train_config

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _sample(study_name: str, n: int, narrowing=None, seed: int = 0):
    s = get_study(study_name)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed), directions=list(s.directions))
    out = []
    for _ in range(n):
        trial = study.ask()
        params = s.suggest(trial, narrowing)
        out.append((params, dict(trial.params)))
        study.tell(trial, [0.0] * len(s.directions))
    return out


@pytest.mark.parametrize("name", list(STUDIES))
def test_every_study_samples_valid_configs_with_conditional_params(name):
    s = get_study(name)
    seen = set()
    for params, recorded in _sample(name, 150):
        seen |= set(recorded)
        assert set(recorded) <= set(params)  # Optuna records exactly what was suggested
        cfg = train_config(params, budget=BUDGETS["smoke"], seed=3)
        assert isinstance(cfg, TrainConfig) and cfg.seed == 3
        # the budget's images, whatever the batch and critic steps: 6,400 / (batch x n_critic), rounded up
        assert cfg.steps == -(-BUDGETS["smoke"].images // (cfg.batch_size * cfg.n_critic))
        # conditional where the math is: exactly the options the loss declares
        loss = get_loss(params["loss"]).needs
        assert ("lambda_gp" in params) == loss.gradient_penalty
        assert ("clip_value" in params) == loss.clips_weights
        assert ("san_base" in params) == loss.san_head
        rc = refine_config(params)
        if not s.refines:
            assert rc is None and not any(k.startswith("refine_") for k in params)
            continue
        assert isinstance(rc, RefineConfig) and 1 <= rc.steps <= 20
        method = METHODS[rc.method]
        if not method.dot:
            assert "refine_lr" not in params and "refine_ddls_step_size" in params
            assert rc.ddls_step_size == params["refine_ddls_step_size"]
            continue
        assert "refine_clip_images" not in params and rc.clip_images  # a scored trial always clips its images
        assert ("refine_projection" in params) == (method.moves_latent and params["latent_prior"] == "normal")
        assert params["refine_k_eff"] in method.k_eff_choices and rc.k_eff == params["refine_k_eff"]
        assert (rc.lr, rc.steps) == (params["refine_lr"], params["refine_steps"])
    assert seen == set(s.specs), f"parameters never sampled: {set(s.specs) - seen}"


def test_study_objectives_and_directions():
    assert get_study("gan").objectives == ("fid",) and get_study("gan").directions == ("minimize",)
    pareto = get_study("pareto")
    assert pareto.objectives == ("precision", "recall") and pareto.directions == ("maximize", "maximize")
    assert pareto.multi_objective and not pareto.prunable and pareto.default_sampler == "nsga2"
    methods = {p["refine_method"] for p, _ in _sample("dot_latent", 40)}
    assert methods == {"latent", "latent-image"}
    assert {p["refine_method"] for p, _ in _sample("dot_target", 5)} == {"target"}
    assert {p["refine_method"] for p, _ in _sample("dot_embedded", 40)} == {"embedded-target", "embedded-latent"}
    assert {p["refine_method"] for p, _ in _sample("ddls", 3)} == {"ddls"}


def test_study_spaces_follow_the_declarations():
    """A study offers the K_eff choices that all its methods declare, and the projection iff one moves a latent."""
    for s in STUDIES.values():
        if not s.refines or "refine_k_eff" not in s.specs:  # no DOT
            continue
        if "refine_method" in s.specs:
            methods = s.specs["refine_method"].choices
        else:  # one method, fixed by the study
            methods = (_sample(s.name, 1)[0][0]["refine_method"],)
        declared = [METHODS[m] for m in methods]
        assert set(s.specs["refine_k_eff"].choices) == set.intersection(*(set(m.k_eff_choices) for m in declared))
        assert ("refine_projection" in s.specs) == any(m.moves_latent for m in declared)
        assert s.methods == methods
    assert get_study("dot_embedded").specs["refine_k_eff"].choices == ("estimate", "mean-of-max", "one")
    assert "refine_projection" not in get_study("dot_target").specs


def test_every_parameter_names_its_config_field():
    """A GAN parameter is the TrainConfig field of its name, a refinement one refine_ + its RefineConfig field."""
    from search.studies import TRAIN_FIELDS, refine_field

    train_fields = {f.name for f in dataclasses.fields(TrainConfig)}
    refine_fields = {f.name for f in dataclasses.fields(RefineConfig)}
    for s in STUDIES.values():
        for name in s.specs:
            assert name in train_fields if name in TRAIN_FIELDS else refine_field(name) in refine_fields, name
    assert refine_field("refine_lr") == "lr" and refine_field("refine_k_eff") == "k_eff"
    assert refine_field("lr_g") is None and refine_field("refine_nothing") is None


def test_list_studies_one_line_each():
    lines = list_studies().splitlines()
    assert [ln.split()[0] for ln in lines] == list(STUDIES)


@pytest.mark.parametrize("lookup, bad, valid", [
    (get_study, "dot", ", ".join(STUDIES)),
    (get_budget, "huge", "smoke, quick, small, full"),
    (lambda n: make_sampler(n, seed=0, n_trials=4), "cmaes", "tpe, random, nsga2"),
    (lambda n: make_pruner(n, BUDGETS["smoke"]), "halving", "asha, asha-quorum, median, percentile, hyperband, none"),
])
def test_unknown_names_list_the_valid_ones(lookup, bad, valid):
    with pytest.raises(ValueError, match=f"unknown .*{bad!r}; valid choices: {valid}"):
        lookup(bad)


def test_registries_build_real_optuna_objects():
    assert isinstance(make_sampler("nsga2", seed=1, n_trials=8), optuna.samplers.NSGAIISampler)
    assert isinstance(make_sampler("tpe", seed=1, n_trials=8), optuna.samplers.TPESampler)
    assert isinstance(make_pruner("hyperband", BUDGETS["small"]), optuna.pruners.HyperbandPruner)
    assert isinstance(make_pruner("asha", BUDGETS["small"]), optuna.pruners.SuccessiveHalvingPruner)
    assert isinstance(make_pruner("none", BUDGETS["small"]), optuna.pruners.NopPruner)
    assert set(SAMPLERS) == {"tpe", "random", "nsga2"}
    assert set(PRUNERS) == {"asha", "asha-quorum", "median", "percentile", "hyperband", "none"}


def test_median_pruner_prunes_a_worse_curve_after_warmup():
    b = BUDGETS["smoke"]  # 1 start-up trial, decisions from the first report (1,600 images) on
    study = optuna.create_study(pruner=make_pruner("median", b))
    good = study.ask()
    for images, v in ((1600, 100.0), (3200, 90.0)):
        good.report(v, images)
    study.tell(good, 90.0)
    poor = study.ask()
    poor.report(150.0, 1600)
    assert poor.should_prune()
    better = study.ask()
    better.report(80.0, 1600)
    assert not better.should_prune()


def test_budgets_count_images_and_mark_the_halving_rungs():
    for b in BUDGETS.values():
        assert b.images % b.eval_every == 0 and b.score_steps[0] == 0 and b.marks[-1] == b.images
        assert b.asha_min_images % b.eval_every == 0  # a rung is a report
        with pytest.raises(dataclasses.FrozenInstanceError, match="cannot assign to field 'images'"):
            b.images = 1  # frozen
    small = BUDGETS["small"]
    # η = 3 over three rungs: the first at a ninth of the images, the second at a third, on report marks
    assert len(small.marks) == 9 and small.asha_min_images * 9 == small.images
    assert small.n_final == 10000 and small.n_intermediate == 2000 and small.n_real == 10000
    smoke = BUDGETS["smoke"]
    assert smoke.marks == (1600, 3200, 4800, 6400) and smoke.asha_min_images == 1600
    # batch 64: a mark every 25 steps; batch 32 with 3 critic steps (96 images a step): ceil(1600 / 96) = 17, ...
    assert smoke.report_steps(64) == {25: 1600, 50: 3200, 75: 4800, 100: 6400}
    assert smoke.report_steps(96) == {17: 1600, 34: 3200, 50: 4800, 67: 6400} and smoke.steps_for(96) == 67
    assert small.refine_score_steps(7) == (0, 1, 2, 5, 7)
    assert small.refine_score_steps(20) == (0, 1, 2, 5, 10, 20)


def test_narrowing_fixes_subsets_and_subranges():
    s = get_study("dot_latent")
    narrowing = s.narrowing({"loss": "wgan-gp", "architecture": ["mlp"], "lr_g": {"low": 1e-4, "high": 2e-4},
                             "refine_steps": 5, "spectral_norm": True})
    assert narrowing["loss"] == Categorical(("wgan-gp",))
    assert narrowing["lr_g"] == FloatRange(1e-4, 2e-4, log=True)
    assert narrowing["refine_steps"] == IntRange(5, 5)
    for params, recorded in _sample("dot_latent", 30, narrowing):
        assert params["loss"] == "wgan-gp" and "lambda_gp" in params and params["architecture"] == "mlp"
        assert 1e-4 <= params["lr_g"] <= 2e-4 and params["refine_steps"] == 5 and params["spectral_norm"] is True
        assert recorded["loss"] == "wgan-gp"  # fixed values are still recorded in Optuna


@pytest.mark.parametrize("params, message", [
    ({"lr": 0.1}, "unknown parameters lr; valid parameters: architecture, loss"),
    ({"loss": "lsgan"}, "parameter loss: 'lsgan' not allowed; registered: one of 'bce'"),
    ({"lr_g": {"low": 1e-6, "high": 1e-4}}, "parameter lr_g: .* not inside the registered range"),
    ({"n_critic": 2.5}, "parameter n_critic: expected an integer"),
    ({"spectral_norm": 1}, "parameter spectral_norm: 1 not allowed"),
    ({"lr_g": {"low": 1e-4}}, "a range needs exactly the keys low and high"),
    ({"refine_steps": 3}, "unknown parameters refine_steps"),  # gan does not refine
])
def test_bad_narrowing_is_an_error(params, message):
    with pytest.raises(SpaceError, match=message):
        get_study("gan").narrowing(params)


def test_study_file_reading(tmp_path):
    good = tmp_path / "s.yaml"
    good.write_text("study: gan\nparams:\n  architecture: mlp\n  batch_size: [32, 64]\n")
    assert read_study_file(good) == {"study": "gan", "params": {"architecture": "mlp", "batch_size": [32, 64]}}
    bad = tmp_path / "bad.yaml"
    bad.write_text("study: gan\nparameters:\n  architecture: mlp\n")
    with pytest.raises(SpaceError, match="unknown keys parameters; valid keys: study, params"):
        read_study_file(bad)
    with pytest.raises(SpaceError, match="study file not found"):
        read_study_file(tmp_path / "missing.yaml")


@pytest.mark.parametrize("name", list(PRUNERS))
def test_every_pruner_runs_the_bridge_protocol(name):
    """ask -> report(value, step) -> should_prune -> tell PRUNED/COMPLETE, as the Ray scheduler drives it."""
    b = BUDGETS["smoke"]
    # a fixed name: Hyperband assigns trials to its brackets by hashing the study name with the trial number
    study = optuna.create_study(study_name="contract-2", sampler=make_sampler("random", seed=0, n_trials=6),
                                pruner=make_pruner(name, b))
    states = []
    for i in range(6):
        t = study.ask()
        get_study("gan").suggest(t)
        pruned = False
        for images in b.marks:
            t.report(100.0 + 50.0 * (i % 2) - images / 640, images)  # odd trials are uniformly worse
            if t.should_prune():
                study.tell(t, state=optuna.trial.TrialState.PRUNED)
                pruned = True
                break
        if not pruned:
            study.tell(t, 100.0 + 50.0 * (i % 2) - b.images / 640)
        states.append(study.trials[-1].state)
    assert states[0] == optuna.trial.TrialState.COMPLETE
    if name in ("median", "percentile"):
        assert states[1] == optuna.trial.TrialState.PRUNED and states[2] == optuna.trial.TrialState.COMPLETE
    stopped = {t.number: max(t.intermediate_values) for t in study.trials if t.state == optuna.trial.TrialState.PRUNED}
    if name == "asha":  # a worse trial is never in the best third at the first rung (1,600 images): it stops there
        assert stopped == {1: 1600, 3: 1600, 5: 1600}
    if name == "asha-quorum":  # the first two arrivals go on; then a worse trial is never in the best third
        assert stopped == {3: 1600, 5: 1600}
    if name == "hyperband":  # rungs at min_resource * 3^k = 1,600, 4,800 images; only the worse (odd) trials stop
        assert stopped and set(stopped) <= {1, 3, 5} and set(stopped.values()) <= {1600, 4800}
        assert all(study.trials[i].state == optuna.trial.TrialState.COMPLETE for i in (0, 2, 4))
    if name == "none":
        assert set(states) == {optuna.trial.TrialState.COMPLETE}


def test_trial_params_with_a_typo_are_an_error():
    from search.studies import check_params

    params, _ = _sample("dot_latent", 1)[0]
    check_params(params)
    with pytest.raises(SpaceError, match="unknown trial parameters lr_gen"):
        check_params({**params, "lr_gen": 0.1})
