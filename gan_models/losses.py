"""Adversarial losses and regularisers (see DESIGN.md, "GAN variants").

Every loss is a pair of small functions with one signature each, kept in ``LOSSES``:
    d_loss(d_real [B], d_fake [B]) -> scalar      g_loss(d_fake [B]) -> scalar
where d_* are the discriminator's raw outputs (logits or critic scores).
Regularisers that need the network itself (gradient penalty, weight clipping, the SAN split)
are separate functions; ``discriminator_objective`` puts a configured loss together.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .networks import Discriminator


@dataclass(frozen=True)
class AdversarialLoss:
    name: str
    d_loss: Callable[[Tensor, Tensor], Tensor]
    g_loss: Callable[[Tensor], Tensor]


# bce (non-saturating): L_D = softplus(-D(x)) + softplus(D(G(z))),  L_G = softplus(-D(G(z)))
def bce_d(d_real: Tensor, d_fake: Tensor) -> Tensor:
    return F.softplus(-d_real).mean() + F.softplus(d_fake).mean()


def bce_g(d_fake: Tensor) -> Tensor:
    return F.softplus(-d_fake).mean()


# wgan: L_D = D(G(z)) - D(x),  L_G = -D(G(z))
def wasserstein_d(d_real: Tensor, d_fake: Tensor) -> Tensor:
    return d_fake.mean() - d_real.mean()


def wasserstein_g(d_fake: Tensor) -> Tensor:
    return -d_fake.mean()


# hinge: L_D = relu(1 - D(x)) + relu(1 + D(G(z))),  L_G = -D(G(z))
def hinge_d(d_real: Tensor, d_fake: Tensor) -> Tensor:
    return F.relu(1.0 - d_real).mean() + F.relu(1.0 + d_fake).mean()


LOSSES: dict[str, AdversarialLoss] = {
    "bce": AdversarialLoss("bce", bce_d, bce_g),
    "wgan": AdversarialLoss("wgan", wasserstein_d, wasserstein_g),
    "wgan-gp": AdversarialLoss("wgan-gp", wasserstein_d, wasserstein_g),
    "hinge": AdversarialLoss("hinge", hinge_d, wasserstein_g),
    # SAN: the base loss (``san_base``) trains "fun"; the direction term trains "dir"; G as WGAN.
    "san": AdversarialLoss("san", hinge_d, wasserstein_g),
}
SAN_BASES = ("hinge", "bce")


def get_loss(name: str) -> AdversarialLoss:
    if name not in LOSSES:
        raise ValueError(f"unknown loss {name!r}; valid choices: {', '.join(LOSSES)}")
    return LOSSES[name]


def san_direction_loss(dir_real: Tensor, dir_fake: Tensor) -> Tensor:
    """L_dir = -<h(x), omega> + <h(G(z)), omega>, h detached (only omega learns)."""
    return -dir_real.mean() + dir_fake.mean()


def gradient_penalty(D: nn.Module, x_real: Tensor, x_fake: Tensor, eps: Tensor) -> Tensor:
    """E[(||grad_x D(x_hat)||_2 - 1)^2], x_hat = eps * x + (1 - eps) * G(z), eps ~ U[0, 1] per sample.

    eps: [B, 1, 1, 1]. create_graph so the penalty's gradient reaches D's weights.
    """
    x_hat = (eps * x_real + (1.0 - eps) * x_fake.detach()).requires_grad_(True)
    (grad,) = torch.autograd.grad(D(x_hat).sum(), x_hat, create_graph=True)
    return (grad.flatten(1).norm(2, dim=1) - 1.0).pow(2).mean()


@torch.no_grad()
def clip_weights_(D: nn.Module, clip_value: float) -> None:
    """WGAN weight clipping: every parameter of D into [-c, c] after each D step."""
    for p in D.parameters():
        p.clamp_(-clip_value, clip_value)


def discriminator_objective(
    D: Discriminator,
    x_real: Tensor,
    x_fake: Tensor,
    *,
    loss: str,
    san_base: str = "hinge",
    lambda_gp: float | None = None,
    gp_eps: Tensor | None = None,
) -> tuple[Tensor, dict[str, Tensor]]:
    """The full D loss for one batch, with its parts for logging.

    Real and fake go through D in one concatenated batch: one matmul per layer instead of two.
    """
    spec = get_loss(loss)
    n = x_real.shape[0]
    both = torch.cat([x_real, x_fake.detach()])
    parts: dict[str, Tensor] = {}
    if loss == "san":
        fun, dir_ = D.san_split(both)
        base = get_loss(san_base)
        parts["fun"] = base.d_loss(fun[:n], fun[n:])
        parts["dir"] = san_direction_loss(dir_[:n], dir_[n:])
        total = parts["fun"] + parts["dir"]
    else:
        out = D(both)
        total = spec.d_loss(out[:n], out[n:])
    if loss == "wgan-gp":
        if lambda_gp is None or gp_eps is None:
            raise ValueError("wgan-gp needs lambda_gp and gp_eps")
        parts["gp"] = gradient_penalty(D, x_real, x_fake, gp_eps)
        total = total + lambda_gp * parts["gp"]
    return total, parts


def generator_objective(D: nn.Module, x_fake: Tensor, *, loss: str) -> Tensor:
    return get_loss(loss).g_loss(D(x_fake))
