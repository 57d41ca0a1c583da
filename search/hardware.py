"""What the machine a study starts on can do: the budget and GPU share a study gets when the command line
names none, and how long the study should take, said before its first trial.

- GPUs here (or a cluster): the ``full`` budget, a quarter GPU per trial (these networks are small: four
  trials share a GPU well).
- No GPU: the ``small`` budget and the MLP pair only, since the DCGAN pair trains about 4x fewer
  images per second on a CPU core (docs/benchmarks.md); a study file that names the architecture keeps it.

The estimate measures this machine: a few training steps of a recipe per architecture in the space (one
trial's threads), and one scoring of generated samples; the rest is the budget's arithmetic and the
pruner's expected spend (``PRUNER_SPEND``). It is printed as an estimate; the status line's ETA follows
the real pace.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .budgets import ASHA_REDUCTION, Budget
from .space import Categorical, ParamSpec

if TYPE_CHECKING:
    from .payload import TrialInputs
    from .studies import Study

GPU_BUDGET, CPU_BUDGET = "full", "small"
GPU_SHARE = 0.25  # of one GPU per trial when --gpus-per-trial is not given and there are GPUs
CPU_ARCHITECTURE = "mlp"
MEASURE_S = 1.5  # seconds of training measured per architecture
RAY_START_S = 20.0  # starting Ray and the first trial's actor, seen on 2 CPU cores

# pruner -> (share of a full trial's images a trial spends on average once the first ones ran, share that
# completes). Successive halving with η = 3 over 3 rungs: 1/9 + (1/3)(2/9) + (1/9)(6/9) = 0.26 of the images
# (ASHA's paper arithmetic), 1/9 complete; the median pruners' shares are those pruning_gain measured.
_ETA = ASHA_REDUCTION


def _quorum_spend(n: int) -> tuple[float, float]:
    """Successive halving whose first η - 1 arrivals at each rung go on (search.quorum_halving), for ``n`` trials:
    (η - 1) + (n - (η - 1))/η reach the second rung and (η - 1) + (that - (η - 1))/η the end."""
    second = (_ETA - 1) + (n - (_ETA - 1)) / _ETA
    last = (_ETA - 1) + (second - (_ETA - 1)) / _ETA
    return (n / _ETA**2 + second * (1 / _ETA - 1 / _ETA**2) + last * (1 - 1 / _ETA)) / n, last / n


PRUNER_SPEND: dict[str, tuple[float, float]] = {
    # rungs at 1/η² and 1/η of the images: all trials reach the first, 1/η the second, 1/η² the end
    "asha": (1 / _ETA**2 + (1 / _ETA) * (1 / _ETA - 1 / _ETA**2) + (1 / _ETA**2) * (1 - 1 / _ETA), 1 / _ETA**2),
    # the same with a quorum, for an hour's study on 2 cores (18 trials): 0.34, 0.21
    "asha-quorum": _quorum_spend(18),
    "hyperband": (0.4, 0.2),
    "median": (0.57, 0.5),
    "percentile": (0.51, 0.44),
    "none": (1.0, 1.0),
}


@dataclass(frozen=True)
class Hardware:
    """Where the study's trials run, as far as the driver can tell before starting Ray."""

    cluster: bool
    gpus: int  # GPUs a local Ray offers (--num-gpus, else those CUDA shows); 0 on a cluster (unknown here)
    cpus: int  # CPUs a local Ray offers (--num-cpus, else this machine's)

    @property
    def has_gpus(self) -> bool:
        return self.cluster or self.gpus > 0


def local_hardware(*, cluster: bool, num_gpus: int | None, num_cpus: int | None) -> Hardware:
    if cluster:
        return Hardware(cluster=True, gpus=0, cpus=0)
    if num_gpus is None:
        import torch

        num_gpus = torch.cuda.device_count()
    return Hardware(cluster=False, gpus=num_gpus, cpus=num_cpus or os.cpu_count() or 1)


@dataclass(frozen=True)
class Choice:
    """What the hardware chose for a new study whose command line left it open."""

    budget: str
    narrowing: dict[str, Any]  # study-file params added for this hardware
    note: str


def choose(hw: Hardware, *, budget: str | None, narrowed: Mapping[str, Any]) -> Choice | None:
    """The budget (and, without GPUs, the architecture) for a study whose ``--budget`` was not given;
    None when it was. ``narrowed``: the study file's params, which always win."""
    if budget is not None:
        return None
    if hw.has_gpus:
        where = "a Ray cluster" if hw.cluster else f"{hw.gpus} GPU(s) here"
        return Choice(GPU_BUDGET, {}, f"{where}: budget {GPU_BUDGET} (--budget chooses another)")
    if "architecture" in narrowed:
        return Choice(CPU_BUDGET, {}, f"no GPU here: budget {CPU_BUDGET} (--budget chooses another)")
    return Choice(CPU_BUDGET, {"architecture": CPU_ARCHITECTURE},
                  f"no GPU here: budget {CPU_BUDGET} and the {CPU_ARCHITECTURE} pair only (the dcgan pair trains "
                  f"~4x fewer images/s on a CPU core; --budget or a study file's architecture choose otherwise)")


