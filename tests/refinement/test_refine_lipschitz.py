import math

import pytest
import torch

from refinement import K_EFF_ESTIMATORS, RefineConfig, estimate_k_eff, k_eff_for, latent_ratio_sampler, pair_ratios

from refine_toys import ConeCritic, FlatCritic, Identity, LinearCritic, LinearMap


def _draw_normal(seed: int, dim: int):
    rng = torch.Generator().manual_seed(seed)
    return lambda n: torch.randn(n, dim, generator=rng)


@pytest.mark.parametrize("critic", [LinearCritic(torch.tensor([0.6, 0.8])), ConeCritic(torch.tensor([3.0, 1.0]))],
                         ids=["linear", "cone"])
def test_estimate_is_below_and_close_to_the_true_constant_in_2d(critic):
    # both critics are exactly 1-Lipschitz; a max over 100 random pairs cannot exceed 1 and, in 2-D,
    # some pair is nearly aligned with the gradient direction
    draw = latent_ratio_sampler(Identity(), critic, lambda z: z, _draw_normal(0, 2))
    k = estimate_k_eff("estimate", draw, pairs=100)
    assert 0.98 < k <= 1.0 + 1e-6


def test_linear_ratios_are_cosines():
    a = torch.tensor([0.6, 0.8])
    x = torch.tensor([[0.0, 0.0], [0.0, 0.0]])
    y = torch.tensor([[0.6, 0.8], [0.8, -0.6]])  # along a, orthogonal to a
    r = pair_ratios(LinearCritic(a), lambda v: v, x, y)
    assert torch.allclose(r, torch.tensor([1.0, 0.0]), atol=1e-6)


def test_latent_k_eff_of_a_linear_generator():
    # D(G(z)) = a . (W z) has latent Lipschitz constant ||W^T a|| = ||(1.2, 1.6) * (2, 0.5)|| = ||(1.2, 0.8)||
    w = torch.tensor([[2.0, 0.0], [0.0, 0.5]])
    a = torch.tensor([0.6, 0.8])
    true_k = float(torch.linalg.vector_norm(w.T @ a))
    config = RefineConfig(method="latent", k_eff="estimate")
    k = k_eff_for(config, LinearMap(w), LinearCritic(a), latent_dim=2, latent_prior="normal", seed=3)
    assert 0.97 * true_k < k <= true_k + 1e-5
    # in image space (target DOT) the same critic is 1-Lipschitz
    k_img = k_eff_for(config.replace(method="target"), LinearMap(w), LinearCritic(a), latent_dim=2,
                      latent_prior="normal", seed=3)
    assert 0.97 < k_img <= 1.0 + 1e-6


def test_mean_of_max_and_one_golden():
    """Golden values on fixed ratio batches, not a re-run of the estimator: the maxima are 1.0 and 0.5."""
    def fixed(batches):
        it = iter(batches)
        asked: list[int] = []

        def draw(n):
            asked.append(n)
            return next(it)
        return draw, asked

    draw, asked = fixed([torch.tensor([0.2, 1.0, 0.5]), torch.tensor([0.25, 0.5, 0.1])])
    assert estimate_k_eff("mean-of-max", draw, pairs=3, repeats=2) == pytest.approx(0.75)
    assert asked == [3, 3]  # repeats draws of `pairs` ratios each
    draw, asked = fixed([torch.tensor([0.2, 1.0, 0.5])])
    assert estimate_k_eff("estimate", draw, pairs=3) == pytest.approx(1.0) and asked == [3]
    # pairs from the origin to unit vectors at 0, 60, 90 degrees under D(x) = x_1: ratios |cos θ| = 1, 0.5, 0
    unit = torch.tensor([[1.0, 0.0], [0.5, math.sqrt(3) / 2], [0.0, 1.0]])
    ratios = pair_ratios(LinearCritic(torch.tensor([1.0, 0.0])), lambda v: v, torch.zeros(3, 2), unit)
    assert torch.allclose(ratios, torch.tensor([1.0, 0.5, 0.0]), atol=1e-6)
    assert estimate_k_eff("one", draw) == 1.0  # draws nothing


def test_unknown_choice_and_degenerate_critic():
    draw = latent_ratio_sampler(Identity(), FlatCritic(), lambda z: z, _draw_normal(0, 2))
    with pytest.raises(ValueError) as err:
        estimate_k_eff("median", draw)
    for name in K_EFF_ESTIMATORS:
        assert name in str(err.value)
    with pytest.raises(ValueError, match="constant or not finite"):
        estimate_k_eff("estimate", draw)


def test_ddls_has_no_k_eff():
    k = k_eff_for(RefineConfig(method="ddls"), Identity(), FlatCritic(), latent_dim=2, latent_prior="normal")
    assert math.isnan(k)
