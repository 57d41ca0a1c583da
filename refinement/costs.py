"""Transport costs of DOT and the space each method measures them in (its ``cost_space`` in
refinement.config.METHODS).

Every cost compares a moving point with its fixed start, per sample, in one space:
  latent       ||z - z_y + delta||
  image        ||x - y + delta||            (target DOT)  or  ||G(z) - G(z_y) + delta||  (latent-image)
  embedding    ||E(x) - E(y) + delta||      (embedded DOT; x = G(z) for the latent version)
delta is a constant added to every coordinate (Tanaka: 0.001) so that the l2 norm is
differentiable at the start point, where the difference is exactly zero.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import Tensor, nn

from gan_models.registry import lookup

from .config import METHODS

# name -> c(v) for v [B, P] (one flattened difference per sample) -> [B]
NORMS: dict[str, Callable[[Tensor], Tensor]] = {
    "l2": lambda v: v.norm(dim=1),
    "squared-l2": lambda v: (v * v).sum(dim=1),
}


def transport_cost(a: Tensor, b: Tensor, *, norm: str, delta: float) -> Tensor:
    """c(a - b + delta) per sample: a, b [B, ...] (same shape) -> [B]."""
    return lookup(NORMS, norm, what="norm")((a - b).flatten(1) + delta)


# DOT method -> the space its transport cost lives in (a view of the declarations in METHODS)
COST_SPACES: dict[str, str] = {name: m.cost_space for name, m in METHODS.items() if m.cost_space is not None}


@dataclass(frozen=True, eq=False)
class CostPosition:
    """The map z [B, d] -> the point of G(z) in the space where a method measures its cost (callable).

    The K_eff estimators take their distances (pairs) or gradients in this same space, so that
    D / K_eff is scaled against the cost that DOT pays. ``critic`` gives D as a function of a point
    of this space, which the gradient estimator differentiates: D itself for image costs, D o G for
    latent costs; there is none for embedding costs, since D is a function of x, not of E(x).
    """

    space: str
    generator: nn.Module
    embedder: nn.Module | None = None

    def __call__(self, z: Tensor) -> Tensor:
        return z if self.space == "latent" else self.point(self.generator(z))

    def point(self, x: Tensor, z: Tensor | None = None) -> Tensor:
        """The point of the image x = G(z) in this space: z (latent space, which needs z), x or E(x)."""
        if self.space == "latent":
            if z is None:
                raise ValueError("a latent-space cost needs the latent z of an image, not the image alone")
            return z
        if self.space == "image":
            return x
        if self.embedder is None:
            raise ValueError("an embedding-space cost needs an embedding network")
        return self.embedder(x)

    def critic(self, discriminator: nn.Module) -> Callable[[Tensor], Tensor] | None:
        """p -> D at the point p of this space, [B, ...] -> [B]; None for the embedding space."""
        if self.space == "image":
            return lambda x: discriminator(x).reshape(-1)
        if self.space == "latent":
            return lambda z: discriminator(self.generator(z)).reshape(-1)
        return None


def cost_position(method: str, generator: nn.Module, embedder: nn.Module | None) -> CostPosition:
    """The map z [B, d] -> the point of G(z) in the space where ``method`` measures its cost."""
    space = lookup(METHODS, method, what="method").cost_space
    if space is None:
        raise ValueError(f"method {method!r} has no transport cost; valid choices: {', '.join(COST_SPACES)}")
    if space == "embedding" and embedder is None:
        raise ValueError(f"method {method!r} needs an embedding network")
    return CostPosition(space, generator, embedder)


def pairwise_distance(a: Tensor, b: Tensor) -> Tensor:
    """||a_i - b_i||_2 per row: a, b [B, ...] -> [B]."""
    return (a - b).flatten(1).norm(dim=1)

