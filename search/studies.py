"""The registry of named studies: a define-by-run search space plus the objective(s) it optimises.

Parameters are conditional where the math is: λ_GP exists only under wgan-gp, the clip value only
under wgan, SAN's base loss only under san; refinement options exist only in studies that refine,
the radial projection only for a latent method under a normal prior. Optuna therefore never records
a value that the run did not use.

Which parameter belongs to which variant is read from the variant's declaration, never its name: a loss's
conditional options from gan_models.config.LOSS_NEEDS (``LossNeeds.options``), a refinement method's kind,
what it moves, its cost space and its K_eff choices from refinement.config.METHODS; each DOT study is the
set of methods whose declaration matches its description.

No study proposes a configuration that fails after training (tests/search/test_search_space_validity.py
draws from every study with every sampler and runs the trial's checks): image clipping is not searched,
since the evaluator rejects images outside [-1, 1] and a trial always scores (clip_images stays True);
k_eff "gradient" is offered only where the cost lives in image or latent space, not to embedded DOT.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import optuna

from gan_models import TrainConfig
from gan_models.config import ARCHITECTURE_NAMES, LATENT_PRIOR_NAMES, LOSS_NAMES, LOSS_NEEDS, SAN_BASE_NAMES
from gan_models.registry import lookup
from refinement.config import K_EFF_CHOICES, METHODS, NORMS, OPTIMIZERS, RefineMethod

from .budgets import Budget
from .space import Categorical, FloatRange, IntRange, Narrowing, ParamSpec, SpaceError, SpaceSampler, narrow

# --- parameter specs ---------------------------------------------------------------------------

# the registries' names (gan_models.losses, gan_models.networks) through their light copies in gan_models.config,
# which tests/test_cli_help.py holds equal to them: listing the studies imports no torch
GAN_SPECS: dict[str, ParamSpec] = {
    "architecture": Categorical(ARCHITECTURE_NAMES),
    "loss": Categorical(LOSS_NAMES),
    "lambda_gp": FloatRange(1.0, 100.0, log=True),
    "clip_value": FloatRange(1e-3, 0.1, log=True),
    "san_base": Categorical(SAN_BASE_NAMES),
    "n_critic": IntRange(1, 5),
    "lr_g": FloatRange(1e-5, 2e-3, log=True),
    "lr_d": FloatRange(1e-5, 2e-3, log=True),
    "beta1": FloatRange(0.0, 0.9),
    "beta2": FloatRange(0.9, 0.999),
    "spectral_norm": Categorical((False, True)),
    "dropout": FloatRange(0.0, 0.5),
    "latent_prior": Categorical(LATENT_PRIOR_NAMES),
    "batch_size": Categorical((32, 64, 128)),
}

# DOT options shared by every DOT variant (Tanaka 2019; the seeds' ranges)
DOT_SPECS: dict[str, ParamSpec] = {
    "refine_steps": IntRange(1, 20),
    "refine_lr": FloatRange(1e-3, 0.3, log=True),
    "refine_optimizer": Categorical(OPTIMIZERS),
    "refine_norm": Categorical(NORMS),
    "k_eff": Categorical(K_EFF_CHOICES),  # narrowed to what a study's methods can all use (_dot_specs)
    "projection": Categorical(("exact", "tanaka")),
}

DDLS_SPECS: dict[str, ParamSpec] = {
    "refine_steps": IntRange(1, 20),
    "ddls_step_size": FloatRange(1e-4, 0.1, log=True),
    "ddls_noise_scale": FloatRange(0.0, 1.0),
}

# parameter name -> refinement.RefineConfig field
REFINE_FIELDS = {
    "refine_method": "method", "refine_steps": "steps", "refine_lr": "lr", "refine_optimizer": "optimizer",
    "refine_norm": "norm", "k_eff": "k_eff", "projection": "projection", "clip_images": "clip_images",
    "ddls_step_size": "ddls_step_size", "ddls_noise_scale": "ddls_noise_scale",
}
TRAIN_FIELDS = tuple(GAN_SPECS)


def methods_where(accept: Callable[[RefineMethod], bool]) -> tuple[str, ...]:
    """The names of the refinement methods whose declaration ``accept`` takes, in METHODS' order."""
    return tuple(name for name, m in METHODS.items() if accept(m))


