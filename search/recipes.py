"""Known-good recipes: named configurations every new study tries first, so a search can only improve on them.

compare_gan's protocol (Kurach et al. 2019): a study always includes the defaults each loss is known to
train well with, so a search's best is never worse than the literature's starting point, and a budget
spent on random configurations is compared with something. Each recipe fixes every GAN parameter of
gan's space; a refining study adds ``REFINE_RECIPES``' values for its first method. A recipe that the
study's (narrowed) space cannot suggest is left out, with a note.

The figures each recipe reaches at the ``small`` budget on the shipped evaluator are measured by
``python -m benchmarks.quality`` (docs/results.md): at 1.44M images hinge-sn 21.6, wgan-gp 22.7, san-sn 24.1,
bce-bn 102, course 121. The order below is the order they are enqueued in: the three spectral-norm/TTUR-family
recipes first, as under successive halving the first trials to reach a rung set its bar.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from gan_models.registry import lookup

from .space import ParamSpec, contains
from .studies import GAN_SPECS, Study


@dataclass(frozen=True)
class Recipe:
    name: str
    description: str  # where it comes from
    params: Mapping[str, Any]  # gan's parameters, every one of them


# the course's MLP pair with the settings every recipe shares unless it says otherwise
_MLP = {"architecture": "mlp", "n_critic": 1, "dropout": 0.0, "latent_prior": "normal", "batch_size": 64}
# Miyato et al. 2018 / BigGAN: spectral norm on D, TTUR (lr_d = 4 lr_g), Adam(0, 0.9), batch norm in G,
# an averaged G (Yazici et al. 2019)
_SN_TTUR = {**_MLP, "spectral_norm": True, "batch_norm": True, "lr_g": 1e-4, "lr_d": 4e-4, "beta1": 0.0,
            "beta2": 0.9, "ema_decay": 0.999}

RECIPES: dict[str, Recipe] = {
    r.name: r
    for r in (
        Recipe("san-sn", "SAN (Takida et al. 2024) on the hinge recipe: its fun term trained by hinge",
               {**_SN_TTUR, "loss": "san", "san_base": "hinge"}),
        Recipe("hinge-sn", "hinge loss with spectral norm and TTUR (Miyato et al. 2018), G averaged",
               {**_SN_TTUR, "loss": "hinge"}),
        Recipe("bce-bn", "non-saturating GAN with batch norm in G, a faster D and G averaged",
               {**_MLP, "loss": "bce", "spectral_norm": False, "batch_norm": True, "lr_g": 2e-4, "lr_d": 4e-4,
                "beta1": 0.5, "beta2": 0.999, "ema_decay": 0.999}),
        Recipe("wgan-gp", "WGAN-GP, λ 10, Adam(0, 0.9) (Gulrajani et al. 2017) with TTUR in place of 5 critic steps",
               {**_MLP, "loss": "wgan-gp", "lambda_gp": 10.0, "spectral_norm": False, "batch_norm": True,
                "lr_g": 1e-4, "lr_d": 4e-4, "beta1": 0.0, "beta2": 0.9, "ema_decay": 0.999}),
        Recipe("course", "the course's default: bce, no batch norm, lr 2e-4 both, Adam(0.5, 0.999)",
               {**_MLP, "loss": "bce", "spectral_norm": False, "batch_norm": False, "lr_g": 2e-4, "lr_d": 2e-4,
                "beta1": 0.5, "beta2": 0.999, "ema_decay": 0.0}),
    )
}

# a refining study's first method (its Study.methods[0]) -> the refinement its recipes use. Latent DOT with Adam at
# lr 0.01 took san-sn's generator (FID 24.1) to 20.5, 18.0, 15.0 after 1, 2, 5 steps, and a generator at 6.39
# to 5.20, 5.13, 6.68 (docs/results.md): a few steps help, then precision keeps rising while FID worsens.
_DOT = {"refine_steps": 5, "refine_lr": 0.01, "refine_optimizer": "adam", "refine_norm": "l2",
        "refine_k_eff": "estimate"}
REFINE_RECIPES: dict[str, Mapping[str, Any]] = {
    "latent": {**_DOT, "refine_projection": "exact"},
    "target": _DOT,
    "embedded-target": _DOT,
    "ddls": {"refine_steps": 5, "refine_ddls_step_size": 0.01, "refine_ddls_noise_scale": 1.0},
}


def _check_recipes() -> None:
    """Checked once, at import: a recipe sets every parameter of gan's space that its loss uses, within range."""
    from gan_models.config import LOSS_NEEDS

    for r in RECIPES.values():
        wanted = {*(k for k in GAN_SPECS if k not in ("lambda_gp", "clip_value", "san_base")),
                  *LOSS_NEEDS[r.params["loss"]].options}
        if set(r.params) != wanted:
            raise ValueError(f"recipe {r.name!r}: sets {sorted(r.params)}, gan's space needs {sorted(wanted)}")
        bad = [k for k, v in r.params.items() if not contains(GAN_SPECS[k], v)]
        if bad:
            raise ValueError(f"recipe {r.name!r}: {', '.join(bad)} outside gan's space")


_check_recipes()


def get_recipe(name: str) -> Recipe:
    return lookup(RECIPES, name, what="recipe")


def recipe_params(recipe: Recipe, study: Study) -> dict[str, Any]:
    """The recipe as a trial of ``study``: its GAN parameters, and a refining study's recipe refinement."""
    params = dict(recipe.params)
    if study.refines:  # the method too, as the study's space returns it where it is no parameter (one method)
        method = study.methods[0]
        params.update({k: v for k, v in REFINE_RECIPES[method].items() if k in study.specs}, refine_method=method)
    return params


def _fits(params: Mapping[str, Any], space: Mapping[str, ParamSpec]) -> list[str]:
    """The parameters whose value ``space`` cannot suggest (a narrowed choice, range or a fixed value)."""
    return [k for k, v in params.items() if k in space and not contains(space[k], v)]


def study_recipes(study: Study, narrowing: Mapping[str, ParamSpec]) -> tuple[list[tuple[str, dict]], list[str]]:
    """([(name, params)] of the recipes this study's space can run, in order; notes on those it cannot)."""
    space = {**study.specs, **narrowing}
    kept, notes = [], []
    for recipe in RECIPES.values():
        params = recipe_params(recipe, study)
        outside = _fits(params, space)
        if outside:
            notes.append(f"recipe {recipe.name} left out: {', '.join(f'{k}={params[k]!r}' for k in outside)} "
                         f"outside the study's space")
            continue
        kept.append((recipe.name, params))  # what the recipe leaves open (a second method's options) is sampled
    return kept, notes
