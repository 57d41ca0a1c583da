"""Post-training refinement with the discriminator: DOT (target, latent, latent-image, embedded),
K_eff estimators, DDLS, and metric trajectories over refinement steps (the frontier).

The names below are imported from their submodules on first use (PEP 562), so importing the package,
or its light ``refinement.config``, does not import torch (the CLI's ``--help``).
"""

from __future__ import annotations

from gan_models.lazy import lazy_exports

# public name -> the submodule that defines it (and the name there, where it differs)
_EXPORTS: dict[str, str] = {
    **dict.fromkeys(("DEFAULT_SCORE_STEPS", "K_EFF_CHOICES", "METHODS", "NORMS", "OPTIMIZERS", "PROJECTIONS",
                     "RefineConfig", "RefineConfigError"), "config"),
    **dict.fromkeys(("COST_SPACES", "cost_position", "transport_cost"), "costs"),
    "LangevinRefiner": "ddls",
    **dict.fromkeys(("OBJECTIVES", "DotRefiner", "RefineState"), "dot"),
    **dict.fromkeys(("K_EFF_ESTIMATORS", "estimate_k_eff", "k_eff_in_cost_space", "latent_ratio_sampler",
                     "pair_ratios"), "lipschitz"),
    **dict.fromkeys(("constrain_latent", "exact_projection", "project_gradient", "retract_to_sphere", "sphere_radius",
                     "tanaka_projection"), "projection"),
    "PROJECTION_RULES": "projection:PROJECTIONS",
    **dict.fromkeys(("REFINERS", "k_eff_for", "make_refiner"), "refiners"),
    "save_result": "results",
    **dict.fromkeys(("RefineResult", "refine", "scored_steps"), "trajectory"),
}

__all__ = [
    "COST_SPACES", "DEFAULT_SCORE_STEPS", "DotRefiner", "K_EFF_CHOICES", "K_EFF_ESTIMATORS", "LangevinRefiner",
    "METHODS", "NORMS", "OBJECTIVES", "OPTIMIZERS", "PROJECTIONS", "PROJECTION_RULES", "REFINERS", "RefineConfig",
    "RefineConfigError", "RefineResult", "RefineState", "constrain_latent", "cost_position", "estimate_k_eff",
    "exact_projection", "k_eff_for", "k_eff_in_cost_space", "latent_ratio_sampler", "make_refiner", "pair_ratios",
    "project_gradient", "refine", "retract_to_sphere", "save_result", "scored_steps", "sphere_radius",
    "tanaka_projection", "transport_cost",
]


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, __all__)