# each refining study's methods, chosen by what they declare
LATENT_DOT = methods_where(lambda m: m.dot and m.moves_latent and not m.embedded)  # latent or image cost
TARGET_DOT = methods_where(lambda m: m.dot and not m.moves_latent and m.cost_space == "image")
EMBEDDED_DOT = methods_where(lambda m: m.dot and m.embedded)
LANGEVIN = methods_where(lambda m: m.kind == "langevin")

# --- define-by-run spaces ----------------------------------------------------------------------


def gan_space(s: SpaceSampler) -> dict[str, Any]:
    p: dict[str, Any] = {"architecture": s("architecture"), "loss": s("loss")}
    for name in LOSS_NEEDS[p["loss"]].options:  # lambda_gp, clip_value or san_base, as the loss declares
        p[name] = s(name)
    for name in ("n_critic", "lr_g", "lr_d", "beta1", "beta2", "spectral_norm", "dropout", "latent_prior",
                 "batch_size"):
        p[name] = s(name)
    return p


def _dot_options(s: SpaceSampler, p: dict[str, Any]) -> dict[str, Any]:
    for name in ("refine_steps", "refine_lr", "refine_optimizer", "refine_norm", "k_eff"):
        p[name] = s(name)
    if METHODS[p["refine_method"]].moves_latent and p["latent_prior"] == "normal":
        # a uniform prior is clipped to [-1, 1] instead; image methods always clip images (scored)
        p["projection"] = s("projection")
    return p


def _method(s: SpaceSampler, choices: tuple[str, ...]) -> str:
    return choices[0] if len(choices) == 1 else s("refine_method")


def dot_space(methods: tuple[str, ...]) -> Callable[[SpaceSampler], dict[str, Any]]:
    def space(s: SpaceSampler) -> dict[str, Any]:
        p = gan_space(s)
        p["refine_method"] = _method(s, methods)
        return _dot_options(s, p)

    return space


def ddls_space(s: SpaceSampler) -> dict[str, Any]:
    p = gan_space(s)
    p["refine_method"] = _method(s, LANGEVIN)
    for name in ("refine_steps", "ddls_step_size", "ddls_noise_scale"):
        p[name] = s(name)
    return p


# --- the registry ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Study:
    name: str
    description: str
    specs: Mapping[str, ParamSpec]
    space: Callable[[SpaceSampler], dict[str, Any]]
    objectives: tuple[str, ...]  # keys of the trial's final metrics
    directions: tuple[str, ...]  # "minimize" | "maximize", one per objective
    default_sampler: str = "tpe"
    refines: bool = True
    tags: Mapping[str, str] = field(default_factory=dict)

    @property
    def multi_objective(self) -> bool:
        return len(self.objectives) > 1

    @property
    def prunable(self) -> bool:
        # Optuna's pruners compare one intermediate value; a Pareto study has no single ranking.
        return not self.multi_objective

    def narrowing(self, params: Mapping[str, Any]) -> dict[str, ParamSpec]:
        """Validate a study file's ``params`` against this study's registered space."""
        return narrow(self.specs, params)

    def suggest(self, trial: optuna.Trial, narrowing: Narrowing | None = None) -> dict[str, Any]:
        """Define-by-run: sample this study's parameters on ``trial``; returns every value the run uses."""
        return self.space(SpaceSampler(trial, self.specs, narrowing or {}))


def _method_spec(methods: tuple[str, ...]) -> dict[str, ParamSpec]:
    """The method is a parameter only where a study has more than one (see _method)."""
    return {"refine_method": Categorical(methods)} if len(methods) > 1 else {}


