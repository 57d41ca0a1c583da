"""Keeping latent updates on the prior's support.

Under z ~ N(0, I_d) the mass concentrates on the shell ||z|| ~ sqrt(d), so latent DOT removes
the radial part of its gradient; under z ~ U[-1, 1]^d it clips z back into the cube after
each update (Tanaka, Alg. 2 and his code).

Two radial projections exist and they differ by a factor ~sqrt(d):
- "exact": the tangent projection, g <- g - (g.z) z / ||z||^2, so g.z = 0 afterwards;
- "tanaka": Tanaka's released code, g <- g - (g.z) z / sqrt(d) (11.31 = sqrt(128) there);
  since ||z||^2 ~ d, this removes about sqrt(d) times the radial component, i.e. it
  over-corrects and flips the radial direction. Kept so that his numbers can be reproduced.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor


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
    if prior == "uniform":
        return g
    if prior != "normal":
        raise ValueError(f"unknown latent prior {prior!r}; valid choices: normal, uniform")
    if projection not in PROJECTIONS:
        raise ValueError(f"unknown projection {projection!r}; valid choices: {', '.join(PROJECTIONS)}")
    return PROJECTIONS[projection](g, z)


def constrain_latent(z: Tensor, *, prior: str) -> Tensor:
    """z after an update: clipped into [-1, 1]^d for the uniform prior, unchanged for the normal prior."""
    if prior == "uniform":
        return z.clamp(-1.0, 1.0)
    if prior != "normal":
        raise ValueError(f"unknown latent prior {prior!r}; valid choices: normal, uniform")
    return z
