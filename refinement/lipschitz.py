"""Effective Lipschitz constants of the discriminator (Tanaka 2019, eq. 20).

  K_eff = max over pairs (x, x') ~ p_G of |D(x) - D(x')| / ||x - x'||          (image space)
  k_eff = max over pairs (z, z') ~ p_Z of |D(G(z)) - D(G(z'))| / ||z - z'||    (latent space)

A maximum over finitely many pairs can only under-estimate the true constant sup |D(a)-D(b)|/||a-b||
on the support, never exceed it. Tanaka draws 100 independent pairs; "mean-of-max" averages
several such maxima (less noisy, lower); "one" trusts the discriminator to be 1-Lipschitz,
which the course reports found often works better.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor, nn

from .costs import pairwise_distance

# draw(n) -> n ratios |D(a_i) - D(b_i)| / ||p(a_i) - p(b_i)|| from n fresh independent pairs
RatioSampler = Callable[[int], Tensor]


@torch.no_grad()
def pair_ratios(score: Callable[[Tensor], Tensor], position: Callable[[Tensor], Tensor], a: Tensor, b: Tensor) -> Tensor:
    """|score(a_i) - score(b_i)| / ||position(a_i) - position(b_i)||_2 for each pair i: a, b [N, ...] -> [N]."""
    num = (score(a).reshape(-1) - score(b).reshape(-1)).abs()
    return num / pairwise_distance(position(a), position(b))


def _estimate(draw: RatioSampler, *, pairs: int, repeats: int) -> float:
    return float(draw(pairs).max())


def _mean_of_max(draw: RatioSampler, *, pairs: int, repeats: int) -> float:
    return float(torch.stack([draw(pairs).max() for _ in range(repeats)]).mean())


def _one(draw: RatioSampler, *, pairs: int, repeats: int) -> float:
    return 1.0


K_EFF_ESTIMATORS: dict[str, Callable[..., float]] = {
    "estimate": _estimate,
    "mean-of-max": _mean_of_max,
    "one": _one,
}


def estimate_k_eff(choice: str, draw: RatioSampler, *, pairs: int = 100, repeats: int = 10) -> float:
    """K_eff by the named estimator; raises ValueError listing the choices for an unknown name."""
    if choice not in K_EFF_ESTIMATORS:
        raise ValueError(f"unknown k_eff choice {choice!r}; valid choices: {', '.join(K_EFF_ESTIMATORS)}")
    k = K_EFF_ESTIMATORS[choice](draw, pairs=pairs, repeats=repeats)
    if not 0 < k < float("inf"):  # also rejects NaN
        raise ValueError(f"k_eff estimate is {k}; the discriminator is constant or not finite on the samples")
    return k


def latent_ratio_sampler(
    generator: nn.Module,
    discriminator: nn.Module,
    position: Callable[[Tensor], Tensor],
    draw_latent: Callable[[int], Tensor],
) -> RatioSampler:
    """Ratios for pairs of generated samples G(z), G(z'), with distances taken in ``position``'s space
    (z itself for latent DOT, G(z) for target DOT, E(G(z)) for embedded DOT)."""
    score = lambda z: discriminator(generator(z))  # noqa: E731

    def draw(n: int) -> Tensor:
        return pair_ratios(score, position, draw_latent(n), draw_latent(n))

    return draw
