"""Effective Lipschitz constants of the discriminator, in the space of DOT's transport cost.

Pair estimators (Tanaka 2019, eq. 20):

  K_eff = max over pairs (x, x') ~ p_G of |D(x) - D(x')| / ||x - x'||          (image space)
  k_eff = max over pairs (z, z') ~ p_Z of |D(G(z)) - D(G(z'))| / ||z - z'||    (latent space)

A maximum over finitely many pairs can only under-estimate the Lipschitz constant
L = sup |D(a) - D(b)| / ||a - b||, never exceed it, and in high dimension it falls far below it:
a random pair's direction is nearly orthogonal to the gradient (for a linear D(x) = a.x in 784-d,
100 pairs give about 0.09 ||a||). So D / K_eff with the pair estimate is NOT 1-Lipschitz in
general; it is D rescaled by its typical slope between random samples.
- "estimate": Tanaka's one maximum over ``pairs`` independent pairs (he uses 100);
- "mean-of-max": the mean of ``repeats`` such maxima. Its expectation is that of a single maximum
  ("estimate"); averaging only lowers the variance (by 1/repeats). It is not a different estimate.
- "one": K_eff = 1, trusting D to be 1-Lipschitz (the course reports found it often works better).

Gradient estimator ("gradient"): K_eff = max ||grad_p D(p)||_2 over points p of the cost's space,
which estimates L directly (for a linear D it is exactly ||a||): ``pairs`` generated points
p = P(G(z)) and ``pairs`` random interpolates e p + (1 - e) q, e ~ U[0, 1] (the points where
WGAN-GP constrains the gradient). q is
- image space (target, latent-image): a real image when real samples are given, else another
  generated image G(z') from an independent z' (a fallback: without real data, the interpolates
  stay between generated samples);
- latent space (latent): another latent z' from the prior, since there are no real latents; the
  gradient is that of D o G with respect to z.
The embedding space (embedded-*) has none: D is a function of x, not of E(x), and with E mapping
784 pixels to fewer features no finite constant bounds |D(x) - D(y)| by ||E(x) - E(y)||.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import cast

import torch
from torch import Tensor, nn

from gan_models import sample_latent
from gan_models.registry import lookup

from .config import RefineConfig
from .costs import CostPosition, cost_position, pairwise_distance

# draw(n) -> n ratios |D(a_i) - D(b_i)| / ||p(a_i) - p(b_i)|| from n fresh independent pairs
RatioSampler = Callable[[int], Tensor]


@torch.no_grad()
def pair_ratios(score: Callable[[Tensor], Tensor], position: Callable[[Tensor], Tensor], a: Tensor,
                b: Tensor) -> Tensor:
    """|score(a_i) - score(b_i)| / ||position(a_i) - position(b_i)||_2 for each pair i: a, b [N, ...] -> [N]."""
    num = (score(a).reshape(-1) - score(b).reshape(-1)).abs()
    return num / pairwise_distance(position(a), position(b))


def gradient_norms(critic: Callable[[Tensor], Tensor], points: Tensor) -> Tensor:
    """||grad critic(p_i)||_2 for each row: points [N, ...] -> [N]. The gradient of the SUM over rows
    gives each row its own gradient (the critic must treat rows independently: eval mode)."""
    p = points.detach().requires_grad_(True)
    with torch.enable_grad():
        (grad,) = torch.autograd.grad(critic(p).sum(), p)
    return grad.flatten(1).norm(dim=1)


# p_hat = e p + (1 - e) q, e ~ U[0, 1] per sample
def interpolates(p: Tensor, q: Tensor, rng: torch.Generator) -> Tensor:
    e = torch.rand(p.shape[0], generator=rng).to(device=p.device, dtype=p.dtype)
    return torch.lerp(q, p, e.reshape(-1, *([1] * (p.dim() - 1))))


class LipschitzProbe:
    """Samples the discriminator in the cost's space for the K_eff estimators.

    Called with n it is a ``RatioSampler`` (n pair ratios, Tanaka's estimate); ``gradient_norms(n)``
    gives the gradient norms at n generated points and n interpolates (see the module docstring).
    ``real``: real images [N, ...] in the generator's output shape and range, used by image-space
    interpolates; ``rng`` draws the interpolation weights and the real rows.
    """

    def __init__(self, generator: nn.Module, discriminator: nn.Module, position: Callable[[Tensor], Tensor],
                 draw_latent: Callable[[int], Tensor], *, real: Tensor | None = None,
                 rng: torch.Generator | None = None):
        if real is not None and not real.is_floating_point():
            raise ValueError(f"real images must be floats in the generator's range [-1, 1] "
                             f"(gan_models.data.to_float), got {real.dtype}")
        self.generator, self.discriminator, self.position = generator, discriminator, position
        self.draw_latent = draw_latent
        self.real = real
        self.rng = rng if rng is not None else torch.Generator().manual_seed(0)

    def __call__(self, n: int) -> Tensor:
        score = lambda z: self.discriminator(self.generator(z))  # noqa: E731
        return pair_ratios(score, self.position, self.draw_latent(n), self.draw_latent(n))

    def gradient_norms(self, n: int) -> Tensor:
        """||grad D|| in the cost's space at n generated points and n interpolates: [2n]."""
        space = getattr(self.position, "space", None)
        critic = cast(CostPosition, self.position).critic(self.discriminator) if space is not None else None
        if critic is None:
            raise ValueError(f"k_eff 'gradient' needs an image or latent cost space (D as a function of the cost's "
                             f"points); got {space or 'an unnamed position map'}; use estimate, mean-of-max or one")
        with torch.no_grad():
            p = self.position(self.draw_latent(n))  # generated points of the cost's space
            if space == "image" and self.real is not None:
                rows = torch.randint(self.real.shape[0], (n,), generator=self.rng)
                q = self.real[rows].to(device=p.device, dtype=p.dtype)
                if q.shape != p.shape:
                    raise ValueError(f"real images {tuple(self.real.shape[1:])} differ in shape from the generated "
                                     f"ones {tuple(p.shape[1:])}")
            else:  # latent space (no real latents), or no real images: another independent sample
                q = self.position(self.draw_latent(n))
            points = torch.cat([p, interpolates(p, q, self.rng)])
        return gradient_norms(critic, points)


def latent_ratio_sampler(
    generator: nn.Module,
    discriminator: nn.Module,
    position: Callable[[Tensor], Tensor],
    draw_latent: Callable[[int], Tensor],
    *,
    real: Tensor | None = None,
    rng: torch.Generator | None = None,
) -> LipschitzProbe:
    """Ratios for pairs of generated samples G(z), G(z'), with distances taken in ``position``'s space
    (z itself for latent DOT, G(z) for target DOT, E(G(z)) for embedded DOT); with a ``CostPosition``
    (refinement.costs) the probe also gives gradient norms in that space."""
    return LipschitzProbe(generator, discriminator, position, draw_latent, real=real, rng=rng)


def _estimate(draw: RatioSampler, *, pairs: int, repeats: int) -> float:
    return float(draw(pairs).max())


def _mean_of_max(draw: RatioSampler, *, pairs: int, repeats: int) -> float:
    return float(torch.stack([draw(pairs).max() for _ in range(repeats)]).mean())


def _one(draw: RatioSampler, *, pairs: int, repeats: int) -> float:
    return 1.0


def _gradient(draw: RatioSampler, *, pairs: int, repeats: int) -> float:
    if not hasattr(draw, "gradient_norms"):
        raise ValueError("k_eff 'gradient' needs a LipschitzProbe (latent_ratio_sampler), not a plain ratio sampler")
    return float(draw.gradient_norms(pairs).max())


K_EFF_ESTIMATORS: dict[str, Callable[..., float]] = {
    "estimate": _estimate,
    "mean-of-max": _mean_of_max,
    "one": _one,
    "gradient": _gradient,
}


def estimate_k_eff(choice: str, draw: RatioSampler, *, pairs: int = 100, repeats: int = 10) -> float:
    """K_eff by the named estimator; raises ValueError listing the choices for an unknown name."""
    k = lookup(K_EFF_ESTIMATORS, choice, what="k_eff choice")(draw, pairs=pairs, repeats=repeats)
    if not 0 < k < float("inf"):  # also rejects NaN
        raise ValueError(f"k_eff estimate is {k}; the discriminator is constant or not finite on the samples")
    return k


def k_eff_in_cost_space(config: RefineConfig, generator: nn.Module, discriminator: nn.Module, *, latent_dim: int,
                        latent_prior: str, embedder: nn.Module | None = None, seed: int = 0,
                        device: str | torch.device = "cpu", real_images: Tensor | None = None) -> float:
    """The K_eff that ``config.method`` divides D by, measured in the space of its transport cost
    (image space for target DOT, latent space for latent DOT, ...); NaN for DDLS, which uses none.
    Pairs, points and interpolation weights come from their own RNG stream (``seed``), independent
    of the refined samples. ``real_images`` [N, ...] (generator output shape, [-1, 1]): the real
    ends of the image-space interpolates of ``k_eff="gradient"``; unused by the other choices."""
    if not config.variant.dot:  # Langevin divides D by nothing
        return math.nan
    rng = torch.Generator().manual_seed(seed)
    draw_latent = lambda m: sample_latent(m, latent_dim, latent_prior, generator=rng, device=device)  # noqa: E731
    position = cost_position(config.method, generator, embedder)
    probe = latent_ratio_sampler(generator, discriminator, position, draw_latent, real=real_images, rng=rng)
    return estimate_k_eff(config.k_eff, probe, pairs=config.k_eff_pairs, repeats=config.k_eff_repeats)
