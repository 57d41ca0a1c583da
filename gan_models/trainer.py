"""The training loop: one TrainConfig in, a trained (G, D) pair and its checkpoint out.

One step = n_critic discriminator updates, then one generator update. Randomness comes from
three seeded streams (network init + dropout through torch's global RNG, the batch order,
and the latent/GP noise), all saved in checkpoints, so the same seed gives bit-identical
weights on CPU and a resumed run continues exactly where the stopped one was.

On a GPU the step never waits for the host: the images live on the device (moved once), the latent
and gradient-penalty noise is drawn by a generator on the device, and the losses stay device tensors
until ``sync`` reads them all in one transfer. ``train_gan`` syncs where it needs numbers anyway: at
the callback (evaluation) interval, before a checkpoint, for a progress line, and at least every
``SYNC_EVERY`` steps, so a diverged run stops within that many steps and never checkpoints NaNs.
A checkpoint resumes on any device: it is read onto the CPU and each part moved where it lives.
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Callable, Collection
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor

from .checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from .config import TrainConfig
from .data import BatchSampler, load_images
from .ema import ema_copy, ema_decay_at, update_ema_
from .losses import clip_weights_, discriminator_objective, generator_objective, get_loss
from .networks import build_discriminator, build_generator, sample_latent
from .precision import precision_scope
from .progress import StepProgress

# the longest a diverged run trains on before train_gan notices (one host sync per SYNC_EVERY steps at least)
SYNC_EVERY = 100
# a resumed run may change these and nothing else of its config
RESUMABLE_CHANGES = ("steps", "precision")


def check_device(device: str | torch.device, *, what: str = "device") -> torch.device:
    """A torch.device usable here, else a one-line ValueError naming the valid choices.

    Checked before any work: a CUDA device without CUDA otherwise fails deep inside ``.to()``.
    ``what`` names the value in the message (a CLI passes its flag, ``--device``).
    """
    try:
        d = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"invalid {what} {str(device)!r}; valid examples: cpu, cuda, cuda:0") from None
    if d.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"{what} {str(device)!r} requested but CUDA is not available; valid choices here: cpu")
        count = torch.cuda.device_count()
        if d.index is not None and d.index >= count:
            raise ValueError(f"{what} {str(device)!r}: this machine has {count} CUDA device(s), "
                             f"valid choices: cpu, cuda, cuda:0 to cuda:{count - 1}")
    elif d.type == "mps":
        if not torch.backends.mps.is_available():
            raise ValueError(f"{what} {str(device)!r} requested but MPS is not available; valid choices here: cpu")
    elif d.type != "cpu":
        raise ValueError(f"unsupported {what} {str(device)!r}; valid choices: cpu, cuda[:N], mps")
    return d


class DivergenceError(FloatingPointError):
    """A loss became NaN or infinite."""

    def __init__(self, step: int, what: str, value: float):
        super().__init__(f"training diverged at step {step}: {what} is {value}")
        self.step = step


# The fused Adam kernel updates every tensor in one pass (CPU and CUDA); same math as Adam.
_ADAM_IMPL = {"fused": True}

# callback(trainer) -> True to stop training early (e.g. a pruner's decision), else None/False
Callback = Callable[["Trainer"], bool | None]


class Trainer:
    """Holds G, D, their optimisers and the data/noise streams; ``train_step`` advances one step.

    What a loss needs beyond its D and G losses (weight clipping, a gradient penalty, a SAN head) is read
    from its declaration (``config.needs``), never from its name.
    """

    def __init__(self, config: TrainConfig, images_u8: Tensor, *, device: str | torch.device = "cpu"):
        self.config = config
        self.device = check_device(device)
        self.loss = get_loss(config.loss)
        torch.manual_seed(config.seed)  # network init, then dropout masks
        self.G = build_generator(config.network).to(self.device)
        self.D = build_discriminator(config.network).to(self.device)
        # the weight average that samples by default (gan_models.ema); None when ema_decay is 0
        self.G_ema = ema_copy(self.G) if config.ema_decay > 0 else None
        betas = (config.beta1, config.beta2)
        self.opt_g = torch.optim.Adam(self.G.parameters(), lr=config.lr_g, betas=betas, **_ADAM_IMPL)
        self.opt_d = torch.optim.Adam(self.D.parameters(), lr=config.lr_d, betas=betas, **_ADAM_IMPL)
        self.sampler = BatchSampler(images_u8, config.batch_size, seed=config.seed + 1, device=self.device)
        self.noise = _noise_generator(self.device, config.seed + 2)
        self.step = 0
        self._history: dict[str, list[float]] = {"step": [], "loss_d": [], "loss_g": []}
        self._pending: list[tuple[int, Tensor, Tensor]] = []  # (step, loss_d, loss_g) not yet read by the host

    # -- one step ---------------------------------------------------------------------------
    def _precision(self) -> AbstractContextManager[None]:
        return precision_scope(self.config.precision, self.device)

    def _z(self, n: int) -> Tensor:
        c = self.config
        return sample_latent(n, c.latent_dim, c.latent_prior, generator=self.noise, device=self.device)

    def _d_step(self, keep_fake: bool) -> tuple[Tensor, Tensor]:
        """One D update; returns its loss (a device scalar) and the fake batch (with G's graph when keep_fake)."""
        c = self.config
        x_real = self.sampler.next()
        z = self._z(c.batch_size)
        gp_eps = None
        if c.needs.gradient_penalty:  # x_hat = eps x + (1 - eps) G(z), eps ~ U[0, 1] per sample
            gp_eps = torch.rand(c.batch_size, 1, 1, 1, generator=self.noise, device=self.noise.device)
        with self._precision():
            with torch.set_grad_enabled(keep_fake):  # D's own update never needs a graph through G
                x_fake = self.G(z)
            loss_d, _ = discriminator_objective(self.D, x_real, x_fake.detach(), loss=c.loss, san_base=c.san_base,
                                                lambda_gp=c.lambda_gp, gp_eps=gp_eps)
        self.opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        self.opt_d.step()
        if c.needs.clips_weights:  # w <- clip(w, -c, c) for every weight of D
            assert c.clip_value is not None  # TrainConfig sets it for the loss that clips
            clip_weights_(self.D, c.clip_value)
        return loss_d.detach(), x_fake

    def _g_step(self, x_fake: Tensor) -> Tensor:
        c = self.config
        self.D.requires_grad_(False)  # G's update needs dL/dx through D, not dL/dθ_D
        try:
            with self._precision():
                loss_g = generator_objective(self.D, x_fake, loss=c.loss)
            self.opt_g.zero_grad(set_to_none=True)
            loss_g.backward()
            self.opt_g.step()
        finally:
            self.D.requires_grad_(True)
        return loss_g.detach()

    def train_step(self) -> dict[str, Tensor]:
        """n_critic D updates, then one G update; returns the losses as device scalars (no host sync).

        With n_critic == 1 the G update reuses the D step's fake batch G(z) (scored by the
        updated D), as the classic GAN loop does: one G forward per step instead of two.
        The loss reported for D is its last critic step's. ``sync`` reads and checks them.
        """
        self.G.train()
        self.D.train()
        n_critic = self.config.n_critic
        loss_d, x_fake = None, None
        for _ in range(n_critic):
            loss_d, x_fake = self._d_step(keep_fake=n_critic == 1)
        if n_critic > 1:  # the critic saw several batches; G trains on a fresh one
            with self._precision():
                x_fake = self.G(self._z(self.config.batch_size))
        assert x_fake is not None and loss_d is not None  # n_critic >= 1 (TrainConfig)
        loss_g = self._g_step(x_fake)
        self.step += 1
        if self.G_ema is not None:
            update_ema_(self.G_ema, self.G, ema_decay_at(self.config.ema_decay, self.step))
        self._pending.append((self.step, loss_d, loss_g))
        return {"loss_d": loss_d, "loss_g": loss_g}

    def sync(self) -> dict[str, float]:
        """Read the steps' losses since the last sync in one device-to-host transfer, append them to the
        history and return the latest; raises DivergenceError naming the first step whose loss is not finite."""
        if self._pending:
            pending, self._pending = self._pending, []
            values = torch.stack([torch.stack([d, g]) for _, d, g in pending]).float().tolist()
            for (step, _, _), (loss_d, loss_g) in zip(pending, values, strict=True):
                for what, v in (("discriminator loss", loss_d), ("generator loss", loss_g)):
                    if not math.isfinite(v):
                        raise DivergenceError(step, what, v)
                self._history["step"].append(step)
                self._history["loss_d"].append(loss_d)
                self._history["loss_g"].append(loss_g)
        h = self._history
        return {"loss_d": h["loss_d"][-1], "loss_g": h["loss_g"][-1]} if h["step"] else {}

    @property
    def history(self) -> dict[str, list[float]]:
        """Every step's losses so far (reading it syncs)."""
        self.sync()
        return self._history

    @property
    def generator(self) -> torch.nn.Module:
        """The generator that samples: the weight average when the config keeps one, else G itself."""
        return self.G_ema if self.G_ema is not None else self.G

    @torch.no_grad()
    def sample(self, n: int, *, seed: int = 0, raw: bool = False) -> Tensor:
        """n images [n, 1, 28, 28] in [-1, 1] from fixed latents (eval mode; state unchanged), drawn by
        ``generator`` (the weight average when there is one); ``raw=True`` draws from G's own weights.

        The latents come from a CPU generator, so a seed gives the same latents on every device."""
        G = self.G if raw else self.generator
        was_training = G.training
        G.eval()
        z = sample_latent(n, self.config.latent_dim, self.config.latent_prior,
                          generator=torch.Generator().manual_seed(seed), device=self.device)
        with self._precision():
            out = G(z).float()
        G.train(was_training)
        return out

    # -- state --------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        """Everything a resumed run needs; syncs first, so a diverged run raises instead of saving NaNs."""
        history = self.history
        rng = {"torch": torch.get_rng_state(), "noise": self.noise.get_state(), "noise_device": self.device.type,
               "sampler": self.sampler.state_dict()}
        if self.device.type == "cuda":  # dropout masks on a GPU come from its own generator
            rng["cuda"] = torch.cuda.get_rng_state(self.device)
        return {
            **self.models_state(),
            "opt_g": self.opt_g.state_dict(),
            "opt_d": self.opt_d.state_dict(),
            "rng": rng,
            "history": {k: list(v) for k, v in history.items()},
        }

    def models_state(self) -> dict:
        """The config, step and networks (G, D and the weight average when kept): what ``load_models`` reads."""
        out = {"config": self.config.to_dict(), "step": self.step, "generator": self.G.state_dict(),
               "discriminator": self.D.state_dict()}
        if self.G_ema is not None:
            out["generator_ema"] = self.G_ema.state_dict()
        return out

    def load_state_dict(self, state: dict) -> None:
        """Resume from ``state`` read onto the CPU (``load_checkpoint``'s default), written on any device.

        On the device type that wrote it the run continues bit for bit. Across device types (a GPU
        checkpoint on a CPU, or back) the noise generators cannot carry over, since their states differ in
        kind: the noise stream is then reseeded from (seed, step), reproducibly, and the rest carries over.
        """
        changed = config_changes(state["config"], self.config.to_dict())
        if changed:
            raise CheckpointError(f"checkpoint was written by a different config (differs in: {', '.join(changed)}); "
                                  f"cannot resume with this one")
        self.G.load_state_dict(state["generator"])  # copies onto this device
        self.D.load_state_dict(state["discriminator"])
        if self.G_ema is not None:  # ema_decay is part of the config, so the checkpoint kept the average too
            self.G_ema.load_state_dict(state["generator_ema"])
        self.opt_g.load_state_dict(state["opt_g"])  # the optimiser moves its state to its parameters' device
        self.opt_d.load_state_dict(state["opt_d"])
        rng = state["rng"]
        torch.set_rng_state(rng["torch"].cpu())
        self.sampler.load_state_dict(rng["sampler"])
        self.step = int(state["step"])
        if rng.get("noise_device", "cpu") == self.device.type:
            self.noise.set_state(rng["noise"].cpu())
            if "cuda" in rng:
                torch.cuda.set_rng_state(rng["cuda"].cpu(), self.device)
        else:
            self.noise.manual_seed(_resume_seed(self.config.seed + 2, self.step))
        self._history = {k: list(v) for k, v in state["history"].items()}
        self._pending = []

    def save(self, path: str | os.PathLike) -> Path:
        return save_checkpoint(path, self.state_dict())


def _noise_generator(device: torch.device, seed: int) -> torch.Generator:
    """The latent and gradient-penalty noise's generator, on the device that uses the noise (no copies)."""
    return torch.Generator(device=device).manual_seed(seed)


def _resume_seed(seed: int, step: int) -> int:
    """A noise seed for a run resumed on another kind of device: fixed by (seed, step), distinct per step."""
    return (seed * 1_000_003 + step) % (2**63)


def config_changes(saved: dict, wanted: dict) -> list[str]:
    """The fields in which a checkpoint's config differs from the wanted one, beyond RESUMABLE_CHANGES
    (a field the checkpoint predates counts as its default)."""
    defaults = TrainConfig().to_dict()
    return sorted(k for k in wanted if k not in RESUMABLE_CHANGES and saved.get(k, defaults[k]) != wanted[k])


@dataclass
class TrainResult:
    trainer: Trainer
    stopped_early: bool
    checkpoint: Path | None = None
    history: dict[str, list[float]] = field(default_factory=dict)


def train_gan(
    config: TrainConfig,
    *,
    images_u8: Tensor | None = None,
    data_root: str | os.PathLike | None = None,
    checkpoint_path: str | os.PathLike | None = None,
    checkpoint_every: int = 0,
    resume: bool = False,
    callback: Callback | None = None,
    callback_steps: Collection[int] = (),
    progress: bool | None = None,
    progress_every: int = 0,
    device: str | torch.device = "cpu",
) -> TrainResult:
    """Train ``config.steps`` generator steps.

    resume: continue from ``checkpoint_path`` if that file exists.
    callback: called after each step in ``callback_steps`` (and after the last); returning True stops.
    progress: True reports progress on stderr (a bar on a terminal, else a line every
    ``progress_every`` steps, default ~20 lines a run: images/s, losses, ETA); False never;
    None (the library default) a bar only when stderr is a terminal.
    """
    if images_u8 is None:
        images_u8 = load_images(config.dataset, split="train", data_root=data_root).images
    trainer = Trainer(config, images_u8, device=device)
    if resume and checkpoint_path is not None and Path(checkpoint_path).is_file():
        trainer.load_state_dict(load_checkpoint(checkpoint_path))  # onto the CPU; each part moves to its device
    bar = _progress(config, trainer.step, progress, progress_every)
    stopped = False
    try:
        while trainer.step < config.steps:
            trainer.train_step()
            step, last = trainer.step, trainer.step == config.steps
            if bar is not None:  # a progress line shows losses: one sync, only when a line is due
                bar.update(step, **(trainer.sync() if bar.due(step) else {}))
            if step % SYNC_EVERY == 0:
                trainer.sync()
            if checkpoint_path is not None and checkpoint_every and step % checkpoint_every == 0:
                trainer.save(checkpoint_path)
            if callback is not None and (step in callback_steps or last):
                trainer.sync()  # the callback (an evaluation) reads losses and must not see a diverged run
                if callback(trainer):
                    stopped = True
                    break
    finally:
        if bar is not None:
            bar.close()
    ckpt = trainer.save(checkpoint_path) if checkpoint_path is not None else None
    return TrainResult(trainer=trainer, stopped_early=stopped, checkpoint=ckpt, history=trainer.history)


def _progress(config: TrainConfig, initial: int, progress: bool | None, every: int) -> StepProgress | None:
    if progress is None:
        progress = sys.stderr.isatty()
    if not progress:
        return None
    return StepProgress(config.steps, initial=initial, every=every, images_per_step=config.images_per_step)
