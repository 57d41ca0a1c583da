"""DDLS: Langevin on E(z) = ||z||^2/2 - d(G(z)), with closed-form cases."""

import pytest
import torch

from refinement import LangevinRefiner, RefineConfig, refine

from refine_toys import FlatCritic, Identity, LinearCritic


def _run(refiner, z, steps, noise=None):
    state = refiner.start(z)
    for t in range(1, steps + 1):
        refiner.step(state, t, torch.zeros_like(z) if noise is None else noise[t - 1])
    return state


def test_zero_noise_flat_critic_descends_the_prior_energy_in_closed_form():
    # grad E = z, so z_k = (1 - eps/2)^k z_0
    z0 = torch.randn(10, 5, generator=torch.Generator().manual_seed(0))
    cfg = RefineConfig(method="ddls", ddls_step_size=0.1, ddls_noise_scale=0.0, steps=30)
    state = _run(LangevinRefiner(Identity(), FlatCritic(), cfg, latent_prior="normal"), z0, 30)
    assert torch.allclose(state.v, (1 - 0.05) ** 30 * z0, rtol=1e-5)
    # refine() runs the same chain (the noise it draws is multiplied by noise_scale = 0)
    result = refine(Identity(), FlatCritic(), cfg, latent_dim=5, latent_prior="normal", n=10, latents=z0,
                    score_steps=(0, 30))
    assert torch.allclose(result.samples, (1 - 0.05) ** 30 * z0, rtol=1e-5)
    energy = 0.5 * (result.samples**2).sum(1)
    assert bool((energy < 0.5 * (z0**2).sum(1)).all())


def test_critic_gradient_enters_with_half_the_step():
    # E = ||z||^2/2 - a.z: from z = 0 with no noise, z_1 = (eps/2) a; fixed point z* = a
    a = torch.tensor([0.5, -1.0])
    cfg = RefineConfig(method="ddls", ddls_step_size=0.2, ddls_noise_scale=0.0)
    ref = LangevinRefiner(Identity(), LinearCritic(a), cfg, latent_prior="normal")
    assert torch.allclose(_run(ref, torch.zeros(3, 2), 1).v, 0.1 * a.expand(3, 2))
    assert torch.allclose(_run(ref, torch.zeros(3, 2), 400).v, a.expand(3, 2), atol=1e-5)


def test_noise_gives_the_discrete_ou_stationary_variance():
    # flat critic: z' = (1 - eps/2) z + sqrt(eps) n  has stationary variance 1 / (1 - eps/4) per coordinate
    eps = 0.5
    cfg = RefineConfig(method="ddls", ddls_step_size=eps, ddls_noise_scale=1.0, steps=60)
    result = refine(Identity(), FlatCritic(), cfg, latent_dim=2, latent_prior="normal", n=20000,
                    latents=torch.zeros(20000, 2), score_steps=(60,), batch_size=5000)
    var = result.samples.var(dim=0)
    assert torch.allclose(var, torch.full((2,), 1 / (1 - eps / 4)), rtol=0.04)
    assert abs(float(result.samples.mean())) < 0.03


def test_uniform_prior_keeps_z_in_the_cube():
    cfg = RefineConfig(method="ddls", ddls_step_size=0.5, ddls_noise_scale=1.0, steps=20)
    z = torch.rand(200, 3, generator=torch.Generator().manual_seed(0)) * 2 - 1
    result = refine(Identity(), LinearCritic(torch.tensor([5.0, 0.0, 0.0])), cfg, latent_dim=3, latent_prior="uniform",
                    n=200, latents=z, score_steps=(20,))
    assert float(result.samples.abs().max()) <= 1.0
    assert float(result.samples[:, 0].mean()) > 0.8  # pushed toward the critic's favoured wall


def test_noise_is_required_and_method_checked():
    ref = LangevinRefiner(Identity(), FlatCritic(), RefineConfig(method="ddls"), latent_prior="normal")
    with pytest.raises(ValueError, match="noise"):
        ref.step(ref.start(torch.zeros(1, 2)), 1)
    with pytest.raises(ValueError, match="runs a Langevin method, got 'latent' \\(a dot method\\)"):
        LangevinRefiner(Identity(), FlatCritic(), RefineConfig(method="latent"), latent_prior="normal")
    with pytest.raises(ValueError, match="valid choices: normal, uniform"):
        LangevinRefiner(Identity(), FlatCritic(), RefineConfig(method="ddls"), latent_prior="cauchy")
