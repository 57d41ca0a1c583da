"""Every loss x both architectures trains on real MNIST; every loss's declared needs are what the trainer does;
determinism; resume == uninterrupted; divergence."""

import math

import pytest
import torch

from gan_models import ARCHITECTURES, LOSSES, DivergenceError, TrainConfig, Trainer, get_loss, load_models, train_gan
from gan_models import losses as losses_module
from gan_models import trainer as trainer_module
from gan_models.networks import Discriminator, SANHead


def _params(module):
    return [p.detach().clone() for p in module.parameters()]


@pytest.mark.parametrize("architecture", list(ARCHITECTURES))
@pytest.mark.parametrize("loss", list(LOSSES))
def test_each_loss_and_architecture_trains(loss, architecture, mnist_train):
    spec = get_loss(loss).needs
    extra = {"n_critic": 2} if spec.clips_weights or spec.gradient_penalty else {}  # critic losses
    cfg = TrainConfig(loss=loss, architecture=architecture, steps=3, batch_size=16, spectral_norm=loss == "hinge",
                      dropout=0.3 if loss == "bce" else 0.0, batch_norm=loss == "bce", **extra)
    trainer = Trainer(cfg, mnist_train.images[:512])
    g0, d0 = _params(trainer.G), _params(trainer.D)
    for _ in range(cfg.steps):
        losses = trainer.train_step()
        assert math.isfinite(losses["loss_d"]) and math.isfinite(losses["loss_g"])
    assert any(not torch.equal(a, b) for a, b in zip(g0, _params(trainer.G), strict=True))
    assert any(not torch.equal(a, b) for a, b in zip(d0, _params(trainer.D), strict=True))
    if spec.clips_weights:
        assert max(p.abs().max().item() for p in trainer.D.parameters()) <= cfg.clip_value + 1e-12
    x = trainer.sample(8)
    assert x.shape == (8, 1, 28, 28) and x.min() >= -1 and x.max() <= 1


class _Spy:
    """Wraps a function and counts its calls."""

    def __init__(self, fn):
        self.fn, self.calls = fn, 0

    def __call__(self, *args, **kwargs):
        self.calls += 1
        return self.fn(*args, **kwargs)