def gpus_per_trial(given: float | None, *, gpus_available: bool) -> float:
    """--gpus-per-trial, or a quarter GPU where there are GPUs and none elsewhere."""
    if given is not None:
        return given
    return GPU_SHARE if gpus_available else 0.0


def trials_at_once(hw: Hardware, *, cpus_per_trial: float, gpus_per_trial: float, max_concurrent: int | None) -> int:
    """How many trials a local Ray runs side by side."""
    n = math.floor(hw.cpus / cpus_per_trial + 1e-6)
    if gpus_per_trial > 0:
        n = min(n, math.floor(hw.gpus / gpus_per_trial + 1e-6))
    return max(1, min(n, max_concurrent or n))


# --- the estimate ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Speed:
    images_per_s: float  # one trial's training, on its threads
    score_s_per_sample: float  # full scores (FID, precision/recall, classes) of one generated sample


def _architectures(space: Mapping[str, ParamSpec]) -> tuple[str, ...]:
    spec = space["architecture"]
    return tuple(spec.choices) if isinstance(spec, Categorical) else ("mlp",)


def measure_speed(inputs: TrialInputs, space: Mapping[str, ParamSpec], *, threads: int, device: str,
                  at_once: int = 1) -> Speed:
    """Train the first recipe's networks for MEASURE_S seconds per architecture in ``space``, ``at_once``
    trainers side by side (the trials share the machine's cores and memory), and score one batch of
    samples; each on ``threads`` threads of ``device``. Rates are per trial."""
    import threading

    import torch

    from gan_models import TrainConfig, Trainer

    from .recipes import RECIPES

    saved = torch.get_num_threads()
    torch.set_num_threads(max(1, threads))
    try:
        rates = []
        for arch in _architectures(space):
            config = TrainConfig.from_dict({**next(iter(RECIPES.values())).params, "architecture": arch})
            trainers = [Trainer(config.replace(seed=i), inputs.train_images, device=device) for i in range(at_once)]
            steps, seconds = [0] * at_once, [0.0] * at_once
            workers = [threading.Thread(target=_train_for, args=(t, steps, seconds, i)) for i, t in enumerate(trainers)]
            for w in workers:
                w.start()
            for w in workers:
                w.join()
            rates.append(sum(n / s for n, s in zip(steps, seconds, strict=True)) / at_once * config.images_per_step)
        evaluator = inputs.evaluator.to(device)
        n = 1000
        samples = trainers[0].sample(n)
        start = time.perf_counter()
        evaluator.score(samples)
        score_s = (time.perf_counter() - start) / n
    finally:
        torch.set_num_threads(saved)
    # trials draw architectures evenly at first: the harmonic mean is the rate of the mix
    return Speed(images_per_s=len(rates) / sum(1 / r for r in rates), score_s_per_sample=score_s)


def _train_for(trainer, steps: list[int], seconds: list[float], i: int) -> None:
    """Train ``trainer`` for about MEASURE_S seconds after one untimed step (allocations, kernel choices); its
    step count and the seconds they took into ``steps[i]``, ``seconds[i]``."""
    trainer.train_step()
    trainer.sync()
    start = time.perf_counter()
    while time.perf_counter() - start < MEASURE_S:
        trainer.train_step()
        steps[i] += 1
    trainer.sync()
    seconds[i] = time.perf_counter() - start


def estimate_s(study: Study, budget: Budget, *, trials: int, pruner: str, at_once: int, speed: Speed,
               startup_trials: int) -> float:
    """Seconds the study should take: training at the measured pace, the intermediate and final scores, with
    the pruner's expected spend, ``at_once`` trials side by side."""
    spend, complete = PRUNER_SPEND[pruner]
    first = min(trials, max(at_once, startup_trials if pruner in ("median", "percentile") else at_once))
    full_trials = first + (trials - first) * spend
    completed = first + (trials - first) * complete
    train_s = full_trials * budget.images / speed.images_per_s
    reports_s = full_trials * len(budget.marks) * budget.n_intermediate * speed.score_s_per_sample
    # refining: ~10 steps on average, each about one training image per sample, and ~5 scored steps
    refine_s = (budget.n_final * 10 / speed.images_per_s + 4 * budget.n_final * speed.score_s_per_sample
                if study.refines else 0.0)
    final_s = completed * (refine_s + budget.n_final * speed.score_s_per_sample)
    return RAY_START_S + (train_s + reports_s + final_s) / at_once


def fit_trials(estimate: Callable[[int], float], *, limit_s: float, most: int) -> int:
    """The most trials (up to ``most``, at least 1) whose ``estimate(trials)`` fits in ``limit_s`` seconds."""
    return max((n for n in range(1, most + 1) if estimate(n) <= limit_s), default=1)


def clock(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    minutes = round(seconds / 60)
    return f"{minutes} min" if minutes < 60 else f"{minutes // 60} h {minutes % 60:02d} min"