def _dot_specs(methods: tuple[str, ...]) -> dict[str, ParamSpec]:
    """gan's specs + the DOT options that ``methods`` can use (see _dot_options)."""
    specs = {**GAN_SPECS, **DOT_SPECS, **_method_spec(methods)}
    # the K_eff choices that every method of the study can use (no "gradient" where a cost is embedded)
    k_eff = tuple(k for k in K_EFF_CHOICES if all(k in METHODS[m].k_eff_choices for m in methods))
    if k_eff != K_EFF_CHOICES:
        specs["k_eff"] = Categorical(k_eff)
    if not any(METHODS[m].moves_latent for m in methods):
        del specs["projection"]
    return specs


def _dot_study(name: str, description: str, methods: tuple[str, ...]) -> Study:
    return Study(name=name, description=description, specs=_dot_specs(methods), space=dot_space(methods),
                 objectives=("fid",), directions=("minimize",))


STUDIES: dict[str, Study] = {
    s.name: s
    for s in (
        Study(
            name="gan",
            description="GAN architecture, loss, regularisation and optimiser; objective: FID at the final sample size",
            specs=GAN_SPECS, space=gan_space, objectives=("fid",), directions=("minimize",), refines=False,
        ),
        _dot_study("dot_latent", "gan's space + latent DOT (latent or image-space cost, lr, steps, K_eff, "
                   "optimiser); objective: FID after refinement", LATENT_DOT),
        _dot_study("dot_target", "gan's space + target-space DOT (lr, steps, K_eff, optimiser); "
                   "objective: FID after refinement", TARGET_DOT),
        _dot_study("dot_embedded", "gan's space + embedded DOT in the second classifier's features (target or "
                   "latent); objective: FID after refinement", EMBEDDED_DOT),
        Study(
            name="ddls",
            description="gan's space + Langevin latent sampling (step size, noise, steps); "
                        "objective: FID after refinement",
            specs={**GAN_SPECS, **DDLS_SPECS, **_method_spec(LANGEVIN)}, space=ddls_space, objectives=("fid",),
            directions=("minimize",),
        ),
        Study(
            name="pareto",
            description="dot_latent's space with two objectives, precision and recall (NSGA-II, no pruning); "
                        "result: the Pareto front",
            specs=_dot_specs(LATENT_DOT), space=dot_space(LATENT_DOT), objectives=("precision", "recall"),
            directions=("maximize", "maximize"), default_sampler="nsga2",
        ),
    )
}


def get_study(name: str) -> Study:
    return lookup(STUDIES, name, what="study")


def list_studies() -> str:
    """One line per study, for ``--list-studies``."""
    width = max(map(len, STUDIES))
    return "\n".join(f"{s.name:<{width}}  {s.description}" for s in STUDIES.values())


# --- params -> configs -------------------------------------------------------------------------


def check_params(params: Mapping[str, Any]) -> None:
    """A trial's params name trainer or refiner fields only (a typo is an error, never dropped)."""
    unknown = sorted(set(params) - set(TRAIN_FIELDS) - set(REFINE_FIELDS))
    if unknown:
        raise SpaceError(f"unknown trial parameters {', '.join(unknown)}; valid parameters: "
                         f"{', '.join((*TRAIN_FIELDS, *REFINE_FIELDS))}")


def train_config(params: Mapping[str, Any], *, budget: Budget, seed: int, dataset: str = "mnist",
                 precision: str = "fp32") -> TrainConfig:
    """The trainer's config from a trial's params; the budget fixes the step count, the study its precision."""
    values = {k: v for k, v in params.items() if k in TRAIN_FIELDS}
    return TrainConfig.from_dict({**values, "dataset": dataset, "steps": budget.steps, "seed": seed,
                                  "precision": precision})


def refine_config(params: Mapping[str, Any], *, precision: str = "fp32"):
    """The refiner's config from a trial's params, or None for a study that does not refine.

    A trial refines with an evaluator, so the config is also held to what refine() checks with one
    (refinement.trajectory.check_scorable): the trial fails here, before training, not after it."""
    if "refine_method" not in params:
        return None
    from refinement import RefineConfig
    from refinement.trajectory import check_scorable

    values = {REFINE_FIELDS[k]: v for k, v in params.items() if k in REFINE_FIELDS}
    config = RefineConfig.from_dict({**values, "precision": precision})
    check_scorable(config)
    return config
