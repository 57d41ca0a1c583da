"""Golden values for each loss on fixed inputs, the declarations of the registry, the gradient penalty's closed
form, and SAN's detaches."""

import dataclasses
import math

import pytest
import torch
from torch import nn

from gan_models import LOSSES, NetworkConfig, build_discriminator, get_loss
from gan_models.losses import (
    SAN_BASES,
    clip_weights_,
    discriminator_objective,
    gradient_penalty,
)


def t(*v):
    return torch.tensor(v, dtype=torch.float64)


def test_bce_golden():
    bce = get_loss("bce")
    assert bce.d_loss(t(0.0), t(0.0)).item() == pytest.approx(2 * math.log(2))
    assert bce.g_loss(t(0.0)).item() == pytest.approx(math.log(2))
    # softplus(-3) + softplus(-2) for a confident, correct D
    assert bce.d_loss(t(3.0), t(-2.0)).item() == pytest.approx(math.log1p(math.exp(-3)) + math.log1p(math.exp(-2)))


def test_wasserstein_and_hinge_golden():
    w = get_loss("wgan")
    assert w.d_loss(t(2.0, 4.0), t(1.0, -1.0)).item() == pytest.approx(0.0 - 3.0)
    assert w.g_loss(t(1.0, -1.0, 3.0)).item() == pytest.approx(-1.0)
    h = get_loss("hinge")
    assert h.d_loss(t(0.0), t(0.0)).item() == pytest.approx(2.0)
    assert h.d_loss(t(1.5), t(-1.5)).item() == pytest.approx(0.0)  # both margins met
    assert h.d_loss(t(0.5), t(0.25)).item() == pytest.approx(0.5 + 1.25)


def test_unknown_loss_lists_valid_ones():
    with pytest.raises(ValueError, match="valid choices: bce, wgan, wgan-gp, hinge, san"):
        get_loss("lsgan")
    assert list(LOSSES) == ["bce", "wgan", "wgan-gp", "hinge", "san"]


def test_declared_needs_follow_the_design_table():
    """docs/training.md: wgan clips D's weights, wgan-gp adds a gradient penalty, san has a SAN head on hinge or bce."""
    declared = {name: (loss.needs.clips_weights, loss.needs.gradient_penalty, loss.needs.san_head)
                for name, loss in LOSSES.items()}
    assert declared == {"bce": (False, False, False), "wgan": (True, False, False), "wgan-gp": (False, True, False),
                        "hinge": (False, False, False), "san": (False, False, True)}
    assert {name: loss.needs.options for name, loss in LOSSES.items()} == {
        "bce": (), "wgan": ("clip_value",), "wgan-gp": ("lambda_gp",), "hinge": (), "san": ("san_base",)}
    assert SAN_BASES == ("hinge", "bce")
    assert all(name == loss.name for name, loss in LOSSES.items())


def test_declarations_are_frozen_and_checked_once(monkeypatch):
    from gan_models import config

    with pytest.raises(dataclasses.FrozenInstanceError):
        LOSSES["bce"].needs.clips_weights = True  # type: ignore[misc]
    assert all(loss.needs is config.LOSS_NEEDS[name] for name, loss in LOSSES.items())  # declared once
    monkeypatch.setitem(config.LOSS_NEEDS, "hinge", config.LossNeeds(clips_weights=True))
    with pytest.raises(ValueError, match="SAN base loss 'hinge' must be a declared loss that needs no clipping"):
        config._check_loss_registry()
    monkeypatch.delitem(config.LOSS_NEEDS, "hinge")
    with pytest.raises(ValueError, match="LOSS_NEEDS declares .*, LossName lists"):
        config._check_loss_registry()


