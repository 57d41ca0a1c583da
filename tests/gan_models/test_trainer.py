"""Every loss x both architectures trains on real MNIST; determinism; resume == uninterrupted; divergence."""

import math

import pytest
import torch

from gan_models import ARCHITECTURES, LOSSES, DivergenceError, TrainConfig, Trainer, load_models, train_gan


def _params(module):
    return [p.detach().clone() for p in module.parameters()]


@pytest.mark.parametrize("architecture", list(ARCHITECTURES))
@pytest.mark.parametrize("loss", list(LOSSES))
def test_each_loss_and_architecture_trains(loss, architecture, mnist_train):
    extra = {"n_critic": 2} if loss in ("wgan", "wgan-gp") else {}
    cfg = TrainConfig(loss=loss, architecture=architecture, steps=3, batch_size=16, spectral_norm=loss == "hinge",
                      dropout=0.3 if loss == "bce" else 0.0, batch_norm=loss == "bce", **extra)
    trainer = Trainer(cfg, mnist_train.images[:512])
    g0, d0 = _params(trainer.G), _params(trainer.D)
    for _ in range(cfg.steps):
        losses = trainer.train_step()
        assert math.isfinite(losses["loss_d"]) and math.isfinite(losses["loss_g"])
    assert any(not torch.equal(a, b) for a, b in zip(g0, _params(trainer.G)))
    assert any(not torch.equal(a, b) for a, b in zip(d0, _params(trainer.D)))
    if loss == "wgan":
        assert max(p.abs().max().item() for p in trainer.D.parameters()) <= cfg.clip_value + 1e-12
    x = trainer.sample(8)
    assert x.shape == (8, 1, 28, 28) and x.min() >= -1 and x.max() <= 1


def test_uniform_prior_and_width_multiplier(mnist_train):
    cfg = TrainConfig(latent_prior="uniform", width=0.5, steps=2, batch_size=8)
    trainer = Trainer(cfg, mnist_train.images[:64])
    trainer.train_step()
    assert trainer.G.net[0].out_features == 128


def test_same_seed_gives_bit_identical_weights(mnist_train):
    cfg = TrainConfig(loss="wgan-gp", steps=4, batch_size=16, dropout=0.2, seed=7)
    a = train_gan(cfg, images_u8=mnist_train.images[:1000]).trainer
    b = train_gan(cfg, images_u8=mnist_train.images[:1000]).trainer
    c = train_gan(cfg.replace(seed=8), images_u8=mnist_train.images[:1000]).trainer
    for (k, va), vb in zip(a.G.state_dict().items(), b.G.state_dict().values()):
        assert torch.equal(va, vb), k
    for va, vb in zip(a.D.state_dict().values(), b.D.state_dict().values()):
        assert torch.equal(va, vb)
    assert a.history == b.history
    assert not torch.equal(a.G.net[0].weight, c.G.net[0].weight)


@pytest.mark.parametrize("loss", ["bce", "wgan-gp"])
def test_resume_matches_an_uninterrupted_run(loss, mnist_train, tmp_path):
    images = mnist_train.images[:300]  # small enough that the run crosses an epoch boundary
    cfg = TrainConfig(loss=loss, steps=12, batch_size=32, dropout=0.3, seed=3)
    whole = train_gan(cfg, images_u8=images).trainer

    ckpt = tmp_path / "ckpt.pt"
    first = train_gan(cfg, images_u8=images, checkpoint_path=ckpt, callback=lambda tr: tr.step >= 5, callback_every=1)
    assert first.stopped_early and first.trainer.step == 5
    resumed = train_gan(cfg, images_u8=images, checkpoint_path=ckpt, resume=True).trainer
    assert resumed.step == 12
    for va, vb in zip(whole.G.state_dict().values(), resumed.G.state_dict().values()):
        assert torch.equal(va, vb)
    for va, vb in zip(whole.D.state_dict().values(), resumed.D.state_dict().values()):
        assert torch.equal(va, vb)
    assert whole.history == resumed.history
    assert whole.opt_g.state_dict()["state"][0]["step"] == resumed.opt_g.state_dict()["state"][0]["step"]


def test_callback_runs_every_k_steps_and_after_the_last(mnist_train):
    seen = []
    train_gan(TrainConfig(steps=7, batch_size=8), images_u8=mnist_train.images[:100],
              callback=lambda tr: seen.append(tr.step), callback_every=3)
    assert seen == [3, 6, 7]


def test_divergence_names_the_step(mnist_train):
    trainer = Trainer(TrainConfig(steps=5, batch_size=8), mnist_train.images[:64])
    trainer.train_step()
    with torch.no_grad():
        trainer.D.head.weight.fill_(float("nan"))
    with pytest.raises(DivergenceError, match="training diverged at step 2: discriminator loss is nan"):
        trainer.train_step()


def test_checkpoint_loads_with_weights_only_and_rebuilds_networks(mnist_train, tmp_path):
    cfg = TrainConfig(architecture="dcgan", loss="san", steps=2, batch_size=8, spectral_norm=True)
    result = train_gan(cfg, images_u8=mnist_train.images[:64], checkpoint_path=tmp_path / "c.pt")
    loaded = load_models(tmp_path / "c.pt")
    assert loaded.config == cfg and loaded.step == 2
    z = torch.randn(4, 100)
    result.trainer.G.eval()
    assert torch.equal(loaded.generator(z), result.trainer.G(z))
    assert not loaded.generator.training
