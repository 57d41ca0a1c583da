"""k_eff "gradient": the largest ||grad D|| in the cost's space, against analytic Lipschitz constants
(where the pair estimate falls far below them), real/generated interpolates, and refine()'s real_images."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from refinement import RefineConfig, RefineConfigError, k_eff_for, refine
from refinement.costs import cost_position
from refinement.lipschitz import LipschitzProbe, gradient_norms, interpolates, k_eff_in_cost_space

from refine_toys import Identity, LinearCritic, LinearMap

PIXELS, LATENT = 784, 100


def _linear_pair():
    """G(z) = W z (784 x 100), D(x) = a.x: image-space constant ||a||, latent-space constant ||W^T a||."""
    w = torch.randn(PIXELS, LATENT, generator=torch.Generator().manual_seed(6)) / 10
    a = torch.randn(PIXELS, generator=torch.Generator().manual_seed(5))
    return LinearMap(w), LinearCritic(a), float(a.norm()), float((w.T @ a).norm())


def _k(choice: str, method: str, g, d, **kw) -> float:
    return k_eff_in_cost_space(RefineConfig(method=method, k_eff=choice), g, d, latent_dim=LATENT,
                               latent_prior="normal", seed=1, **kw)


@pytest.mark.parametrize("method", ["target", "latent-image"])
def test_gradient_gives_the_linear_critics_norm_in_image_space(method):
    g, d, norm_a, _ = _linear_pair()
    real = torch.rand(500, PIXELS, generator=torch.Generator().manual_seed(7)) * 2 - 1
    for reals in (real, None):
        assert _k("gradient", method, g, d, real_images=reals) == pytest.approx(norm_a, rel=0.01)
    # Tanaka's 100-pair estimate is a lower bound far below it in 784-d: measured 0.106 ||a|| (and
    # 0.091 for mean-of-max, whose expectation is that of one maximum)
    assert _k("estimate", method, g, d) / norm_a == pytest.approx(0.106, abs=0.002)
    assert _k("mean-of-max", method, g, d) / norm_a == pytest.approx(0.091, abs=0.002)


def test_gradient_gives_the_latent_constant_of_d_after_g():
    g, d, _, norm_wta = _linear_pair()
    assert _k("gradient", "latent", g, d) == pytest.approx(norm_wta, rel=0.01)
    assert _k("estimate", "latent", g, d) / norm_wta == pytest.approx(0.287, abs=0.002)  # 100-d: 0.29 of it
    # the same through refinement.refiners.k_eff_for (no real images there)
    cfg = RefineConfig(method="latent", k_eff="gradient")
    assert k_eff_for(cfg, g, d, latent_dim=LATENT, latent_prior="uniform") == pytest.approx(norm_wta, rel=0.01)


class HalfSquaredNorm(nn.Module):
    """D(x) = ||x||^2 / 2: ||grad D(x)|| = ||x||."""

    def forward(self, x):
        return 0.5 * (x.flatten(1) ** 2).sum(1)


def test_image_space_interpolates_reach_toward_the_real_samples():
    # generated points z ~ N(0, I_2) (norm < 4); real points at norm 100: the interpolates e G(z) + (1-e) x_real
    # carry the gradient norm toward 100, while without real images they stay among generated points
    real = torch.tensor([[100.0, 0.0], [0.0, -100.0]])
    with_real = _k_2d(real)
    without = _k_2d(None)
    assert 90 < with_real < 100 and 1.5 < without < 4.5


def _k_2d(real):
    return k_eff_in_cost_space(RefineConfig(method="target", k_eff="gradient", k_eff_pairs=200), Identity(),
                               HalfSquaredNorm(), latent_dim=2, latent_prior="normal", seed=0, real_images=real)


def test_gradient_norms_and_interpolates_golden():
    x = torch.tensor([[3.0, 4.0], [0.0, -2.0]])
    assert torch.allclose(gradient_norms(lambda p: HalfSquaredNorm()(p), x), torch.tensor([5.0, 2.0]))
    p, q = torch.zeros(1000, 3), torch.ones(1000, 3)
    mid = interpolates(p, q, torch.Generator().manual_seed(0))
    assert bool(((mid >= 0) & (mid <= 1)).all()) and bool((mid == mid[:, :1]).all())  # one weight per row
    assert float(mid.mean()) == pytest.approx(0.5, abs=0.03)


def test_gradient_has_no_embedding_space():
    with pytest.raises(RefineConfigError, match="k_eff 'gradient' needs an image or latent cost space.*"
                                                "estimate, mean-of-max, one"):
        RefineConfig(method="embedded-target", k_eff="gradient")
    # a probe on an embedding position refuses too (e.g. built by hand)
    position = cost_position("embedded-latent", Identity(), Identity())
    probe = LipschitzProbe(Identity(), LinearCritic(torch.ones(2)), position, lambda n: torch.randn(n, 2))
    with pytest.raises(ValueError, match="needs an image or latent cost space"):
        probe.gradient_norms(4)


def test_real_images_are_checked():
    g, d, _, _ = _linear_pair()
    with pytest.raises(ValueError, match="real images must be floats"):
        _k("gradient", "target", g, d, real_images=torch.zeros(5, PIXELS, dtype=torch.uint8))
    with pytest.raises(ValueError, match="differ in shape"):
        _k("gradient", "target", g, d, real_images=torch.zeros(5, 1, 28, 28))


def test_refine_passes_real_images_to_the_gradient_estimate():
    cfg = RefineConfig(method="target", k_eff="gradient", steps=1, clip_images=False)
    real = torch.tensor([[100.0, 0.0], [0.0, -100.0]])
    kw = dict(latent_dim=2, latent_prior="normal", n=8, seed=4)
    with_real = refine(Identity(), HalfSquaredNorm(), cfg, real_images=real, **kw)
    without = refine(Identity(), HalfSquaredNorm(), cfg, **kw)
    expect = k_eff_in_cost_space(cfg, Identity(), HalfSquaredNorm(), latent_dim=2, latent_prior="normal", seed=5,
                                 real_images=real)  # refine draws K_eff's stream with seed + 1
    assert with_real.k_eff == expect and with_real.k_eff > 10 * without.k_eff
    assert list(with_real.trajectory["k_eff"]) == [expect, expect]
