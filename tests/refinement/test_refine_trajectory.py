"""refine(): batching, zero steps, scored steps and the trajectory table."""

import pytest
import torch

from refinement import METHODS, RefineConfig, refine, scored_steps

from refine_toys import LinearMap

# E: images [B, 1, 28, 28] -> [B, 6], a fixed random linear embedding
EMBED = torch.nn.Sequential(torch.nn.Flatten(),
                            LinearMap(torch.randn(6, 784, generator=torch.Generator().manual_seed(5)) / 28))


class _MeanScorer:
    """A transparent stand-in for evaluation.Evaluator: 'fid' = |mean pixel - 0.1| (known minimum)."""

    def __init__(self):
        self.calls = 0

    def score(self, samples):
        self.calls += 1
        m = float(samples.mean())
        return {"fid": abs(m - 0.1), "precision": m, "recall": -m, "evaluator": "mean"}


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
@pytest.mark.parametrize("method", list(METHODS))
def test_batched_equals_per_sample(small_gan, method, optimizer):
    g, d = small_gan
    cfg = RefineConfig(method=method, optimizer=optimizer, steps=4, lr=0.05, k_eff="estimate", k_eff_pairs=20)
    kw = dict(latent_dim=8, latent_prior="normal", n=7, seed=3, embedder=EMBED, score_steps=(0, 2, 4))
    whole = refine(g, d, cfg, batch_size=7, **kw)
    single = refine(g, d, cfg, batch_size=1, **kw)
    uneven = refine(g, d, cfg, batch_size=3, **kw)
    assert whole.samples.shape == (7, 1, 28, 28)
    assert torch.allclose(whole.samples, single.samples, atol=1e-5)
    assert torch.allclose(whole.samples, uneven.samples, atol=1e-5)
    assert not torch.allclose(whole.samples, whole.strip[0][:1].expand(7, -1, -1, -1))  # something moved
    # and each sample alone, with its own latent, ends where the batched run put it
    z = torch.randn(7, 8, generator=torch.Generator().manual_seed(3))
    if METHODS[method].kind != "langevin":  # its noise is drawn per step for the whole set: alone, other noise
        alone = refine(g, d, cfg, latent_dim=8, latent_prior="normal", n=1, seed=3, embedder=EMBED,
                       latents=z[4:5], score_steps=(4,))
        assert torch.allclose(alone.samples[0], whole.samples[4], atol=1e-5)


@pytest.mark.parametrize("method", list(METHODS))
def test_zero_steps_return_the_inputs_exactly(small_gan, method):
    g, d = small_gan
    z = torch.randn(5, 8, generator=torch.Generator().manual_seed(0))
    result = refine(g, d, RefineConfig(method=method, steps=0), latent_dim=8, latent_prior="normal", n=5,
                    embedder=EMBED, latents=z, batch_size=5)
    with torch.no_grad():
        assert torch.equal(result.samples, g(z))
    assert list(result.trajectory["step"]) == [0]
    assert result.trajectory["displacement"].iloc[0] == 0.0
    assert result.strip.shape == (1, 5, 1, 28, 28)


def test_rows_columns_and_best_step(small_gan):
    g, d = small_gan
    scorer = _MeanScorer()
    seen = []
    cfg = RefineConfig(method="target", steps=6, lr=0.05, k_eff="one")
    result = refine(g, d, cfg, latent_dim=8, latent_prior="normal", n=20, evaluator=scorer,
                    score_steps=(0, 1, 2, 5, 10, 20), on_score=seen.append, strip_size=4)
    assert list(result.trajectory["step"]) == [0, 1, 2, 5, 6]  # 10, 20 beyond the run; the final step added
    assert scorer.calls == 5 and [r["step"] for r in seen] == [0, 1, 2, 5, 6]
    assert list(result.trajectory.columns[:4]) == ["step", "fid", "precision", "recall"]
    assert {"k_eff", "d_mean", "displacement", "seconds", "evaluator"} <= set(result.trajectory.columns)
    assert result.k_eff == 1.0
    best = result.trajectory.loc[result.trajectory["fid"].idxmin(), "step"]
    assert result.best_step == best
    assert result.strip.shape == (5, 4, 1, 28, 28)
    assert result.strip_steps == [0, 1, 2, 5, 6]
    assert torch.equal(result.strip[-1], result.samples[:4])
    disp = result.trajectory["displacement"]
    assert disp.iloc[0] == 0.0 and bool((disp.iloc[1:] > 0).all())


def test_no_evaluator_has_no_best_step(small_gan):
    g, d = small_gan
    result = refine(g, d, RefineConfig(steps=1), latent_dim=8, latent_prior="normal", n=4)
    assert result.best_step is None and "fid" not in result.trajectory.columns


def test_networks_are_left_as_found(small_gan):
    g, d = small_gan
    g.train()
    refine(g, d, RefineConfig(steps=1), latent_dim=8, latent_prior="normal", n=4)
    assert g.training and not d.training
    assert all(p.requires_grad for p in g.parameters()) and all(p.grad is None for p in d.parameters())
    g.eval()


def test_bad_arguments(small_gan):
    g, d = small_gan
    kw = dict(latent_dim=8, latent_prior="normal")
    with pytest.raises(ValueError, match="n must be a positive integer"):
        refine(g, d, RefineConfig(), n=0, **kw)
    with pytest.raises(ValueError, match="batch_size"):
        refine(g, d, RefineConfig(), n=3, batch_size=0, **kw)
    with pytest.raises(ValueError, match="latents must have shape"):
        refine(g, d, RefineConfig(), n=3, latents=torch.zeros(2, 8), **kw)
    with pytest.raises(ValueError, match="score steps"):
        refine(g, d, RefineConfig(), n=3, score_steps=(0, -1), **kw)
    with pytest.raises(ValueError, match="valid choices: normal, uniform"):
        refine(g, d, RefineConfig(method="ddls", steps=1), n=3, latent_dim=8, latent_prior="gamma")


def test_scored_steps():
    assert scored_steps((0, 1, 2, 5, 10, 20), 20) == [0, 1, 2, 5, 10, 20]
    assert scored_steps((5, 1), 3) == [1, 3]
    assert scored_steps((), 0) == [0]


def test_unclipped_target_images_cannot_be_scored(small_gan):
    g, d = small_gan
    with pytest.raises(ValueError, match="clip_images=False"):
        refine(g, d, RefineConfig(method="target", clip_images=False), latent_dim=8, latent_prior="normal", n=4,
               evaluator=_MeanScorer())
