"""The trainer's device path, checked on the CPU: no host round-trip inside a step, --precision,
and checkpoints that resume on another kind of device. tests/test_gpu_path.py repeats the checks
that need a real GPU."""

from __future__ import annotations

import copy
import math

import pytest
import torch

from gan_models import TrainConfig
from gan_models.config import ConfigError
from gan_models.precision import precision_scope
from gan_models.trainer import Trainer, config_changes, train_gan

IMAGES = torch.randint(0, 256, (256, 28, 28), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))


def _fail_on_host_read(monkeypatch):
    """Every way a tensor's value reaches Python raises: a step that needs one fails the test."""
    def read(*_args, **_kwargs):
        raise AssertionError("a tensor was read back to the host inside the training step")

    for name in ("item", "tolist", "__float__", "__int__", "__bool__"):
        monkeypatch.setattr(torch.Tensor, name, read)


@pytest.mark.parametrize("loss", ["bce", "wgan", "wgan-gp", "san"])
def test_a_training_step_reads_nothing_back_until_sync(loss, monkeypatch):
    trainer = Trainer(TrainConfig(loss=loss, width=0.25, n_critic=2, batch_size=16, steps=4), IMAGES)
    with monkeypatch.context() as m:
        _fail_on_host_read(m)
        losses = [trainer.train_step() for _ in range(3)]
    assert all(isinstance(v, torch.Tensor) and v.dim() == 0 for step in losses for v in step.values())
    latest = trainer.sync()  # one read of all three steps
    assert trainer.history["step"] == [1, 2, 3]
    assert trainer.history["loss_d"] == [float(s["loss_d"]) for s in losses]
    assert latest == {"loss_d": float(losses[-1]["loss_d"]), "loss_g": float(losses[-1]["loss_g"])}


def test_bf16_autocasts_the_passes_and_keeps_weights_and_losses_float32():
    seen: list[torch.dtype] = []
    for precision in ("fp32", "bf16"):
        trainer = Trainer(TrainConfig(width=0.25, batch_size=16, steps=2, precision=precision), IMAGES)
        first = next(m for m in trainer.G.modules() if isinstance(m, torch.nn.Linear))
        handle = first.register_forward_hook(lambda _m, _i, out: seen.append(out.dtype))
        losses = trainer.train_step()
        handle.remove()
        assert all(p.dtype == torch.float32 for p in trainer.G.parameters())
        assert losses["loss_d"].dtype == torch.float32 and torch.isfinite(losses["loss_g"])
        assert trainer.sample(4).dtype == torch.float32
    assert seen[0] == torch.float32 and seen[-1] == torch.bfloat16


def test_tf32_on_a_cpu_computes_exactly_as_fp32():
    weights = []
    for precision in ("fp32", "tf32"):
        result = train_gan(TrainConfig(width=0.25, batch_size=16, steps=3, precision=precision), images_u8=IMAGES)
        weights.append([p.detach().clone() for p in result.trainer.G.parameters()])
    assert all(torch.equal(a, b) for a, b in zip(*weights, strict=True))


def test_precision_scope_sets_and_restores_torchs_switches():
    matmul = torch.backends.cuda.matmul
    before = matmul.fp32_precision
    with pytest.raises(RuntimeError, match="boom"), precision_scope("tf32", "cpu"):
        assert matmul.fp32_precision == "tf32"
        raise RuntimeError("boom")
    assert matmul.fp32_precision == before
    with precision_scope("fp32", "cpu"):
        assert matmul.fp32_precision == "ieee" and torch.backends.cudnn.conv.fp32_precision == "ieee"
    with pytest.raises(ValueError, match="unknown precision 'fp16'; valid choices: fp32, tf32, bf16"):
        with precision_scope("fp16", "cpu"):
            pass


