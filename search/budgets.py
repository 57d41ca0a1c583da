"""Compute budgets: how much data a trial trains on and how many samples score it, by name.

A budget counts *training images* (real images the discriminator consumes), not generator steps, so
that trials with different batch sizes and critic counts are compared at equal data: a trial trains
``ceil(images / (batch_size * n_critic))`` generator steps. The intermediate FID (the pruner's input)
is reported at fixed image marks, every ``eval_every`` images, with the mark as Optuna's step, so
every trial reports at the same resources. FID is biased by sample count, so the counts are part
of the budget and recorded with every score.

The marks are spaced for successive halving with reduction factor η = 3 over three rungs: with
``eval_every = images / 9`` the rungs fall on reports 1, 3 and 9 (``asha_min_images``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from gan_models.registry import lookup

ASHA_REDUCTION = 3  # η: successive halving keeps the best 1/η of the trials at each rung


@dataclass(frozen=True)
class Budget:
    name: str
    description: str
    images: int  # real images each trial trains on
    eval_every: int  # images between intermediate FIDs (each with a checkpoint)
    n_intermediate: int  # generated samples behind the intermediate FID
    n_real: int  # real test images behind every score's reference statistics
    n_final: int  # generated samples for the final FID / precision / recall
    score_steps: tuple[int, ...]  # refinement steps at which the trajectory is scored (plus the last)
    refine_batch_size: int
    prune_startup_trials: int  # median/percentile pruners decide only once this many trials have finished
    prune_warmup_reports: int  # ... and only from this many intermediate reports into a trial on

    def __post_init__(self) -> None:
        for name in ("images", "eval_every", "n_intermediate", "n_real", "n_final", "refine_batch_size"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
                raise ValueError(f"budget {self.name!r}: {name} must be a positive integer, got {v!r}")
        if self.images % self.eval_every:
            raise ValueError(f"budget {self.name!r}: images must be a multiple of eval_every")
        if not self.score_steps or self.score_steps[0] != 0 or list(self.score_steps) != sorted(set(self.score_steps)):
            raise ValueError(f"budget {self.name!r}: score_steps must start at 0 and increase")

    @property
    def marks(self) -> tuple[int, ...]:
        """The image counts at which a trial reports its intermediate FID (the last is ``images``)."""
        return tuple(range(self.eval_every, self.images + 1, self.eval_every))

    @property
    def warmup_images(self) -> int:
        return self.prune_warmup_reports * self.eval_every

    @property
    def asha_min_images(self) -> int:
        """Successive halving's first rung: η² rungs below the full budget, on a report mark."""
        rung = self.images // ASHA_REDUCTION**2
        return max(self.eval_every, rung - rung % self.eval_every)

    def steps_for(self, images_per_step: int) -> int:
        """Generator steps that train on ``images`` images, at ``images_per_step`` (batch × n_critic)."""
        return math.ceil(self.images / images_per_step)

    def report_steps(self, images_per_step: int) -> dict[int, int]:
        """generator step -> the image mark it reports: the first step at which the mark is reached."""
        return {math.ceil(mark / images_per_step): mark for mark in self.marks}

    def refine_score_steps(self, refine_steps: int) -> tuple[int, ...]:
        """The scored steps of a trajectory of ``refine_steps`` steps: the budget's up to it, and it
        (the refiner's own rule, so the two can never disagree)."""
        from refinement.trajectory import scored_steps  # here, not at the top: --help stays torch-free

        return tuple(scored_steps(self.score_steps, refine_steps))


def _scored(name: str, description: str, images: int, *, n_intermediate: int = 2_000,
            refine_batch_size: int = 1_000) -> Budget:
    """A budget whose scores mean something: 10,000 samples against the 10,000 test images, the intermediate
    FID at every ninth of the images (successive halving's rungs fall on reports 1 and 3)."""
    return Budget(name=name, description=description, images=images, eval_every=images // ASHA_REDUCTION**2,
                  n_intermediate=n_intermediate, n_real=10_000, n_final=10_000, score_steps=(0, 1, 2, 5, 10, 20),
                  refine_batch_size=refine_batch_size, prune_startup_trials=3, prune_warmup_reports=1)


BUDGETS: dict[str, Budget] = {
    b.name: b
    for b in (
        Budget(
            name="smoke",
            description="seconds per trial: plumbing tests only, the numbers mean nothing",
            images=6_400, eval_every=1_600, n_intermediate=500, n_real=1_000, n_final=1_000,
            score_steps=(0, 1, 2, 5), refine_batch_size=500, prune_startup_trials=1, prune_warmup_reports=1,
        ),
        _scored("quick", "486k images per trial: a ranking in a third of the time of small (digits, not yet good "
                         "ones)", 486_000),
        _scored("small", "1.44M images per trial: good MNIST digits on a laptop, about 15 min per MLP trial on one "
                         "CPU core", 1_440_000),
        _scored("full", "4.5M images per trial: converged MNIST GANs, for GPUs", 4_500_000, n_intermediate=5_000,
                refine_batch_size=2_000),
    )
}


def get_budget(name: str) -> Budget:
    return lookup(BUDGETS, name, what="budget")
