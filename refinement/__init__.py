"""Post-training refinement with the discriminator: DOT (target, latent, latent-image, embedded),
K_eff estimators, DDLS, and metric trajectories over refinement steps (the frontier)."""

from .config import K_EFF_CHOICES, METHODS, NORMS, OPTIMIZERS, PROJECTIONS, RefineConfig, RefineConfigError
from .costs import COST_SPACES, cost_position, transport_cost
from .ddls import LangevinRefiner
from .dot import OBJECTIVES, DotRefiner, RefineState
from .lipschitz import K_EFF_ESTIMATORS, estimate_k_eff, k_eff_in_cost_space, latent_ratio_sampler, pair_ratios
from .projection import PROJECTIONS as PROJECTION_RULES
from .projection import (
    constrain_latent,
    exact_projection,
    project_gradient,
    retract_to_sphere,
    sphere_radius,
    tanaka_projection,
)
from .refiners import REFINERS, k_eff_for, make_refiner
from .results import save_result
from .trajectory import DEFAULT_SCORE_STEPS, RefineResult, refine, scored_steps

__all__ = [
    "COST_SPACES", "DEFAULT_SCORE_STEPS", "DotRefiner", "K_EFF_CHOICES", "K_EFF_ESTIMATORS", "LangevinRefiner",
    "METHODS", "NORMS", "OBJECTIVES", "OPTIMIZERS", "PROJECTIONS", "PROJECTION_RULES", "REFINERS", "RefineConfig",
    "RefineConfigError", "RefineResult", "RefineState", "constrain_latent", "cost_position", "estimate_k_eff",
    "exact_projection", "k_eff_for", "k_eff_in_cost_space", "latent_ratio_sampler", "make_refiner", "pair_ratios", "project_gradient",
    "refine", "retract_to_sphere", "save_result", "scored_steps", "sphere_radius", "tanaka_projection", "transport_cost",
]
