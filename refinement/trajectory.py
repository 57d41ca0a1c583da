"""refine(): run a refiner on n generated samples, scoring them at chosen steps (the frontier).

The whole run's per-sample state lives in memory ([n, d] latents, or [n, 784] images for the
target-space methods, plus Adam's moments); every step sweeps it in batches of ``batch_size``.
Stepping all samples one step at a time (rather than one batch through all steps) lets the
scores at step s see every sample, and lets DDLS draw each step's noise for all n at once, so
that no result depends on the batch size.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import pandas as pd
import torch
from torch import Tensor, nn

from evaluation.evaluator import SCORE_KEYS
from gan_models import sample_latent
from gan_models.precision import precision_scope

from .config import DEFAULT_SCORE_STEPS, RefineConfig
from .costs import pairwise_distance
from .dot import RefineState
from .lipschitz import k_eff_in_cost_space
from .refiners import Refiner, make_refiner

METRIC_COLUMNS = SCORE_KEYS  # a trajectory row's scores, first among its columns


class Scorer(Protocol):
    """What refine() needs from evaluation.Evaluator."""

    def score(self, samples: Tensor) -> dict[str, Any]: ...


@dataclass
class RefineResult:
    samples: Tensor  # final images [n, 1, 28, 28]
    trajectory: pd.DataFrame  # one row per scored step
    k_eff: float  # NaN for DDLS (no K_eff)
    best_step: int | None  # scored step with the lowest FID; None when nothing was scored with an evaluator
    strip: Tensor  # [S, m, 1, 28, 28]: the same m samples at each of the S scored steps
    strip_steps: list[int] = field(default_factory=list)
    config: RefineConfig | None = None
    seed: int = 0


def scored_steps(score_steps: Iterable[int], steps: int) -> list[int]:
    """The steps that get a row: those of ``score_steps`` within [0, steps], plus the final step."""
    chosen = set()
    for s in score_steps:
        if not isinstance(s, int) or isinstance(s, bool) or s < 0:
            raise ValueError(f"score steps must be integers >= 0, got {s!r}")
        if s <= steps:
            chosen.add(s)
    return sorted(chosen | {steps})


def check_scorable(config: RefineConfig) -> None:
    """Raise before any work if the refined images could fall outside the evaluator's [-1, 1]."""
    if not config.moves_latent and not config.clip_images:
        raise ValueError(f"method {config.method!r} with clip_images=False can leave images outside [-1, 1], "
                         f"which the evaluator rejects; clip the images or refine without an evaluator")


@contextlib.contextmanager
def _inference_mode(*modules: nn.Module | None) -> Iterator[None]:
    """Eval mode and no parameter gradients for the duration (restored afterwards): refinement
    differentiates with respect to samples only, and batch norm / dropout must not couple rows."""
    mods = [m for m in modules if m is not None]
    training = [m.training for m in mods]
    params = [p for m in mods for p in m.parameters()]
    grads = [p.requires_grad for p in params]
    try:
        for m in mods:
            m.eval()
        for p in params:
            p.requires_grad_(False)
        yield
    finally:
        for m, t in zip(mods, training, strict=True):
            m.train(t)
        for p, g in zip(params, grads, strict=True):
            p.requires_grad_(g)


def _step_noise(shape: torch.Size, rng: torch.Generator, device: torch.device) -> Tensor:
    """One step's N(0, I) noise for all n samples, drawn by a CPU generator so that a DDLS run gives
    the same chain on every device (the CPU/GPU equality test relies on it). On CUDA the draw goes
    through pinned memory and copies without blocking, so the host draws step t+1's noise while the
    GPU still runs step t, instead of waiting for a pageable copy."""
    noise = torch.randn(shape, generator=rng)  # [n, d]
    if device.type != "cuda":
        return noise.to(device)
    return noise.pin_memory().to(device, non_blocking=True)


