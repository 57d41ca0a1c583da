"""What a running study prints: one live status line, and one line per finished trial.

The status line counts trials by state, names the best objective so far and its trial, and gives
the elapsed time and an ETA. The ETA comes from the measured pace of training images this session
(images trained / seconds), applied to the images still ahead: the rest of every running trial, and
for each trial not yet started the share of a full trial its pruner is expected to spend
(search.hardware.PRUNER_SPEND: a quarter under successive halving, all of it without a pruner). In a
terminal the line is a live bar (tqdm); elsewhere (a log file, CI, ``ray job logs``) it is printed
every ``every_s`` seconds.

The bridge feeds it (``StudyLink.progress``): a step reached by a running trial, a trial's final
state. Ray Tune calls ``on_step_end`` on each turn of its loop, which refreshes the line.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING

from ray.tune import Callback

from .hardware import PRUNER_SPEND
from .settings import StudyPlan

if TYPE_CHECKING:
    from tqdm import tqdm


def _clock(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


@dataclass
class StudyProgress(Callback):
    plan: StudyPlan
    n_before: dict[str, int]  # trials finished before this session, by state
    every_s: float = 30.0
    stream: IO[str] = field(default_factory=lambda: sys.stdout)
    live_bar: bool | None = None  # None: a bar when ``stream`` is a terminal
    clock: Callable[[], float] = time.monotonic

    def __post_init__(self) -> None:
        self.name, self.n_trials = self.plan.name, self.plan.settings.trials
        self.images_per_trial = self.plan.budget.images
        self.spend = PRUNER_SPEND[self.plan.settings.pruner][0]  # of a full trial, by a trial not yet started
        self.objectives: Sequence[str] = self.plan.study.objectives
        self.directions: Sequence[str] = self.plan.study.directions
        self.started = self.clock()
        self.counts = dict(self.n_before)
        self.running: dict[int, int] = {}  # trial number -> images trained so far
        self.started_at: dict[int, float] = {}  # trial number -> when Ray started it
        self.images_done = 0  # trained this session, finished trials included
        self.best: tuple[float, int] | None = None
        self._last_print = -math.inf
        if self.live_bar is None:
            self.live_bar = bool(getattr(self.stream, "isatty", lambda: False)())
        self._bar: tqdm | None = None

    # -- fed by the bridge --------------------------------------------------------------------------
    def trial_started(self, number: int) -> None:
        self.running.setdefault(number, 0)
        self.started_at.setdefault(number, self.clock())

    def trial_step(self, number: int, images: int) -> None:
        before = self.running.get(number, 0)
        if images > before:
            self.images_done += images - before
        self.running[number] = max(before, images)

    def trial_finished(self, number: int, state: str, values: Sequence[float] | None, images: int) -> None:
        self.trial_step(number, images)
        self.running.pop(number, None)
        began = self.started_at.pop(number, None)
        seconds = None if began is None else self.clock() - began
        self.counts[state] = self.counts.get(state, 0) + 1
        if values and state == "COMPLETE" and len(self.objectives) == 1:
            sign = 1.0 if self.directions[0] == "minimize" else -1.0
            if self.best is None or sign * values[0] < sign * self.best[0]:
                self.best = (values[0], number)
        if state == "PRUNED" and values:  # Optuna keeps the last intermediate value as a pruned trial's value
            shown = f"fid_intermediate {values[0]:.4g}"
        else:
            shown = ", ".join(f"{o} {v:.4g}" for o, v in zip(self.objectives, values, strict=False)) if values else "-"
        took = _clock(seconds) if seconds is not None else "?"
        self._write(f"trial {number:4d} {state:<8} {shown:<26} images {images:>9,}  time {took}")
        self.refresh()

    # -- the status line ------------------------------------------------------------------------------
    def eta_s(self) -> float:
        elapsed = self.clock() - self.started
        if self.images_done <= 0 or elapsed <= 0:
            return math.inf
        finished = sum(self.counts.values())
        not_started = max(0, self.n_trials - finished - len(self.running))
        ahead = (not_started * self.spend * self.images_per_trial
                 + sum(self.images_per_trial - s for s in self.running.values()))
        return ahead / (self.images_done / elapsed)

    def status(self) -> str:
        c = self.counts
        parts = [f"study {self.name}: {c.get('COMPLETE', 0)} complete, {c.get('PRUNED', 0)} pruned, "
                 f"{c.get('FAIL', 0)} failed, {len(self.running)} running of {self.n_trials}"]
        if self.best is not None:
            parts.append(f"best {self.objectives[0]} {self.best[0]:.4g} (trial {self.best[1]})")
        parts.append(f"elapsed {_clock(self.clock() - self.started)}")
        parts.append(f"ETA {_clock(self.eta_s())}")
        return " | ".join(parts)

    def refresh(self, force: bool = False) -> None:
        if self.live_bar:
            if self._bar is None:
                from tqdm import tqdm

                self._bar = tqdm(total=self.n_trials, initial=sum(self.n_before.values()), file=self.stream,
                                 dynamic_ncols=True, bar_format="{bar:20} {n_fmt}/{total_fmt} {desc}")
            self._bar.n = sum(self.counts.values())
            self._bar.set_description_str(self.status(), refresh=True)
            return
        now = self.clock()
        if force or now - self._last_print >= self.every_s:
            self._last_print = now
            self._write(self.status())

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def _write(self, line: str) -> None:
        if self._bar is not None:
            self._bar.write(line, file=self.stream)
        else:
            print(line, file=self.stream, flush=True)

    # -- Ray Tune's loop ------------------------------------------------------------------------------
    def on_trial_start(self, iteration: int, trials: list, trial, **info) -> None:
        self.trial_started(int(trial.config["optuna_trial"]))

    def on_step_end(self, iteration: int, trials: list, **info) -> None:
        self.refresh()

    def on_experiment_end(self, trials: list, **info) -> None:
        self.close()
