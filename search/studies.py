"""The registry of named studies: a define-by-run search space plus the objective(s) it optimises.

Parameters are conditional where the math is: λ_GP exists only under wgan-gp, the clip value only
under wgan, SAN's base loss only under san; refinement options exist only in studies that refine,
the radial projection only for a latent method under a normal prior. Optuna therefore never records
a value that the run did not use.

Parameter names are the configs' field names: a GAN parameter is the ``TrainConfig`` field it sets
(``lr_g``, ``n_critic``, ``ema_decay``), a refinement parameter is ``refine_`` + the ``RefineConfig``
field (``refine_lr``, ``refine_k_eff``). Which parameter belongs to which variant is read from the
variant's declaration, never its name: a loss's conditional options from gan_models.config.LOSS_NEEDS,
a refinement method's kind, what it moves, its cost space and its K_eff choices from
refinement.config.METHODS; each DOT study is the set of methods whose declaration matches it.

No study proposes a configuration that fails after training (tests/search/test_search_space_validity.py
draws from every study with every sampler and runs the trial's checks): image clipping is not searched,
since the evaluator rejects images outside [-1, 1] and a trial always scores (clip_images stays True);
k_eff "gradient" is offered only where the cost lives in image or latent space, not to embedded DOT.

Torch- and Optuna-free: the CLI's --help and --list-studies read this registry.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from gan_models.config import (
    ARCHITECTURE_NAMES,
    LATENT_PRIOR_NAMES,
    LOSS_NAMES,
    LOSS_NEEDS,
    SAN_BASE_NAMES,
    TrainConfig,
)
from gan_models.registry import lookup
from refinement.config import K_EFF_CHOICES, METHODS, NORMS, OPTIMIZERS, RefineConfig, RefineMethod

from .budgets import Budget
from .space import Categorical, FloatRange, IntRange, Narrowing, ParamSpec, SpaceError, SpaceSampler, narrow

if TYPE_CHECKING:
    import optuna

REFINE_PREFIX = "refine_"  # a refinement parameter is this + its RefineConfig field
Direction = Literal["minimize", "maximize"]

# --- parameter specs ---------------------------------------------------------------------------

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
    "batch_norm": Categorical((False, True)),  # in G: the largest single gain over the course's G
    "ema_decay": Categorical((0.0, 0.99, 0.999, 0.9999)),  # 0: sample from G itself (gan_models.ema)
    "latent_prior": Categorical(LATENT_PRIOR_NAMES),
    "batch_size": Categorical((32, 64, 128)),
}
# every GAN parameter is the TrainConfig field of its name (checked at import, below)
TRAIN_FIELDS = tuple(GAN_SPECS)

# DOT options shared by every DOT variant (Tanaka 2019; the seeds' ranges)
DOT_SPECS: dict[str, ParamSpec] = {
    "refine_steps": IntRange(1, 20),
    "refine_lr": FloatRange(1e-3, 0.3, log=True),
    "refine_optimizer": Categorical(OPTIMIZERS),
    "refine_norm": Categorical(NORMS),
    "refine_k_eff": Categorical(K_EFF_CHOICES),  # narrowed to what a study's methods can all use (_dot_specs)
    "refine_projection": Categorical(("exact", "tanaka")),
}

DDLS_SPECS: dict[str, ParamSpec] = {
    "refine_steps": IntRange(1, 20),
    "refine_ddls_step_size": FloatRange(1e-4, 0.1, log=True),
    "refine_ddls_noise_scale": FloatRange(0.0, 1.0),
}

REFINE_FIELDS = tuple(f.name for f in dataclasses.fields(RefineConfig))


def refine_field(param: str) -> str | None:
    """The RefineConfig field a parameter sets (``refine_lr`` -> ``lr``), or None for another parameter."""
    if param.startswith(REFINE_PREFIX) and param[len(REFINE_PREFIX):] in REFINE_FIELDS:
        return param[len(REFINE_PREFIX):]
    return None


def _check_names() -> None:
    """Checked once, at import: every parameter names a config field, by the rule above."""
    train_fields = {f.name for f in dataclasses.fields(TrainConfig)}
    bad = [p for p in TRAIN_FIELDS if p not in train_fields]
    bad += [p for p in (*DOT_SPECS, *DDLS_SPECS) if refine_field(p) is None]
    if bad:
        raise ValueError(f"search parameters that name no config field: {', '.join(bad)}")


_check_names()


def methods_where(accept: Callable[[RefineMethod], bool]) -> tuple[str, ...]:
    """The names of the refinement methods whose declaration ``accept`` takes, in METHODS' order."""
    return tuple(name for name, m in METHODS.items() if accept(m))