def _batches(n: int, batch_size: int) -> Iterator[tuple[int, int]]:
    for i in range(0, n, batch_size):
        yield i, min(i + batch_size, n)


def _cat_states(parts: list[RefineState]) -> RefineState:
    def cat(name: str) -> Tensor | None:
        first = getattr(parts[0], name)
        return None if first is None else torch.cat([getattr(p, name) for p in parts])

    optional = {name: cat(name) for name in parts[0].tensors() if name != "v"}
    return RefineState(torch.cat([p.v for p in parts]), **optional)


@torch.no_grad()
def _all_images(refiner: Refiner, state: RefineState, batch_size: int) -> Tensor:
    return torch.cat([refiner.images(state.rows(i, j)) for i, j in _batches(len(state), batch_size)])


@torch.no_grad()
def _mean_score(discriminator: nn.Module, images: Tensor, batch_size: int) -> float:
    total = sum(float(discriminator(images[i:j]).sum()) for i, j in _batches(images.shape[0], batch_size))
    return total / images.shape[0]


def refine(
    generator: nn.Module,
    discriminator: nn.Module,
    config: RefineConfig,
    *,
    latent_dim: int,
    latent_prior: str,
    n: int,
    seed: int = 0,
    evaluator: Scorer | None = None,
    score_steps: Iterable[int] = DEFAULT_SCORE_STEPS,
    batch_size: int = 1000,
    device: str | torch.device = "cpu",
    embedder: nn.Module | None = None,
    dataset: str = "mnist",
    latents: Tensor | None = None,
    strip_size: int = 8,
    on_score: Callable[[dict[str, Any]], None] | None = None,
    on_step: Callable[[int], None] | None = None,
    real_images: Tensor | None = None,
) -> RefineResult:
    """Refine n samples G(z_y), z_y drawn from ``latent_prior`` with ``seed`` (or given as ``latents``); the
    networks must already be on ``device``. A trajectory row (``_row``) per scored step; with an evaluator it
    holds every key of ``evaluator.score``. ``embedder``: E of the embedded methods (None: the config's
    ``evaluation.feature_extractor``). ``on_score(row)`` after each scored step, ``on_step(t)`` after every
    step t >= 1. ``real_images`` (floats [N, 1, 28, 28] in [-1, 1]) are read only by ``k_eff="gradient"``
    for its real/generated interpolates (refinement.lipschitz); without them it interpolates generated ones.
    """
    _check_counts(n=n, batch_size=batch_size)
    steps_to_score = set(scored_steps(score_steps, config.steps))
    if evaluator is not None:
        check_scorable(config)
    device = torch.device(device)
    z_y = _start_latents(latents, n=n, latent_dim=latent_dim, latent_prior=latent_prior, seed=seed, device=device)
    if config.embedded and embedder is None:
        from evaluation import feature_extractor  # only the embedded methods need the evaluation package

        embedder = feature_extractor(config.embedding, dataset=dataset, device=str(device))

    rows: list[dict[str, Any]] = []
    strip: list[Tensor] = []
    with _inference_mode(generator, discriminator, embedder):
        k_eff = k_eff_in_cost_space(config, generator, discriminator, latent_dim=latent_dim, latent_prior=latent_prior,
                                    embedder=embedder, seed=seed + 1, device=device, real_images=real_images)
        refiner = make_refiner(config, generator, discriminator, latent_prior=latent_prior, k_eff=k_eff,
                               embedder=embedder)
        start_images = images = None
        for t, images, elapsed in _scored_images(refiner, config, z_y, steps_to_score, batch_size=batch_size,
                                                 seed=seed, device=device, on_step=on_step):
            start_images = images if start_images is None else start_images  # step 0 first: y = G(z_y)
            if t in steps_to_score:
                rows.append(_row(t, images, start_images, discriminator, evaluator, k_eff=k_eff, seconds=elapsed,
                                 batch_size=batch_size))
                strip.append(images[:min(strip_size, n)].detach().cpu())
                if on_score is not None:
                    on_score(dict(rows[-1]))
    assert images is not None  # the last step is always scored
    trajectory = _trajectory_frame(rows)
    return RefineResult(samples=images.detach(), trajectory=trajectory, k_eff=k_eff, best_step=_best_step(trajectory),
                        strip=torch.stack(strip), strip_steps=sorted(steps_to_score), config=config, seed=seed)