@pytest.mark.parametrize("architecture", list(ARCHITECTURES))
@pytest.mark.parametrize("loss", list(LOSSES))
def test_each_loss_gets_what_it_declares_and_nothing_else(loss, architecture, monkeypatch):
    """The contract of the LOSSES registry: 2 steps on tiny random data; weight clipping after every D step iff
    the loss declares it, a gradient penalty term in every D loss iff declared, a SAN head (and its split) iff
    declared; the config holds exactly the options the loss declares, and a checkpoint rebuilds the same D."""
    spec = get_loss(loss).needs
    clip = _Spy(losses_module.clip_weights_)
    penalty = _Spy(losses_module.gradient_penalty)
    split = _Spy(Discriminator.san_split)
    monkeypatch.setattr(trainer_module, "clip_weights_", clip)
    monkeypatch.setattr(losses_module, "gradient_penalty", penalty)
    monkeypatch.setattr(Discriminator, "san_split", lambda self, x: split(self, x))
    cfg = TrainConfig(loss=loss, architecture=architecture, width=0.25, n_critic=2, steps=2, batch_size=8)
    images = torch.randint(0, 256, (32, 28, 28), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    trainer = Trainer(cfg, images)
    for _ in range(cfg.steps):
        trainer.train_step()
    d_steps = cfg.steps * cfg.n_critic
    assert clip.calls == (d_steps if spec.clips_weights else 0)
    bound = max(p.abs().max().item() for p in trainer.D.parameters())
    assert (bound <= 0.01 + 1e-12) == spec.clips_weights  # the default clip value; initial weights exceed it
    assert penalty.calls == (d_steps if spec.gradient_penalty else 0)
    assert isinstance(trainer.D.head, SANHead) == spec.san_head
    assert split.calls == (d_steps if spec.san_head else 0)
    # the config's conditional options are the ones the loss declares (set to their defaults here)
    present = {name for name in ("lambda_gp", "clip_value", "san_base") if getattr(cfg, name) is not None}
    assert present == set(spec.options)
    assert cfg.network.san == spec.san_head  # what load_models rebuilds D from


def test_uniform_prior_and_width_multiplier(mnist_train):
    cfg = TrainConfig(latent_prior="uniform", width=0.5, steps=2, batch_size=8)
    trainer = Trainer(cfg, mnist_train.images[:64])
    trainer.train_step()
    # U[-1, 1]^d: inside the cube, mean 0 and variance 1/3 (a normal prior's would be 1, with tails past 1)
    z = trainer._z(20_000)
    assert z.shape == (20_000, 100) and z.min() >= -1 and z.max() <= 1
    assert abs(float(z.mean())) < 0.01 and float(z.var()) == pytest.approx(1 / 3, rel=0.02)
    # width 0.5: every hidden layer of both networks at half the course's width
    linear = [m.out_features for m in trainer.G.modules() if isinstance(m, torch.nn.Linear)]
    assert linear == [128, 256, 512, 784]
    assert [m.out_features for m in trainer.D.features if isinstance(m, torch.nn.Linear)] == [512, 256, 128]


def test_same_seed_gives_bit_identical_weights(mnist_train):
    cfg = TrainConfig(loss="wgan-gp", steps=4, batch_size=16, dropout=0.2, seed=7)
    a = train_gan(cfg, images_u8=mnist_train.images[:1000]).trainer
    b = train_gan(cfg, images_u8=mnist_train.images[:1000]).trainer
    c = train_gan(cfg.replace(seed=8), images_u8=mnist_train.images[:1000]).trainer
    for (k, va), vb in zip(a.G.state_dict().items(), b.G.state_dict().values(), strict=True):
        assert torch.equal(va, vb), k
    for va, vb in zip(a.D.state_dict().values(), b.D.state_dict().values(), strict=True):
        assert torch.equal(va, vb)
    assert a.history == b.history
    assert not torch.equal(a.G.net[0].weight, c.G.net[0].weight)


@pytest.mark.parametrize("loss, ema_decay", [("bce", 0.0), ("wgan-gp", 0.9)])
def test_resume_matches_an_uninterrupted_run(loss, ema_decay, mnist_train, tmp_path):
    images = mnist_train.images[:300]  # small enough that the run crosses an epoch boundary
    cfg = TrainConfig(loss=loss, steps=12, batch_size=32, dropout=0.3, seed=3, batch_norm=True, ema_decay=ema_decay)
    whole = train_gan(cfg, images_u8=images).trainer

    ckpt = tmp_path / "ckpt.pt"
    first = train_gan(cfg, images_u8=images, checkpoint_path=ckpt, callback=lambda tr: tr.step >= 5,
                      callback_steps=range(1, 13))
    assert first.stopped_early and first.trainer.step == 5
    resumed = train_gan(cfg, images_u8=images, checkpoint_path=ckpt, resume=True).trainer
    assert resumed.step == 12
    pairs = [(whole.G, resumed.G), (whole.D, resumed.D)]
    if ema_decay:  # the average resumes exactly too (weights and batch norm's running statistics)
        pairs.append((whole.G_ema, resumed.G_ema))
    for a, b in pairs:
        for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
            assert torch.equal(va, vb), k
    assert whole.history == resumed.history
    assert whole.opt_g.state_dict()["state"][0]["step"] == resumed.opt_g.state_dict()["state"][0]["step"]


def test_callback_runs_at_the_given_steps_and_after_the_last(mnist_train):
    seen = []
    train_gan(TrainConfig(steps=7, batch_size=8), images_u8=mnist_train.images[:100],
              callback=lambda tr: seen.append(tr.step), callback_steps={3, 5, 9})
    assert seen == [3, 5, 7]


def test_divergence_names_the_step(mnist_train):
    trainer = Trainer(TrainConfig(steps=5, batch_size=8), mnist_train.images[:64])
    trainer.train_step()
    with torch.no_grad():
        trainer.D.head.weight.fill_(float("nan"))
    trainer.train_step()  # no host sync in the step: the NaN is found when the losses are read
    trainer.train_step()
    with pytest.raises(DivergenceError, match="training diverged at step 2: discriminator loss is nan"):
        trainer.sync()


def test_checkpoint_loads_with_weights_only_and_rebuilds_networks(mnist_train, tmp_path):
    cfg = TrainConfig(architecture="dcgan", loss="san", steps=2, batch_size=8, spectral_norm=True)
    result = train_gan(cfg, images_u8=mnist_train.images[:64], checkpoint_path=tmp_path / "c.pt")
    loaded = load_models(tmp_path / "c.pt")
    assert loaded.config == cfg and loaded.step == 2
    z = torch.randn(4, 100)
    result.trainer.G.eval()
    assert torch.equal(loaded.generator(z), result.trainer.G(z))
    assert not loaded.generator.training