# each refining study's methods, chosen by what they declare
LATENT_DOT = methods_where(lambda m: m.dot and m.moves_latent and not m.embedded)  # latent or image cost
TARGET_DOT = methods_where(lambda m: m.dot and not m.moves_latent and m.cost_space == "image")
EMBEDDED_DOT = methods_where(lambda m: m.dot and m.embedded)
LANGEVIN = methods_where(lambda m: m.kind == "langevin")

# --- define-by-run spaces ----------------------------------------------------------------------

GAN_ORDER = ("n_critic", "lr_g", "lr_d", "beta1", "beta2", "spectral_norm", "dropout", "batch_norm", "ema_decay",
             "latent_prior", "batch_size")


def gan_space(s: SpaceSampler) -> dict[str, Any]:
    p: dict[str, Any] = {"architecture": s("architecture"), "loss": s("loss")}
    for name in LOSS_NEEDS[p["loss"]].options:  # lambda_gp, clip_value or san_base, as the loss declares
        p[name] = s(name)
    for name in GAN_ORDER:
        p[name] = s(name)
    return p


def _dot_options(s: SpaceSampler, p: dict[str, Any]) -> dict[str, Any]:
    for name in ("refine_steps", "refine_lr", "refine_optimizer", "refine_norm", "refine_k_eff"):
        p[name] = s(name)
    if METHODS[p["refine_method"]].moves_latent and p["latent_prior"] == "normal":
        # a uniform prior is clipped to [-1, 1] instead; image methods always clip images (scored)
        p["refine_projection"] = s("refine_projection")
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
    for name in ("refine_steps", "refine_ddls_step_size", "refine_ddls_noise_scale"):
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
    directions: tuple[Direction, ...]  # one per objective
    methods: tuple[str, ...] = ()  # the refinement methods it searches; none: it scores G's samples
    default_sampler: str = "tpe"

    @property
    def refines(self) -> bool:
        return bool(self.methods)

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
        specs["refine_k_eff"] = Categorical(k_eff)
    if not any(METHODS[m].moves_latent for m in methods):
        del specs["refine_projection"]
    return specs


def _dot_study(name: str, description: str, methods: tuple[str, ...]) -> Study:
    return Study(name=name, description=description, specs=_dot_specs(methods), space=dot_space(methods),
                 objectives=("fid",), directions=("minimize",), methods=methods)


STUDIES: dict[str, Study] = {
    s.name: s
    for s in (
        Study(
            name="gan",
            description="GAN architecture, loss, regularisation, optimiser and weight average; "
                        "objective: FID at the final sample size",
            specs=GAN_SPECS, space=gan_space, objectives=("fid",), directions=("minimize",),
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
            directions=("minimize",), methods=LANGEVIN,
        ),
        Study(
            name="pareto",
            description="dot_latent's space with two objectives, precision and recall (NSGA-II, no pruning); "
                        "result: the Pareto front",
            specs=_dot_specs(LATENT_DOT), space=dot_space(LATENT_DOT), objectives=("precision", "recall"),
            directions=("maximize", "maximize"), methods=LATENT_DOT, default_sampler="nsga2",
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
    unknown = sorted(k for k in params if k not in TRAIN_FIELDS and refine_field(k) is None)
    if unknown:
        valid = (*TRAIN_FIELDS, *(REFINE_PREFIX + f for f in REFINE_FIELDS if f != "precision"))
        raise SpaceError(f"unknown trial parameters {', '.join(unknown)}; valid parameters: {', '.join(valid)}")


def train_config(params: Mapping[str, Any], *, budget: Budget, seed: int, dataset: str = "mnist",
                 precision: str = "fp32") -> TrainConfig:
    """The trainer's config from a trial's params: the study fixes dataset, seed and precision; the budget's
    images fix the step count (a batch of 128 trains half the steps of a batch of 64, on the same images)."""
    values = {k: v for k, v in params.items() if k in TRAIN_FIELDS}
    config = TrainConfig.from_dict({**values, "dataset": dataset, "seed": seed, "precision": precision})
    return config.replace(steps=budget.steps_for(config.images_per_step))


def refine_config(params: Mapping[str, Any], *, precision: str = "fp32") -> RefineConfig | None:
    """The refiner's config from a trial's params, or None for a study that does not refine.

    A trial refines with an evaluator, so the config is also held to what refine() checks with one
    (refinement.trajectory.check_scorable): the trial fails here, before training, not after it."""
    if "refine_method" not in params:
        return None
    from refinement.trajectory import check_scorable

    values = {field: v for k, v in params.items() if (field := refine_field(k)) is not None}
    config = RefineConfig.from_dict({**values, "precision": precision})
    check_scorable(config)
    return config
