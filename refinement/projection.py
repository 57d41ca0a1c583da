"""Keeping latent updates on the prior's support.

Under z ~ N(0, I_d) the mass concentrates on the shell ||z|| ~ sqrt(d), so latent DOT keeps each
sample on the sphere it started on; under z ~ U[-1, 1]^d it clips z back into the cube after
each update (Tanaka, Alg. 2 and his code).

The rules (PROJECTIONS), named for what they do:
- "exact": keeps ||z|| = ||z_0|| for every sample after every step. The gradient is first made
  tangent, g <- g - (g.z) z / ||z||^2 (the Riemannian gradient on the sphere), but that alone is
  not enough: a finite step along a tangent still grows ||z|| (by sqrt(1 + (lr ||g|| / ||z||)^2)
  per SGD step), and Adam's per-coordinate scaling of g makes the step itself non-tangent (up to
  37% norm drift in 100 Adam steps at lr 0.1, untrained MLP pair, d = 100). So the optimiser's
  step is followed by the retraction z <- ||z_0|| z / ||z|| onto the starting sphere; the norm is
  then kept to float round-off (relative change < 3e-7 over 100 steps, SGD or Adam).
- "tanaka": Tanaka's released code, g <- g - (g.z) z / sqrt(d) (11.31 = sqrt(128) there), and no
  retraction. Since ||z||^2 ~ d, this removes about sqrt(d) times the radial component, i.e. it
  over-corrects and flips the radial direction; the flipped component grows geometrically, so
  ||z|| can overflow: it was reported to reach inf within 100 SGD steps at lr 0.01 with K_eff = 1;
  on an untrained MLP pair (d = 100, K_eff = 1) ||z|| grew 2.8e8-fold in 100 SGD steps at
  lr 0.01 and was inf from step 18 at lr 0.1. Kept so that his numbers can be reproduced, not
  because it keeps z on the prior's shell.
- "none": the plain gradient, no constraint.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from gan_models.config import LATENT_PRIOR_NAMES
from gan_models.registry import check_choice, lookup


def _radial(g: Tensor, z: Tensor) -> Tensor:
    """(g.z) per sample: g, z [B, d] -> [B, 1]."""
    return (g * z).sum(dim=1, keepdim=True)


# g <- g - (g.z) z / ||z||^2
def exact_projection(g: Tensor, z: Tensor) -> Tensor:
    return g - _radial(g, z) * z / (z * z).sum(dim=1, keepdim=True).clamp_min(torch.finfo(z.dtype).tiny)


# g <- g - (g.z) z / sqrt(d)   (as coded by Tanaka; not a projection unless ||z||^2 = sqrt(d))
def tanaka_projection(g: Tensor, z: Tensor) -> Tensor:
    return g - _radial(g, z) * z / z.shape[1] ** 0.5


def no_projection(g: Tensor, z: Tensor) -> Tensor:
    return g


PROJECTIONS: dict[str, Callable[[Tensor, Tensor], Tensor]] = {
    "exact": exact_projection,
    "tanaka": tanaka_projection,
    "none": no_projection,
}


def project_gradient(g: Tensor, z: Tensor, *, prior: str, projection: str) -> Tensor:
    """The latent gradient after the prior's radial projection (normal prior only): g, z [B, d]."""
    if _is_uniform(prior):
        return g
    return lookup(PROJECTIONS, projection, what="projection")(g, z)


# after the optimiser step (exact): z <- ||z_0|| z / ||z||, with radius = ||z_0|| [B, 1]
def retract_to_sphere(z: Tensor, radius: Tensor) -> Tensor:
    return z * (radius / z.norm(dim=1, keepdim=True).clamp_min(torch.finfo(z.dtype).tiny))


# the projection rules that retract onto the starting sphere after each step
RETRACTING = ("exact",)


def _is_uniform(prior: str) -> bool:
    """The projections apply to the normal prior; the uniform one clips instead."""
    check_choice("latent prior", prior, LATENT_PRIOR_NAMES)
    return prior == "uniform"


def sphere_radius(z: Tensor, *, prior: str, projection: str) -> Tensor | None:
    """||z_0|| per sample [B, 1] when ``projection`` keeps z on its starting sphere, else None."""
    if prior == "normal" and projection in RETRACTING:
        return z.norm(dim=1, keepdim=True)
    return None


def constrain_latent(z: Tensor, *, prior: str, projection: str = "none", radius: Tensor | None = None) -> Tensor:
    """z after an update: clipped into [-1, 1]^d for the uniform prior; for the normal prior
    retracted onto the sphere of radius ``radius`` ([B, 1], ||z_0||) under the "exact" projection,
    unchanged otherwise."""
    if _is_uniform(prior):
        return z.clamp(-1.0, 1.0)
    check_choice("projection", projection, PROJECTIONS)
    if projection not in RETRACTING:
        return z
    if radius is None:
        raise ValueError(f"projection {projection!r} needs each sample's starting norm ||z_0|| (radius)")
    return retract_to_sphere(z, radius)
