"""Compute budgets: how long a trial trains and how many samples score it, by name.

A budget fixes everything that sets a trial's cost but is not a hyperparameter, so trials of one
study are comparable: training steps, how often the intermediate FID (the pruner's input) is
computed and on how many samples, the sample count of the final scores, and the refinement
steps at which the trajectory is scored. FID is biased by sample count, so the counts are part of
the budget and recorded with every score.
"""

from __future__ import annotations

from dataclasses import dataclass

from gan_models.registry import lookup


@dataclass(frozen=True)
class Budget:
    name: str
    description: str
    steps: int  # generator steps per trial
    eval_every: int  # K: intermediate FID (and a checkpoint) every K steps
    n_intermediate: int  # generated samples for the intermediate FID
    n_real_intermediate: int  # real test images behind the intermediate FID's reference statistics
    n_final: int  # generated samples for the final FID / precision / recall
    n_real_final: int
    score_steps: tuple[int, ...]  # refinement steps at which the trajectory is scored (plus the last)
    refine_batch_size: int
    prune_startup_trials: int  # pruners decide only once this many trials have finished
    prune_warmup_reports: int  # ... and only from this many intermediate reports into a trial on

    def __post_init__(self) -> None:
        for name in ("steps", "eval_every", "n_intermediate", "n_real_intermediate", "n_final",
                     "n_real_final", "refine_batch_size"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
                raise ValueError(f"budget {self.name!r}: {name} must be a positive integer, got {v!r}")
        if self.steps % self.eval_every:
            raise ValueError(f"budget {self.name!r}: steps must be a multiple of eval_every")
        if not self.score_steps or self.score_steps[0] != 0 or list(self.score_steps) != sorted(set(self.score_steps)):
            raise ValueError(f"budget {self.name!r}: score_steps must start at 0 and increase")

    @property
    def warmup_steps(self) -> int:
        return self.prune_warmup_reports * self.eval_every

    def refine_score_steps(self, refine_steps: int) -> tuple[int, ...]:
        """The scored steps of a trajectory of ``refine_steps`` steps: the budget's up to it, and it
        (the refiner's own rule, so the two can never disagree)."""
        from refinement.trajectory import scored_steps  # here, not at the top: --help stays torch-free

        return tuple(scored_steps(self.score_steps, refine_steps))


BUDGETS: dict[str, Budget] = {
    b.name: b
    for b in (
        Budget(
            name="smoke",
            description="a few seconds per trial: plumbing tests only, the numbers mean nothing",
            steps=100, eval_every=25, n_intermediate=500, n_real_intermediate=1000,
            n_final=1000, n_real_final=1000, score_steps=(0, 1, 2, 5), refine_batch_size=500,
            prune_startup_trials=1, prune_warmup_reports=1,
        ),
        Budget(
            name="small",
            description="recognisable digits: a few minutes per MLP trial on 2 CPU cores",
            steps=5000, eval_every=500, n_intermediate=2000, n_real_intermediate=10000,
            n_final=10000, n_real_final=10000, score_steps=(0, 1, 2, 5, 10, 20), refine_batch_size=1000,
            prune_startup_trials=3, prune_warmup_reports=1,
        ),
        Budget(
            name="full",
            description="converged MNIST GANs: for a GPU cluster",
            steps=30000, eval_every=1000, n_intermediate=2000, n_real_intermediate=10000,
            n_final=10000, n_real_final=10000, score_steps=(0, 1, 2, 5, 10, 20), refine_batch_size=2000,
            prune_startup_trials=5, prune_warmup_reports=5,
        ),
    )
}


def get_budget(name: str) -> Budget:
    return lookup(BUDGETS, name, what="budget")
