"""DOT step rules on problems with known answers."""

import pytest
import torch

from refinement import (
    METHODS,
    OBJECTIVES,
    REFINERS,
    DotRefiner,
    LangevinRefiner,
    RefineConfig,
    cost_position,
    make_refiner,
    refine,
)

from refine_toys import ConeCritic, Identity, LinearCritic, LinearMap


def _run(refiner, z, steps):
    state = refiner.start(z)
    for t in range(1, steps + 1):
        refiner.step(state, t)
    return state


def test_every_method_has_a_refiner_of_its_declared_kind():
    assert set(REFINERS) == set(METHODS)
    assert OBJECTIVES == {name: m.objective for name, m in METHODS.items() if m.dot}
    embed = LinearMap(torch.eye(2))
    for name, m in METHODS.items():
        refiner = make_refiner(RefineConfig(method=name), Identity(), Identity(), latent_prior="normal", k_eff=1.0,
                               embedder=embed)
        assert isinstance(refiner, DotRefiner) == m.dot and isinstance(refiner, LangevinRefiner) == (not m.dot)


class ZeroCritic(torch.nn.Module):
    def forward(self, x):
        return x.flatten(1).sum(dim=1) * 0.0


@pytest.mark.parametrize("name", [n for n, m in METHODS.items() if m.dot])
def test_every_dot_method_moves_and_measures_what_it_declares(name):
    """The contract of the METHODS registry for DOT: v_0 is z_y or G(z_y) as declared by ``moves``; the anchor
    is the start's point in the declared cost space; the objective is that space's cost minus D / K_eff; and one
    step changes only what the method moves."""
    m = METHODS[name]
    g = LinearMap(torch.tensor([[2.0, 0.0], [0.0, 3.0], [1.0, -1.0]]))  # G: z [B, 2] -> x [B, 3]
    e = LinearMap(torch.tensor([[1.0, 1.0, 0.0]]))  # E: x [B, 3] -> [B, 1]
    a = torch.tensor([0.5, -0.25, 1.0])
    z = torch.randn(6, 2, generator=torch.Generator().manual_seed(0))
    cfg = RefineConfig(method=name, optimizer="sgd", lr=0.1, projection="none", clip_images=False, norm="squared-l2",
                       delta=0.0)
    refiner = make_refiner(cfg, g, LinearCritic(a), latent_prior="normal", k_eff=2.0, embedder=e)
    state = refiner.start(z)
    with torch.no_grad():
        y = g(z)
        assert torch.equal(state.v, z if m.moves == "latent" else y)
        assert torch.allclose(state.anchor, cost_position(name, g, e)(z))
        assert state.v.data_ptr() != state.anchor.data_ptr() and state.anchor.data_ptr() != z.data_ptr()
        # H(v) = c(P(v) - P(v_0)) - D(x(v)) / K_eff, at a moved point v
        v = state.v + 0.5
        x = g(v) if m.moves == "latent" else v
        p = {"latent": v, "image": x, "embedding": e(x)}[m.cost_space]
        expected = ((p - state.anchor) ** 2).flatten(1).sum(dim=1) - x @ a / 2.0
        assert torch.allclose(refiner.objective(v, state.anchor), expected)
        free = make_refiner(cfg, g, ZeroCritic(), latent_prior="normal", k_eff=2.0, embedder=e)
        assert torch.allclose(free.objective(v, state.anchor), ((p - state.anchor) ** 2).flatten(1).sum(dim=1))
    v_0 = state.v.clone()
    refiner.step(state, 1)
    assert state.v.shape == v_0.shape and not torch.equal(state.v, v_0)
    with torch.no_grad():
        assert torch.allclose(refiner.images(state), g(state.v) if m.moves == "latent" else state.v)


def test_target_squared_l2_linear_critic_reaches_the_closed_form_minimiser():
    # H(x) = ||x - y + delta||^2 - a.x / K  is minimised at  x* = y - delta + a / (2K)
    a = torch.tensor([0.6, 0.8])
    y = torch.randn(32, 2, generator=torch.Generator().manual_seed(0))
    cfg = RefineConfig(method="target", norm="squared-l2", optimizer="sgd", lr=0.1, delta=0.01, k_eff="one",
                       clip_images=False, steps=150)
    state = _run(make_refiner(cfg, Identity(), LinearCritic(a), latent_prior="normal", k_eff=0.5), y, cfg.steps)
    assert torch.allclose(state.v, y - 0.01 + a / (2 * 0.5), atol=1e-5)


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_target_l2_moves_toward_higher_d_and_stays_near_the_start(optimizer):
    # D(x) = -||x - c|| is 1-Lipschitz; with K_eff <= 1 the objective ||x - y|| + ||x - c|| / K_eff
    # decreases toward c along the segment [y, c]: D must rise for every sample, and no sample
    # may go further than c (the triangle inequality keeps it on the segment, up to the step size)
    c = torch.tensor([3.0, 1.0])
    cfg = RefineConfig(method="target", steps=50, lr=0.05, optimizer=optimizer, clip_images=False)
    result = refine(Identity(), ConeCritic(c), cfg, latent_dim=2, latent_prior="normal", n=400, seed=0,
                    score_steps=(0, 10, 50), batch_size=128)
    y = torch.randn(400, 2, generator=torch.Generator().manual_seed(0))
    x = result.samples
    d = ConeCritic(c)
    assert 0.98 < result.k_eff <= 1.0
    assert bool((d(x) > d(y) + 0.01).all())
    moved = (x - y).norm(dim=1)
    assert bool((moved <= (y - c).norm(dim=1)).all())
    assert float(moved.max()) < 0.5  # 50 steps of at most ~lr each, not a jump to c
    off_segment = moved + (x - c).norm(dim=1) - (y - c).norm(dim=1)
    assert float(off_segment.max()) < 0.05
    assert list(result.trajectory["step"]) == [0, 10, 50]
    assert result.trajectory["d_mean"].is_monotonic_increasing


