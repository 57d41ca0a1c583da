import pytest
import torch

from refinement import COST_SPACES, METHODS, cost_position, transport_cost
from refinement.costs import CostPosition

from refine_toys import Identity, LinearMap


def test_l2_and_squared_l2_golden_values():
    a = torch.tensor([[3.0, 4.0], [1.0, 1.0]])
    b = torch.tensor([[0.0, 0.0], [1.0, 1.0]])
    assert torch.allclose(transport_cost(a, b, norm="l2", delta=0.0), torch.tensor([5.0, 0.0]))
    assert torch.allclose(transport_cost(a, b, norm="squared-l2", delta=0.0), torch.tensor([25.0, 0.0]))
    # delta is added to every coordinate: ||(0.5, 0.5)|| at a == b
    assert torch.allclose(transport_cost(b, b, norm="l2", delta=0.5), torch.tensor([0.5**0.5] * 2))
    # differentiable at a == b thanks to delta: gradient is the unit vector of (delta, ..., delta)
    x = b.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(transport_cost(x, b, norm="l2", delta=1e-3).sum(), x)
    assert torch.allclose(g, torch.full_like(g, 2**-0.5))


def test_images_are_flattened_per_sample():
    a = torch.zeros(3, 1, 4, 4)
    a[1] = 1.0
    assert torch.allclose(transport_cost(a, torch.zeros_like(a), norm="l2", delta=0.0), torch.tensor([0.0, 4.0, 0.0]))


def test_unknown_norm():
    with pytest.raises(ValueError, match="valid choices: l2, squared-l2"):
        transport_cost(torch.zeros(1, 2), torch.zeros(1, 2), norm="l1", delta=0.0)


def test_every_dot_method_has_a_cost_space():
    assert COST_SPACES == {name: m.cost_space for name, m in METHODS.items() if m.dot}
    with pytest.raises(ValueError, match="method 'ddls' has no transport cost; valid choices: target, latent"):
        cost_position("ddls", Identity(), None)
    g = LinearMap(torch.tensor([[2.0, 0.0], [0.0, 3.0]]))
    e = LinearMap(torch.tensor([[1.0, 1.0]]))
    z = torch.tensor([[1.0, 1.0]])
    assert torch.equal(cost_position("latent", g, None)(z), z)
    assert torch.allclose(cost_position("target", g, None)(z), torch.tensor([[2.0, 3.0]]))
    assert torch.allclose(cost_position("latent-image", g, None)(z), torch.tensor([[2.0, 3.0]]))
    assert torch.allclose(cost_position("embedded-latent", g, e)(z), torch.tensor([[5.0]]))
    with pytest.raises(ValueError, match="needs an embedding"):
        cost_position("embedded-target", Identity(), None)


def test_point_of_an_image_in_each_space():
    g = LinearMap(torch.tensor([[2.0, 0.0], [0.0, 3.0]]))
    e = LinearMap(torch.tensor([[1.0, 1.0]]))
    z = torch.tensor([[1.0, 1.0]])
    x = g(z)
    for space, expected in (("image", x), ("embedding", e(x)), ("latent", z)):
        position = CostPosition(space, g, e)
        assert torch.allclose(position.point(x, z=z), expected)
        assert torch.allclose(position(z), expected)  # the same point from the latent
    with pytest.raises(ValueError, match="needs the latent z"):
        CostPosition("latent", g, e).point(x)
