"""The generator's weight average (gan_models.ema): the ramped decay, the update rule on closed-form cases,
the trainer keeping it step by step, sampling from it by default, checkpoints and load_models."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from gan_models import ConfigError, TrainConfig, Trainer, load_models, train_gan
from gan_models.ema import ema_copy, ema_decay_at, update_ema_


def test_decay_ramps_from_two_elevenths_and_is_capped():
    assert ema_decay_at(0.999, 1) == pytest.approx(2 / 11)
    assert ema_decay_at(0.999, 100) == pytest.approx(101 / 110)
    assert ema_decay_at(0.999, 1000) == pytest.approx(1001 / 1010)
    assert ema_decay_at(0.999, 10_000) == 0.999  # (1 + t) / (10 + t) = 0.9991 > β: capped
    assert ema_decay_at(0.5, 3) == pytest.approx(4 / 13)  # 0.31 < β: still on the ramp
    assert ema_decay_at(0.5, 20) == 0.5  # 21 / 30 = 0.7 > β: capped


def test_update_is_the_convex_combination_and_copies_integer_buffers():
    model = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))
    average = ema_copy(model)
    with torch.no_grad():
        for p in average.parameters():
            p.fill_(1.0)
        for p in model.parameters():
            p.fill_(3.0)
        model[1].running_mean.fill_(5.0)
        model[1].num_batches_tracked.fill_(7)
    update_ema_(average, model, 0.75)
    # 0.75 * 1 + 0.25 * 3 = 1.5 for every weight; running mean 0.75 * 0 + 0.25 * 5; the batch counter copied
    assert all(torch.equal(p, torch.full_like(p, 1.5)) for p in average.parameters())
    assert torch.equal(average[1].running_mean, torch.full((2,), 1.25))
    assert int(average[1].num_batches_tracked) == 7
    assert not any(p.requires_grad for p in average.parameters()) and not average.training


def test_trainer_keeps_the_average_of_every_step(mnist_train):
    cfg = TrainConfig(steps=4, batch_size=16, batch_norm=True, ema_decay=0.9, seed=1)
    trainer = Trainer(cfg, mnist_train.images[:256])
    expected = [p.detach().clone() for p in trainer.G.parameters()]  # θ_ema starts as G's initial weights
    for t in range(1, cfg.steps + 1):
        trainer.train_step()
        beta = min(0.9, (1 + t) / (10 + t))
        expected = [beta * e + (1 - beta) * p.detach() for e, p in zip(expected, trainer.G.parameters(), strict=True)]
    for e, p in zip(expected, trainer.G_ema.parameters(), strict=True):
        torch.testing.assert_close(p, e, rtol=0, atol=1e-6)
    assert not torch.equal(next(trainer.G_ema.parameters()), next(trainer.G.parameters()))


def test_samples_come_from_the_average_unless_raw(mnist_train):
    trainer = train_gan(TrainConfig(steps=3, batch_size=16, ema_decay=0.99), images_u8=mnist_train.images[:256]).trainer
    assert trainer.generator is trainer.G_ema
    z = torch.Generator().manual_seed(0)
    latents = torch.randn(8, 100, generator=z)
    with torch.no_grad():
        assert torch.equal(trainer.sample(8, seed=0), trainer.G_ema.eval()(latents))
        assert torch.equal(trainer.sample(8, seed=0, raw=True), trainer.G.eval()(latents))
    plain = Trainer(TrainConfig(steps=1, batch_size=16), mnist_train.images[:64])
    assert plain.G_ema is None and plain.generator is plain.G


def test_checkpoint_keeps_the_average_and_load_models_samples_from_it(mnist_train, tmp_path):
    cfg = TrainConfig(steps=3, batch_size=16, ema_decay=0.99)
    trainer = train_gan(cfg, images_u8=mnist_train.images[:256], checkpoint_path=tmp_path / "c.pt").trainer
    averaged, raw = load_models(tmp_path / "c.pt"), load_models(tmp_path / "c.pt", raw=True)
    assert averaged.averaged and not raw.averaged
    for a, b in ((averaged.generator, trainer.G_ema), (raw.generator, trainer.G)):
        assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True))


@pytest.mark.parametrize("bad", [1.0, -0.1, math.nan, True])
def test_decay_outside_zero_one_is_refused(bad):
    with pytest.raises(ConfigError, match=r"ema_decay must be in \[0, 1\)"):
        TrainConfig(ema_decay=bad)
