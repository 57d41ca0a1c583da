import pytest
import torch

from refinement import constrain_latent, exact_projection, project_gradient, tanaka_projection


def test_exact_projection_is_tangent_golden():
    z = torch.tensor([[3.0, 4.0]])
    g = torch.tensor([[1.0, 0.0]])
    # g.z = 3, ||z||^2 = 25: g - 3/25 z = (1 - 0.36, -0.48)
    assert torch.allclose(exact_projection(g, z), torch.tensor([[0.64, -0.48]]))
    zs = torch.randn(64, 100, generator=torch.Generator().manual_seed(0))
    gs = torch.randn(64, 100, generator=torch.Generator().manual_seed(1))
    assert (exact_projection(gs, zs) * zs).sum(1).abs().max() < 1e-4


def test_tanaka_projection_divides_by_sqrt_d():
    z = torch.tensor([[3.0, 4.0, 0.0, 0.0]])
    g = torch.tensor([[1.0, 0.0, 0.0, 0.0]])
    # g.z = 3, sqrt(d) = 2: g - 1.5 z
    assert torch.allclose(tanaka_projection(g, z), torch.tensor([[-3.5, -6.0, 0.0, 0.0]]))
    # for ||z||^2 ~ d it removes ~sqrt(d) times the radial component, flipping its sign
    zs = torch.randn(256, 100, generator=torch.Generator().manual_seed(0))
    gs = zs.clone()  # purely radial gradients
    radial_after = (tanaka_projection(gs, zs) * zs).sum(1) / (gs * zs).sum(1)
    assert radial_after.mean() == pytest.approx(1 - 100 / 10, rel=0.05)


def test_prior_dispatch():
    z = torch.tensor([[3.0, 4.0]])
    g = torch.tensor([[1.0, 0.0]])
    assert torch.equal(project_gradient(g, z, prior="uniform", projection="exact"), g)
    assert torch.equal(project_gradient(g, z, prior="normal", projection="none"), g)
    with pytest.raises(ValueError, match="valid choices: exact, tanaka, none"):
        project_gradient(g, z, prior="normal", projection="radial")
    with pytest.raises(ValueError, match="valid choices: normal, uniform"):
        project_gradient(g, z, prior="laplace", projection="exact")


def test_uniform_prior_clips_into_the_cube():
    z = torch.tensor([[1.5, -0.2, -3.0]])
    assert torch.equal(constrain_latent(z, prior="uniform"), torch.tensor([[1.0, -0.2, -1.0]]))
    assert torch.equal(constrain_latent(z, prior="normal"), z)