def test_precision_is_a_config_choice_a_resume_may_change():
    with pytest.raises(ConfigError, match="unknown precision 'fp16'; valid choices: fp32, tf32, bf16"):
        TrainConfig(precision="fp16")  # type: ignore[arg-type]
    saved = TrainConfig(steps=10).to_dict()
    assert config_changes(saved, TrainConfig(steps=20, precision="bf16").to_dict()) == []
    assert config_changes(saved, TrainConfig(lr_g=1e-3).to_dict()) == ["lr_g"]
    del saved["precision"]  # a checkpoint older than the field: its default
    assert config_changes(saved, TrainConfig(steps=10).to_dict()) == []


def test_a_checkpoint_from_another_kind_of_device_resumes_with_a_reseeded_noise_stream(tmp_path):
    """A GPU checkpoint's noise generator state cannot load into a CPU generator: the resumed run keeps
    weights, optimiser, batch order and history, and draws noise from a generator seeded by (seed, step),
    the same on every such resume."""
    cfg = TrainConfig(width=0.25, batch_size=16, steps=3)
    state = train_gan(cfg, images_u8=IMAGES).trainer.state_dict()
    assert state["rng"]["noise_device"] == "cpu"
    foreign = {**state, "rng": {**state["rng"], "noise_device": "cuda", "noise": torch.zeros(16, dtype=torch.uint8)}}

    def resume(s):
        trainer = Trainer(cfg.replace(steps=5), IMAGES)
        trainer.load_state_dict(copy.deepcopy(s))  # as read from the file: the optimiser steps its state in place
        assert trainer.step == 3 and trainer.history["step"] == [1, 2, 3]
        assert torch.equal(trainer.sampler.perm, state["rng"]["sampler"]["perm"])
        trainer.train_step()
        trainer.train_step()
        return [p.detach().clone() for p in trainer.G.parameters()]

    same, again = resume(foreign), resume(foreign)
    native = resume(state)
    assert all(torch.equal(a, b) for a, b in zip(same, again, strict=True))  # reproducible
    assert any(not torch.equal(a, b) for a, b in zip(same, native, strict=True))  # another noise stream


# --- on a real GPU (marker gpu: skipped, with the reason, where torch sees no CUDA device) ---------------


@pytest.mark.gpu
def test_gpu_steps_never_synchronise_with_the_host(mnist_train):
    trainer = Trainer(TrainConfig(loss="wgan-gp", n_critic=2, batch_size=64, steps=40), mnist_train.images[:4096],
                      device="cuda")
    trainer.train_step()  # warm-up: allocations and kernel choices
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")  # any synchronising call (a read, a D2H copy) raises
    try:
        for _ in range(20):  # within one epoch of 64 batches: no new permutation either
            trainer.train_step()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert len(trainer.history["step"]) == 21 and all(map(math.isfinite, trainer.history["loss_d"]))


@pytest.mark.gpu
@pytest.mark.parametrize("first, then", [("cuda", "cpu"), ("cpu", "cuda")])
def test_a_checkpoint_resumes_on_the_other_device(first, then, mnist_train, tmp_path):
    cfg = TrainConfig(batch_size=32, steps=4)
    ckpt = tmp_path / "c.pt"
    train_gan(cfg, images_u8=mnist_train.images[:2048], checkpoint_path=ckpt, device=first)
    resumed = train_gan(cfg.replace(steps=8), images_u8=mnist_train.images[:2048], checkpoint_path=ckpt,
                        resume=True, device=then)
    trainer = resumed.trainer
    assert trainer.step == 8 and trainer.history["step"] == list(range(1, 9))
    assert all(p.device.type == then for p in trainer.G.parameters())
    state = trainer.opt_g.state[next(iter(trainer.G.parameters()))]
    assert state["exp_avg"].device.type == then  # the optimiser's moments moved with the weights


@pytest.mark.gpu
def test_bf16_on_a_gpu_trains_finite_losses(mnist_train):
    result = train_gan(TrainConfig(architecture="dcgan", batch_size=64, steps=20, precision="bf16"),
                       images_u8=mnist_train.images[:4096], device="cuda")
    assert all(map(math.isfinite, result.history["loss_d"] + result.history["loss_g"]))