@pytest.mark.parametrize("name", list(LOSSES))
def test_objective_adds_exactly_the_declared_terms(name):
    """Without a network-specific need a loss is its d_loss on D's outputs; a GP loss adds lambda * gp."""
    spec = get_loss(name)
    needs = spec.needs
    torch.manual_seed(2)
    D = build_discriminator(NetworkConfig(width=0.25, san=needs.san_head))
    x, y = torch.randn(4, 1, 28, 28), torch.randn(4, 1, 28, 28)
    eps = torch.rand(4, 1, 1, 1)
    total, parts = discriminator_objective(D, x, y, loss=name, lambda_gp=10.0, gp_eps=eps)
    assert set(parts) == ({"fun", "dir"} if needs.san_head else set()) | ({"gp"} if needs.gradient_penalty else set())
    if needs.san_head:  # default base: the first declared one
        assert parts["fun"].item() == pytest.approx(get_loss(needs.san_bases[0]).d_loss(D(x), D(y)).item(), rel=1e-5)
    base = parts["fun"] + parts["dir"] if needs.san_head else spec.d_loss(D(x), D(y))
    expected = base + 10.0 * gradient_penalty(D, x, y, eps) if needs.gradient_penalty else base
    assert total.item() == pytest.approx(expected.item(), rel=1e-5)
    if needs.gradient_penalty:
        with pytest.raises(ValueError, match=f"{name} needs lambda_gp and gp_eps"):
            discriminator_objective(D, x, y, loss=name)


class Linear(nn.Module):
    """D(x) = <a, x>: its input gradient is a everywhere."""

    def __init__(self, a):
        super().__init__()
        self.a = nn.Parameter(a)

    def forward(self, x):
        return x.flatten(1) @ self.a


def test_gradient_penalty_closed_form():
    a = torch.zeros(784, dtype=torch.float64)
    a[0], a[1] = 3.0, 4.0  # ||a|| = 5 -> penalty (5 - 1)^2 = 16 wherever x_hat is
    D = Linear(a)
    x = torch.randn(8, 1, 28, 28, dtype=torch.float64)
    y = torch.randn(8, 1, 28, 28, dtype=torch.float64)
    eps = torch.rand(8, 1, 1, 1, dtype=torch.float64)
    gp = gradient_penalty(D, x, y, eps)
    assert gp.item() == pytest.approx(16.0)
    gp.backward()  # d/da (||a|| - 1)^2 = 2 (||a|| - 1) a / ||a||
    assert torch.allclose(D.a.grad[:2], t(2 * 4 * 3 / 5, 2 * 4 * 4 / 5))


def test_weight_clipping_bounds_every_parameter():
    D = build_discriminator(NetworkConfig())
    clip_weights_(D, 0.01)
    assert max(p.abs().max().item() for p in D.parameters()) <= 0.01


@pytest.mark.parametrize("architecture", ["mlp", "dcgan"])
def test_san_detaches_fun_omega_and_dir_h(architecture):
    torch.manual_seed(0)
    D = build_discriminator(NetworkConfig(architecture=architecture, san=True))
    x = torch.randn(16, 1, 28, 28)
    fun, dir_ = D.san_split(x)
    assert torch.allclose(fun, D(x), atol=1e-5) and torch.allclose(dir_, D(x), atol=1e-5)
    w = D.head.weight
    feature_params = list(D.features.parameters())

    # fun: omega detached -> the head's gradient is purely radial (it moves ||w|| only), features learn
    g_w, *g_f = torch.autograd.grad(fun.sum(), [w, *feature_params], retain_graph=True)
    cos = torch.dot(g_w, w) / (g_w.norm() * w.norm())
    assert abs(cos.item()) == pytest.approx(1.0, abs=1e-4)
    assert sum(g.abs().sum() for g in g_f) > 0

    # dir: h detached -> the head's gradient is tangential (it turns omega only), features get nothing
    g_w = torch.autograd.grad(dir_.sum(), w, retain_graph=True)[0]
    assert abs(torch.dot(g_w, w).item()) < 1e-4 * g_w.norm().item() * w.norm().item()
    assert all(g is None for g in torch.autograd.grad(dir_.sum(), feature_params, allow_unused=True))


def test_san_objective_adds_base_and_direction_terms():
    torch.manual_seed(1)
    D = build_discriminator(NetworkConfig(san=True))
    x, y = torch.randn(4, 1, 28, 28), torch.randn(4, 1, 28, 28)
    total, parts = discriminator_objective(D, x, y, loss="san", san_base="bce")
    dx, dy = D(x), D(y)
    assert parts["fun"].item() == pytest.approx(get_loss("bce").d_loss(dx, dy).item(), rel=1e-5)
    assert parts["dir"].item() == pytest.approx((-dx.mean() + dy.mean()).item(), rel=1e-4, abs=1e-6)
    assert total.item() == pytest.approx(parts["fun"].item() + parts["dir"].item(), rel=1e-6)