def _check_counts(**counts: object) -> None:
    for name, v in counts.items():
        if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
            raise ValueError(f"{name} must be a positive integer, got {v!r}")


def _row(t: int, images: Tensor, start_images: Tensor, discriminator: nn.Module, evaluator: Scorer | None, *,
         k_eff: float, seconds: float, batch_size: int) -> dict[str, Any]:
    """A trajectory row: step, K_eff, mean D, mean displacement ||x - y||_2, refinement seconds, and the scores."""
    row: dict[str, Any] = {"step": t, "k_eff": k_eff, "d_mean": _mean_score(discriminator, images, batch_size),
                           "displacement": float(pairwise_distance(images, start_images).mean()), "seconds": seconds}
    if evaluator is not None:
        row.update(evaluator.score(images))
    return row


def _start_latents(latents: Tensor | None, *, n: int, latent_dim: int, latent_prior: str, seed: int,
                   device: torch.device) -> Tensor:
    """z_y [n, latent_dim]: the given latents, or n drawn from the prior by a CPU generator seeded with ``seed``."""
    if latents is None:
        return sample_latent(n, latent_dim, latent_prior, generator=torch.Generator().manual_seed(seed), device=device)
    if latents.shape != (n, latent_dim):
        raise ValueError(f"latents must have shape {(n, latent_dim)}, got {tuple(latents.shape)}")
    return latents.to(device)


def _scored_images(refiner: Refiner, config: RefineConfig, z_y: Tensor, steps_to_score: set[int], *,
                   batch_size: int, seed: int, device: torch.device,
                   on_step: Callable[[int], None] | None) -> Iterator[tuple[int, Tensor, float]]:
    """Step every sample's state from z_y, one step at a time over all batches; yield (t, images [n, 1, 28, 28]
    in float32, refinement seconds so far) at step 0 (the unrefined images, scored or not) and at each scored step."""
    n = z_y.shape[0]
    # the refiner's passes at config.precision; K_eff, D's mean and the scores stay in float32
    with precision_scope(config.precision, device):
        state = _cat_states([refiner.start(z_y[i:j]) for i, j in _batches(n, batch_size)])
    noise_rng = torch.Generator().manual_seed(seed + 2)
    elapsed = 0.0
    for t in range(config.steps + 1):
        if t > 0:
            began = time.perf_counter()
            noise = _step_noise(state.v.shape, noise_rng, device) if refiner.needs_noise else None
            with precision_scope(config.precision, device):
                for i, j in _batches(n, batch_size):
                    refiner.step(state.rows(i, j), t, None if noise is None else noise[i:j])
            elapsed += time.perf_counter() - began
            if on_step is not None:
                on_step(t)
        if t in steps_to_score or t == 0:
            with precision_scope(config.precision, device):
                yield t, _all_images(refiner, state, batch_size).float(), elapsed


def _trajectory_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per scored step, the scores first."""
    trajectory = pd.DataFrame(rows)
    leading = [c for c in ("step", *METRIC_COLUMNS) if c in trajectory.columns]
    return trajectory[leading + [c for c in trajectory.columns if c not in leading]]


def _best_step(trajectory: pd.DataFrame) -> int | None:
    """The scored step with the lowest FID; None when nothing was scored with an evaluator."""
    if "fid" in trajectory.columns and trajectory["fid"].notna().any():
        return int(trajectory.loc[trajectory["fid"].idxmin(), "step"])
    return None

