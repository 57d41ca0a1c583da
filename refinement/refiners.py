"""The refiner registry (method name -> builder, by the kind its METHODS entry declares) and the K_eff each
method uses."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from torch import Tensor, nn

from gan_models.registry import lookup

from .config import METHODS, RefineConfig
from .ddls import LangevinRefiner
from .dot import DotRefiner, RefineState
from .lipschitz import k_eff_in_cost_space


class Refiner(Protocol):
    needs_noise: bool

    def start(self, z_y: Tensor) -> RefineState: ...

    def step(self, state: RefineState, t: int, noise: Tensor | None = None) -> None: ...

    def images(self, state: RefineState) -> Tensor: ...


def _dot(generator, discriminator, config, *, latent_prior, k_eff, embedder):
    return DotRefiner(generator, discriminator, config, latent_prior=latent_prior, k_eff=k_eff, embedder=embedder)


def _ddls(generator, discriminator, config, *, latent_prior, k_eff, embedder):
    return LangevinRefiner(generator, discriminator, config, latent_prior=latent_prior)


# kind of method (RefineMethod.kind) -> the builder of its refiner
_BUILDERS: dict[str, Callable[..., Refiner]] = {"dot": _dot, "langevin": _ddls}
REFINERS: dict[str, Callable[..., Refiner]] = {name: _BUILDERS[m.kind] for name, m in METHODS.items()}


def make_refiner(config: RefineConfig, generator: nn.Module, discriminator: nn.Module, *, latent_prior: str,
                 k_eff: float, embedder: nn.Module | None = None) -> Refiner:
    build = lookup(REFINERS, config.method, what="method")
    return build(generator, discriminator, config, latent_prior=latent_prior, k_eff=k_eff, embedder=embedder)


# K_eff in the space of a method's transport cost: one function, in lipschitz.py
k_eff_for = k_eff_in_cost_space
