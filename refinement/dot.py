"""Discriminator Optimal Transport (Tanaka 2019): gradient descent on a per-sample objective

  H(v) = c(P(v) - P(v_0) + delta) - D(x(v)) / K_eff

where v is what moves (the image x, or the latent z with x = G(z)), P maps v into the space of
the transport cost c (see refinement.costs) and K_eff, measured in that same space, rescales D
against the cost (see refinement.lipschitz: only the gradient estimate approaches D's Lipschitz
constant; the pair estimate is a lower bound that can be far below it).

Everything is batched over samples, and every sample's objective is its own: the gradient is
taken of the SUM over the batch, so that each row receives exactly dH_i/dv_i (a mean would
scale the step by 1/B and make the result depend on the batch size). Adam is per coordinate,
so it keeps the rows independent too; refined samples do not depend on how they are batched.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from gan_models.registry import lookup

from .config import METHODS, RefineConfig
from .costs import cost_position, transport_cost
from .projection import constrain_latent, project_gradient, sphere_radius

ADAM_BETA2 = 0.9  # Tanaka: Adam(beta1=0, beta2=0.9)
ADAM_EPS = 1e-8


@dataclass
class RefineState:
    """Per-sample tensors of a run; row i belongs to sample i alone.

    v: what moves, z [B, d] or x [B, ...]; anchor: the fixed start in the cost's space
    (None for DDLS); second_moment: Adam's running mean of g^2 (None for SGD/DDLS); radius:
    ||z_0|| [B, 1], the sphere the "exact" projection keeps z on (None otherwise).
    """

    v: Tensor
    anchor: Tensor | None = None
    second_moment: Tensor | None = None
    radius: Tensor | None = None

    def tensors(self) -> dict[str, Tensor | None]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    def rows(self, start: int, stop: int) -> RefineState:
        """Views of rows [start, stop): updating them in place updates this state."""
        optional = {k: None if t is None else t[start:stop] for k, t in self.tensors().items() if k != "v"}
        return RefineState(self.v[start:stop], **optional)

    def __len__(self) -> int:
        return self.v.shape[0]


# DOT method -> its objective in the papers' notation, as declared in METHODS (DotRefiner.objective computes it)
OBJECTIVES: dict[str, str] = {name: m.objective for name, m in METHODS.items() if m.dot}


# -- optimiser directions: v <- v - eps * direction ----------------------------------------------
# SGD: direction = g
def _sgd(g: Tensor, state: RefineState, t: int) -> Tensor:
    return g


# Adam with beta1 = 0, beta2 = 0.9: s <- beta2 s + (1 - beta2) g^2;
# direction = g / (sqrt(s / (1 - beta2^t)) + eps_adam)   (m = g since beta1 = 0; t counts from 1)
def _adam(g: Tensor, state: RefineState, t: int) -> Tensor:
    s = state.second_moment
    assert s is not None  # DotRefiner.start gives Adam its second moment
    s.mul_(ADAM_BETA2).addcmul_(g, g, value=1 - ADAM_BETA2)
    return g / ((s / (1 - ADAM_BETA2**t)).sqrt_().add_(ADAM_EPS))


OPTIMIZERS: dict[str, Callable[[Tensor, RefineState, int], Tensor]] = {"sgd": _sgd, "adam": _adam}


class DotRefiner:
    """One DOT method with its networks and K_eff; ``start`` / ``step`` / ``images`` on a RefineState.

    What the method moves and where its cost lives come from its declaration in METHODS (``self.variant``),
    never from its name: the objective and the anchor follow from them.
    """

    needs_noise = False

    def __init__(self, generator: nn.Module, discriminator: nn.Module, config: RefineConfig, *,
                 latent_prior: str, k_eff: float, embedder: nn.Module | None = None):
        lookup(OBJECTIVES, config.method, what="DOT method")
        self.variant = METHODS[config.method]
        # P: a point -> its point in the cost space (raises when an embedding cost has no embedder)
        self.position = cost_position(config.method, generator, embedder)
        self.generator, self.discriminator, self.embedder = generator, discriminator, embedder
        self.config = config
        self.latent_prior = latent_prior
        self.k_eff = float(k_eff)
        self._direction = OPTIMIZERS[config.optimizer]

    def cost(self, a: Tensor, b: Tensor) -> Tensor:
        return transport_cost(a, b, norm=self.config.norm, delta=self.config.delta)

    # The objective H_i(v_i), [B], of every DOT method: v is what the method moves (x itself, or z with
    # x = G(z)), P(v) its point in the method's cost space (refinement.costs), P(v_0) the anchor.
    #   H(v) = c(P(v) - P(v_0) + delta) - D(x(v)) / K_eff
    # target:          H(x) = c(x - y + delta) - D(x) / K_eff
    # latent:          H(z) = c(z - z_y + delta) - D(G(z)) / k_eff
    # latent-image:    H(z) = c(G(z) - G(z_y) + delta) - D(G(z)) / K_eff
    # embedded-target: H(x) = c(E(x) - E(y) + delta) - D(x) / K_eff
    # embedded-latent: H(z) = c(E(G(z)) - E(G(z_y)) + delta) - D(G(z)) / K_eff
    def objective(self, v: Tensor, anchor: Tensor) -> Tensor:
        if self.variant.moves_latent:  # v = z
            x = self.generator(v)
            p = self.position.point(x, z=v)
        else:  # v = x
            x = v
            p = self.position.point(x)
        return self.cost(p, anchor) - self.discriminator(x) / self.k_eff

    @torch.no_grad()
    def start(self, z_y: Tensor) -> RefineState:
        """State at step 0 for latents z_y [B, d]: v_0 = z_y, or the image y = G(z_y); the anchor is P(v_0)."""
        if self.variant.moves_latent:
            v, anchor = z_y.clone(), self.position(z_y)  # anchor z_y, G(z_y) or E(G(z_y))
            if anchor is z_y:
                anchor = z_y.clone()  # the state owns its tensors
        else:
            y = self.generator(z_y)
            v, anchor = y.clone(), self.position.point(y)  # anchor y or E(y)
        moment = torch.zeros_like(v) if self.config.optimizer == "adam" else None
        radius = (sphere_radius(z_y, prior=self.latent_prior, projection=self.config.projection)
                  if self.variant.moves_latent else None)
        return RefineState(v=v, anchor=anchor, second_moment=moment, radius=radius)

    def step(self, state: RefineState, t: int, noise: Tensor | None = None) -> None:
        """Update ``state`` in place with the t-th step (t >= 1): v <- constrain(v - eps * direction(g)),
        where constrain clips images, clips a uniform latent into the cube, or retracts a normal latent
        onto its starting sphere ||z|| = ||z_0|| ("exact" projection)."""
        assert state.anchor is not None  # DotRefiner.start sets it
        v = state.v.detach().requires_grad_(True)
        with torch.enable_grad():
            # g_i = dH_i/dv_i, from the gradient of sum_i H_i(v_i); inputs=[v]: no parameter gradients
            self.objective(v, state.anchor).sum().backward(inputs=[v])
        g = v.grad
        assert g is not None  # backward(inputs=[v]) filled it
        with torch.no_grad():
            if self.variant.moves_latent:
                g = project_gradient(g, state.v, prior=self.latent_prior, projection=self.config.projection)
            new = state.v - self.config.lr * self._direction(g, state, t)
            if self.variant.moves_latent:
                # exact projection: z <- ||z_0|| z / ||z||; uniform prior: z <- clip(z, -1, 1)
                new = constrain_latent(new, prior=self.latent_prior, projection=self.config.projection,
                                       radius=state.radius)
            elif self.config.clip_images:
                new = new.clamp(-1.0, 1.0)
            state.v.copy_(new)

    @torch.no_grad()
    def images(self, state: RefineState) -> Tensor:
        return self.generator(state.v) if self.variant.moves_latent else state.v.clone()