def test_adam_first_step_is_lr_times_sign_of_the_gradient():
    # Adam(beta1=0, beta2=0.9) at t=1: s = 0.1 g^2, s/(1-0.9) = g^2, step = lr * g / (|g| + 1e-8)
    a = torch.tensor([0.6, -0.8])
    y = torch.zeros(4, 2)
    cfg = RefineConfig(method="target", optimizer="adam", lr=0.01, delta=0.0, norm="squared-l2", clip_images=False)
    state = _run(make_refiner(cfg, Identity(), LinearCritic(a), latent_prior="normal", k_eff=1.0), y, 1)
    # gradient at x = y: 2 * 0 - a  ->  step = -lr * sign(-a) = lr * sign(a)
    assert torch.allclose(state.v, 0.01 * torch.sign(a).expand(4, 2), atol=1e-7)


@pytest.mark.parametrize("method", ["latent", "latent-image", "embedded-latent"])
def test_normal_prior_exact_projection_keeps_the_norm(method):
    # G = identity in 16-D, D = a.z: the critic's gradient has a first-order radial part; the exact
    # projection removes it from the gradient and retracts each step onto the sphere ||z|| = ||z_0||
    a = torch.randn(16, generator=torch.Generator().manual_seed(2))
    a = a / a.norm()
    embed = LinearMap(torch.eye(16) + 0.1 * torch.randn(16, 16, generator=torch.Generator().manual_seed(3)))
    z = torch.randn(64, 16, generator=torch.Generator().manual_seed(1))
    norms = z.norm(dim=1)
    cfg = RefineConfig(method=method, optimizer="sgd", lr=0.05, steps=20, projection="exact", norm="squared-l2")
    refiner = make_refiner(cfg, Identity(), LinearCritic(a), latent_prior="normal", k_eff=1.0, embedder=embed)
    state = refiner.start(z)
    for t in range(1, 21):
        refiner.step(state, t)
        assert torch.allclose(state.v.norm(dim=1), norms, rtol=1e-6, atol=0)
    assert float((state.v - z).norm(dim=1).mean()) > 0.2  # it did move
    # without the projection the same run changes the norm at first order: by far more
    free = _run(make_refiner(cfg.replace(projection="none"), Identity(), LinearCritic(a), latent_prior="normal",
                             k_eff=1.0, embedder=embed), z, 20)
    assert float((free.v.norm(dim=1) - norms).abs().max()) > 10 * float((state.v.norm(dim=1) - norms).abs().max())


def test_uniform_prior_keeps_z_in_the_cube():
    torch.manual_seed(0)
    g_net = torch.nn.Linear(8, 4)
    z = torch.rand(50, 8, generator=torch.Generator().manual_seed(0)) * 2 - 1
    cfg = RefineConfig(method="latent", optimizer="sgd", lr=5.0, steps=10)
    state = _run(make_refiner(cfg, g_net, LinearCritic(torch.ones(4)), latent_prior="uniform", k_eff=0.1), z, 10)
    assert float(state.v.abs().max()) <= 1.0
    assert float((state.v.abs() == 1.0).float().mean()) > 0.2  # the large steps did hit the walls


def test_target_clips_images_to_the_data_range():
    y = torch.full((3, 1, 2, 2), 0.95)
    cfg = RefineConfig(method="target", optimizer="sgd", lr=1.0, steps=3, k_eff="one")
    critic = LinearCritic(torch.full((4,), 0.5))
    state = _run(make_refiner(cfg, Identity(), critic, latent_prior="normal", k_eff=0.1), y, 3)
    assert float(state.v.max()) == 1.0
    free = _run(make_refiner(cfg.replace(clip_images=False), Identity(), critic, latent_prior="normal", k_eff=0.1),
                y, 3)
    assert float(free.v.max()) > 1.0


def test_embedded_target_follows_the_embedding_cost():
    # E(x) = first coordinate only: moving x along the second coordinate costs nothing, so with
    # D(x) = x_2 the sample runs along x_2 while x_1 only feels delta
    embed = LinearMap(torch.tensor([[1.0, 0.0]]))
    y = torch.zeros(5, 2)
    cfg = RefineConfig(method="embedded-target", optimizer="sgd", lr=0.1, steps=10, clip_images=False, delta=0.0,
                       norm="squared-l2")
    state = _run(make_refiner(cfg, Identity(), LinearCritic(torch.tensor([0.0, 1.0])), latent_prior="normal",
                              k_eff=1.0, embedder=embed), y, 10)
    assert torch.allclose(state.v, torch.tensor([0.0, 1.0]).expand(5, 2), atol=1e-6)


def test_embedded_methods_need_an_embedder():
    with pytest.raises(ValueError, match="needs an embedding"):
        make_refiner(RefineConfig(method="embedded-latent"), Identity(), Identity(), latent_prior="normal", k_eff=1.0)
