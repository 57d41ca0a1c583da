"""Adversarial losses and regularisers (docs/training.md, "Networks and losses").

Every loss is one frozen ``AdversarialLoss`` in ``LOSSES``: a pair of small functions with one signature each,
    d_loss(d_real [B], d_fake [B]) -> scalar      g_loss(d_fake [B]) -> scalar
where d_* are the discriminator's raw outputs (logits or critic scores), and what else the loss needs of
the trainer: weight clipping, a gradient penalty, a SAN head. The trainer asks those declarations, never
the loss's name. Regularisers that need the network itself (gradient penalty, weight clipping, the SAN
split) are separate functions; ``discriminator_objective`` puts a configured loss together.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .config import LOSS_NEEDS, LossNeeds
from .networks import Discriminator
from .registry import lookup


@dataclass(frozen=True)
class AdversarialLoss:
    """One loss: its two functions, and what it needs of the trainer (its declaration in
    gan_models.config.LOSS_NEEDS: weight clipping, a gradient penalty, a SAN head and its base losses)."""

    name: str
    d_loss: Callable[[Tensor, Tensor], Tensor]
    g_loss: Callable[[Tensor], Tensor]
    needs: LossNeeds = LossNeeds()


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


# loss name -> (d_loss, g_loss); what each needs of the trainer is declared once in LOSS_NEEDS
_FUNCTIONS: dict[str, tuple[Callable[[Tensor, Tensor], Tensor], Callable[[Tensor], Tensor]]] = {
    "bce": (bce_d, bce_g),
    "wgan": (wasserstein_d, wasserstein_g),
    "wgan-gp": (wasserstein_d, wasserstein_g),
    "hinge": (hinge_d, wasserstein_g),
    # SAN: the base loss (``san_base``) trains "fun"; the direction term trains "dir"; G as WGAN. Its own
    # d_loss is the default base's, used only where a SAN head's split is not available.
    "san": (hinge_d, wasserstein_g),
}
if set(_FUNCTIONS) != set(LOSS_NEEDS):  # checked once, at import: one entry per declared loss
    raise ValueError(f"losses with functions {sorted(_FUNCTIONS)} differ from those declared {sorted(LOSS_NEEDS)}")

LOSSES: dict[str, AdversarialLoss] = {
    name: AdversarialLoss(name, *_FUNCTIONS[name], needs=needs) for name, needs in LOSS_NEEDS.items()
}
# the losses that can train SAN's "fun" term, in their declared order (the first is the default)
SAN_BASES: tuple[str, ...] = tuple(dict.fromkeys(b for loss in LOSSES.values() for b in loss.needs.san_bases))


def get_loss(name: str) -> AdversarialLoss:
    return lookup(LOSSES, name, what="loss")


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
    san_base: str | None = None,
    lambda_gp: float | None = None,
    gp_eps: Tensor | None = None,
) -> tuple[Tensor, dict[str, Tensor]]:
    """The full D loss for one batch, with its parts for logging; what it adds is what ``loss`` declares.

    san_base: the base loss of a SAN head (default: the loss's first declared base); lambda_gp and
    gp_eps [B, 1, 1, 1]: the gradient penalty's weight and interpolation weights. Each is read only by
    a loss that declares the need. Real and fake go through D in one concatenated batch: one matmul per
    layer instead of two.
    """
    spec = get_loss(loss)
    n = x_real.shape[0]
    both = torch.cat([x_real, x_fake.detach()])
    parts: dict[str, Tensor] = {}
    if spec.needs.san_head:
        # L_D = L_base(fun(x), fun(G(z))) + L_dir,  fun = <h, omega.detach()>,  dir = <h.detach(), omega>
        fun, dir_ = D.san_split(both)
        base = get_loss(san_base if san_base is not None else spec.needs.san_bases[0])
        fun, dir_ = fun.float(), dir_.float()
        parts["fun"] = base.d_loss(fun[:n], fun[n:])
        parts["dir"] = san_direction_loss(dir_[:n], dir_[n:])
        total = parts["fun"] + parts["dir"]
    else:
        out = D(both).float()  # the loss in float32, also under bf16 autocast
        total = spec.d_loss(out[:n], out[n:])
    if spec.needs.gradient_penalty:
        # L_D += lambda_GP E[(||grad D(x_hat)||_2 - 1)^2]
        if lambda_gp is None or gp_eps is None:
            raise ValueError(f"{loss} needs lambda_gp and gp_eps")
        parts["gp"] = gradient_penalty(D, x_real, x_fake, gp_eps)
        total = total + lambda_gp * parts["gp"]
    return total, parts


def generator_objective(D: nn.Module, x_fake: Tensor, *, loss: str) -> Tensor:
    return get_loss(loss).g_loss(D(x_fake).float())
