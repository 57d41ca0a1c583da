"""The refiner registry (method name -> builder) and the K_eff each method uses."""

from __future__ import annotations

import math
from typing import Callable, Protocol

import torch
from torch import Tensor, nn

from gan_models import sample_latent

from .config import RefineConfig
from .costs import cost_position
from .ddls import LangevinRefiner
from .dot import OBJECTIVES, DotRefiner, RefineState
from .lipschitz import estimate_k_eff, latent_ratio_sampler


class Refiner(Protocol):
    needs_noise: bool

    def start(self, z_y: Tensor) -> RefineState: ...

    def step(self, state: RefineState, t: int, noise: Tensor | None = None) -> None: ...

    def images(self, state: RefineState) -> Tensor: ...


def _dot(generator, discriminator, config, *, latent_prior, k_eff, embedder):
    return DotRefiner(generator, discriminator, config, latent_prior=latent_prior, k_eff=k_eff, embedder=embedder)


def _ddls(generator, discriminator, config, *, latent_prior, k_eff, embedder):
    return LangevinRefiner(generator, discriminator, config, latent_prior=latent_prior)


REFINERS: dict[str, Callable[..., Refiner]] = {**{m: _dot for m in OBJECTIVES}, "ddls": _ddls}


def make_refiner(config: RefineConfig, generator: nn.Module, discriminator: nn.Module, *, latent_prior: str,
                 k_eff: float, embedder: nn.Module | None = None) -> Refiner:
    if config.method not in REFINERS:
        raise ValueError(f"unknown method {config.method!r}; valid choices: {', '.join(REFINERS)}")
    return REFINERS[config.method](generator, discriminator, config, latent_prior=latent_prior, k_eff=k_eff,
                                   embedder=embedder)


def k_eff_for(config: RefineConfig, generator: nn.Module, discriminator: nn.Module, *, latent_dim: int,
              latent_prior: str, embedder: nn.Module | None = None, seed: int = 0,
              device: str | torch.device = "cpu") -> float:
    """The K_eff that ``config.method`` divides D by, measured in the space of its transport cost
    (image space for target DOT, latent space for latent DOT, ...); NaN for DDLS, which uses none.
    Pairs come from their own RNG stream (``seed``), independent of the refined samples."""
    if config.method == "ddls":
        return math.nan
    rng = torch.Generator().manual_seed(seed)
    draw_latent = lambda m: sample_latent(m, latent_dim, latent_prior, generator=rng, device=device)  # noqa: E731
    position = cost_position(config.method, generator, embedder)
    draw = latent_ratio_sampler(generator, discriminator, position, draw_latent)
    return estimate_k_eff(config.k_eff, draw, pairs=config.k_eff_pairs, repeats=config.k_eff_repeats)
