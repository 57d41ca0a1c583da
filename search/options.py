"""The command line of ``python -m search.run``, as given, checked once at construction.

``None`` means "not given": the study's stored value applies on ``--resume``, else its default, and
for ``budget`` and ``gpus_per_trial`` what the hardware supports (search.hardware). Numbers are checked
here, before anything else reads them; names (study, budget, sampler, ...) are checked against their
registries by search.settings, which knows the study.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import SearchError

DEFAULT_RUNS_DIR = "runs"
DEFAULT_CONFIRM_TOP = 3
DEFAULT_TIME_LIMIT_MIN = 60.0


@dataclass(frozen=True)
class SearchOptions:
    study: str | None = None  # registry name; on --resume taken from the stored study
    name: str | None = None  # Optuna study / MLflow experiment name; default: the study's name
    trials: int | None = None  # the study's total (--resume may raise it)
    budget: str | None = None  # None: chosen for the hardware (search.hardware)
    sampler: str | None = None
    pruner: str | None = None
    seed: int | None = None
    dataset: str | None = None
    precision: str | None = None
    study_file: str | None = None
    enqueue_file: str | None = None
    recipes: bool = True  # enqueue the known-good recipes (search.recipes) as a new study's first trials
    confirm: int = 0  # K: retrain the best configurations with K more seeds (search.confirm)
    confirm_top: int = DEFAULT_CONFIRM_TOP
    time_limit_min: float = DEFAULT_TIME_LIMIT_MIN  # without --trials: as many trials as fit in it here
    cpus_per_trial: float = 1.0
    gpus_per_trial: float | None = None  # None: a quarter GPU per trial where there are GPUs, else none
    max_concurrent: int | None = None
    max_failures: int = 2
    storage: str | None = None
    storage_path: str | None = None
    tracking_uri: str | None = None
    address: str | None = None
    num_cpus: int | None = None
    num_gpus: int | None = None  # GPUs of a locally started Ray (None: what CUDA shows)
    data_root: str | None = None
    download: bool = True
    resume: bool = False
    runs_dir: str = DEFAULT_RUNS_DIR
    verbose: int = 0  # 0: our status line and one line per trial; 1: Ray Tune's own tables and logs too
    progress_every_s: float = 30.0  # the status line's period when stdout is not a terminal

    def __post_init__(self) -> None:
        _positive("--trials", self.trials, "a positive integer")
        _positive("--max-concurrent", self.max_concurrent, "a positive integer")
        _positive("--num-cpus", self.num_cpus, "a positive integer")
        _positive("--confirm-top", self.confirm_top, "a positive integer")
        if not self.cpus_per_trial > 0:
            raise SearchError(f"--cpus-per-trial must be > 0, got {self.cpus_per_trial:g}")
        if self.gpus_per_trial is not None and not self.gpus_per_trial >= 0:
            raise SearchError(f"--gpus-per-trial must be >= 0, got {self.gpus_per_trial:g}")
        if self.max_failures < 0:
            raise SearchError(f"--max-failures must be >= 0, got {self.max_failures}")
        if self.confirm < 0:
            raise SearchError(f"--confirm must be an integer >= 0 (extra seeds per best configuration), "
                              f"got {self.confirm}")
        if self.num_gpus is not None and self.num_gpus < 0:
            raise SearchError(f"--num-gpus must be an integer >= 0, got {self.num_gpus}")
        if self.num_gpus is not None and self.address:
            raise SearchError("--num-gpus sets a locally started Ray's GPUs; with --address the cluster's nodes "
                              "declare their own (drop one of the two)")
        if not self.time_limit_min > 0:
            raise SearchError(f"--time-limit must be > 0 minutes, got {self.time_limit_min:g}")
        if not self.progress_every_s > 0:
            raise SearchError(f"--progress-every must be > 0 seconds, got {self.progress_every_s:g}")

    @property
    def cluster(self) -> bool:
        return self.address is not None


def _positive(flag: str, value: int | None, what: str) -> None:
    if value is not None and value <= 0:
        raise SearchError(f"{flag} must be {what}, got {value}")
