"""What a trial tells the driver, as typed messages.

Ray Tune carries a trial's reports as flat dicts of metrics; these dataclasses are the only code
that writes or reads those dicts, so the worker (``trial.py``) and the driver (``bridge.py``)
agree on every key by construction. A trial sends:

- ``TrainReport`` at each of the budget's image marks: the intermediate FID, the pruner's input
  (Optuna's step is the images trained), with a checkpoint attached;
- then exactly one ``FinalReport`` (the objective's metrics after refinement) or one
  ``FailedReport`` (a reason that no retry can heal: divergence, bad data, a bad configuration).

A worker that dies (a lost node, an OOM-killed actor) sends nothing: Ray restarts the trial from
its last checkpoint, and only that kind of failure is retried.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from evaluation.evaluator import SCORE_KEYS

PHASE_KEY = "phase"

# The scores every complete trial carries, in the order tables show them: the evaluator's (FID, improved
# precision/recall, density/coverage, class statistics) of the final samples ...
FINAL_METRICS = SCORE_KEYS
# ... and the same scores of the unrefined samples (the refinement trajectory's step 0)
BEFORE_METRICS = ("fid", "precision", "recall")
# the numbers a FinalReport's metrics hold besides those: refinement bookkeeping and the sample count
FINAL_EXTRAS = ("best_step", "k_eff", "n_final")


class Phase(enum.StrEnum):
    TRAIN = "train"
    FINAL = "final"
    FAILED = "failed"


@dataclass(frozen=True)
class _Report:
    phase: ClassVar[Phase]
    optuna_trial: int
    mlflow_run_id: str
    resumed_from_step: int
    gpu: str  # "<node address>:<GPU id>" that Ray gave the trial; "" without a GPU (search.packing)

    def to_result(self) -> dict[str, Any]:
        """The flat dict Ray Tune's ``report`` takes."""
        out = {PHASE_KEY: self.phase.value}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, Mapping):  # nested metrics flatten into the result
                out.update(value)
            else:
                out[f.name] = value
        return out


@dataclass(frozen=True)
class TrainReport(_Report):
    phase: ClassVar[Phase] = Phase.TRAIN
    step: int  # generator steps trained
    images: int  # the budget's image mark reached: the pruner's resource
    fid_intermediate: float
    loss_d: float
    loss_g: float


@dataclass(frozen=True)
class FinalReport(_Report):
    phase: ClassVar[Phase] = Phase.FINAL
    train_steps: int
    train_images: int
    # FINAL_METRICS, ``<m>_before`` for BEFORE_METRICS, FINAL_EXTRAS
    metrics: Mapping[str, float]
    evaluator: str
    evaluator_sha256: str


@dataclass(frozen=True)
class FailedReport(_Report):
    phase: ClassVar[Phase] = Phase.FAILED
    step: int
    fail_reason: str
    disk_full: bool = False  # the trial could not write: the study stops, the trial reruns on --resume


Report = TrainReport | FinalReport | FailedReport
_BY_PHASE: dict[str, type[Report]] = {c.phase.value: c for c in (TrainReport, FinalReport, FailedReport)}
_FINAL_SCALARS = tuple(f.name for f in dataclasses.fields(FinalReport) if f.name != "metrics")


def final_metric_names() -> tuple[str, ...]:
    """Every numeric key a FinalReport's ``metrics`` holds."""
    return (*FINAL_METRICS, *(f"{m}_before" for m in BEFORE_METRICS), *FINAL_EXTRAS)


def parse_result(result: Mapping[str, Any] | None) -> Report | None:
    """A Ray result dict back into its report; None for a dict no trial sent (e.g. Ray's own)."""
    if not result or result.get(PHASE_KEY) not in _BY_PHASE:
        return None
    cls = _BY_PHASE[result[PHASE_KEY]]
    if cls is FinalReport:
        metrics = {k: float(result[k]) for k in final_metric_names() if k in result}
        return FinalReport(metrics=metrics, **{k: result[k] for k in _FINAL_SCALARS})
    return cls(**{f.name: result[f.name] for f in dataclasses.fields(cls)})
