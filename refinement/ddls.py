"""Discriminator Driven Latent Sampling (Che et al. 2020): Langevin dynamics in latent space on

  E(z) = -log p_0(z) - d(G(z))

with d the discriminator's raw output (logit or critic score). For the normal prior
-log p_0(z) = ||z||^2/2 + const; for the uniform prior it is constant inside [-1, 1]^d, so the
energy is -d(G(z)) and z is clipped back into the cube after each step.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from gan_models.registry import lookup

from .config import RefineConfig
from .dot import RefineState
from .projection import constrain_latent

# -log p_0(z) up to a constant, per sample: [B, d] -> [B]
PRIOR_ENERGIES: dict[str, Callable[[Tensor], Tensor]] = {
    "normal": lambda z: 0.5 * (z * z).sum(dim=1),  # ||z||^2 / 2
    "uniform": lambda z: z.new_zeros(z.shape[0]),  # constant inside [-1, 1]^d
}


def _prior_energy(z: Tensor, prior: str) -> Tensor:
    return lookup(PRIOR_ENERGIES, prior, what="latent prior")(z)


class LangevinRefiner:
    """DDLS with the same ``start`` / ``step`` / ``images`` interface as the DOT refiners."""

    needs_noise = True

    def __init__(self, generator: nn.Module, discriminator: nn.Module, config: RefineConfig, *, latent_prior: str):
        if config.variant.kind != "langevin":
            raise ValueError(f"LangevinRefiner runs a Langevin method, got {config.method!r} "
                             f"(a {config.variant.kind} method)")
        _prior_energy(torch.zeros(1, 1), latent_prior)  # validates the prior name now, not at step 1
        self.generator, self.discriminator = generator, discriminator
        self.config = config
        self.latent_prior = latent_prior

    def energy(self, z: Tensor) -> Tensor:
        """E(z) = -log p_0(z) - d(G(z)) per sample: [B, d] -> [B]."""
        return _prior_energy(z, self.latent_prior) - self.discriminator(self.generator(z)).reshape(-1)

    @torch.no_grad()
    def start(self, z_y: Tensor) -> RefineState:
        return RefineState(v=z_y.clone())

    def step(self, state: RefineState, t: int, noise: Tensor | None = None) -> None:
        """One Langevin step in place; ``noise`` [B, d] ~ N(0, I) (drawn by the caller so that the
        chain of each sample does not depend on the batching)."""
        if noise is None:
            raise ValueError("DDLS needs a noise tensor for every step")
        eps, scale = self.config.ddls_step_size, self.config.ddls_noise_scale
        z = state.v.detach().requires_grad_(True)
        with torch.enable_grad():
            # sum over the batch: row i gets dE_i/dz_i
            self.energy(z).sum().backward(inputs=[z])
        grad = z.grad
        assert grad is not None  # backward(inputs=[z]) filled it
        with torch.no_grad():
            # z <- z - (eps/2) grad E(z) + sqrt(eps) * noise_scale * n,   n ~ N(0, I)
            new = state.v - 0.5 * eps * grad + (eps**0.5 * scale) * noise
            state.v.copy_(constrain_latent(new, prior=self.latent_prior))

    @torch.no_grad()
    def images(self, state: RefineState) -> Tensor:
        return self.generator(state.v)
