"""No study proposes an invalid configuration: many draws from every registered study with every
sampler that can drive it (random, tpe; nsga2 for multi-objective studies) pass the checks a trial
runs before training, and each distinct refinement setting then runs refine() with an evaluator's
sample check on small networks (what a trial does after training)."""

from __future__ import annotations

import random

import optuna
import pytest
import torch
from torch import nn

from evaluation.evaluator import check_samples
from gan_models import NetworkConfig, build_discriminator, build_generator
from refinement import RefineConfigError, refine
from refinement.trajectory import check_scorable
from search import BUDGETS, STUDIES, get_study, make_sampler
from search.studies import check_params, refine_config, train_config

optuna.logging.set_verbosity(optuna.logging.WARNING)
N_DRAWS = 60
LATENT_DIM = 8


def _samplers(study) -> tuple[str, ...]:
    return ("random", "tpe", "nsga2") if study.multi_objective else ("random", "tpe")


CASES = [(name, sampler) for name, s in STUDIES.items() for sampler in _samplers(s)]


def _draws(study, sampler: str, n: int, seed: int = 0):
    """n parameter sets proposed by ``sampler`` on an in-memory study, told random objective values
    so that TPE / NSGA-II leave their start-up phase and propose from their models."""
    opt = optuna.create_study(sampler=make_sampler(sampler, seed=seed, n_trials=n), directions=list(study.directions))
    values = random.Random(seed)
    out = []
    for _ in range(n):
        trial = opt.ask()
        out.append(study.suggest(trial))
        opt.tell(trial, [values.random() for _ in study.directions])
    return out


class CheckingScorer:
    """The evaluator's input check, without its networks."""

    def score(self, samples: torch.Tensor) -> dict:
        check_samples(samples)
        return {"fid": 0.0}


@pytest.fixture(scope="module")
def small_nets():
    torch.manual_seed(0)
    cfg = NetworkConfig(latent_dim=LATENT_DIM, width=0.125)
    embedder = nn.Sequential(nn.Flatten(), nn.Linear(784, 16)).eval()
    return build_generator(cfg).eval(), build_discriminator(cfg).eval(), embedder


def _refine_key(rc, prior: str) -> tuple:
    return (rc.method, rc.optimizer, rc.norm, rc.k_eff, rc.projection, rc.clip_images, prior)


@pytest.mark.parametrize("name, sampler", CASES, ids=[f"{n}-{s}" for n, s in CASES])
def test_every_proposed_configuration_is_valid(name, sampler, small_nets):
    study = get_study(name)
    g, d, embedder = small_nets
    runs = {}
    for params in _draws(study, sampler, N_DRAWS):
        # the checks run_trial makes before training
        check_params(params)
        train = train_config(params, budget=BUDGETS["smoke"], seed=0)
        rc = refine_config(params)
        if rc is None:
            assert not study.refines
            continue
        check_scorable(rc)  # refine() with an evaluator (refine_config already applies it)
        runs.setdefault(_refine_key(rc, train.latent_prior), (rc, train.latent_prior))
    # after training: refine and score every distinct refinement setting that was proposed
    for rc, prior in runs.values():
        result = refine(g, d, rc, latent_dim=LATENT_DIM, latent_prior=prior, n=4, seed=1, evaluator=CheckingScorer(),
                        score_steps=(0, rc.steps), embedder=embedder)
        assert list(result.trajectory["step"]) == [0, rc.steps]
    assert bool(runs) == study.refines


def test_k_eff_choices_by_study():
    def choices(name):
        return set(get_study(name).specs["refine_k_eff"].choices)

    for name in ("dot_latent", "dot_target", "pareto"):
        assert choices(name) == {"estimate", "mean-of-max", "one", "gradient"}
    assert choices("dot_embedded") == {"estimate", "mean-of-max", "one"}  # no gradient of D in a feature space
    assert all("refine_clip_images" not in s.specs for s in STUDIES.values())


def test_an_unscorable_configuration_fails_before_training():
    # what dot_target used to propose: images left unclipped, which the evaluator rejects after training
    with pytest.raises(ValueError, match="clip_images=False can leave images outside"):
        refine_config({"refine_method": "target", "refine_clip_images": False, "refine_steps": 3})
    with pytest.raises(RefineConfigError, match="k_eff 'gradient' needs an image or latent cost space"):
        refine_config({"refine_method": "embedded-latent", "refine_k_eff": "gradient"})
