"""Progress of a long loop, for people and for logs: a live bar on a terminal, and elsewhere (a log
file, CI, a Ray job's log) one line every ``every`` steps with the rate, the latest values and an
ETA, so that a run whose output is not a terminal is never silent until its end."""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from typing import IO

from .registry import check_choice


def _clock(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    m, s = divmod(int(round(seconds)), 60)
    h, m = divmod(m, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class StepProgress:
    """``update(step, **values)`` after each step of ``total``; ``close()`` at the end.

    mode: "bar" (tqdm), "lines" (a line every ``every`` steps and at the last), "off", or "auto"
    (a bar when ``stream`` is a terminal, else lines). ``images_per_step`` turns the step rate
    into images/s.
    """

    def __init__(self, total: int, *, initial: int = 0, mode: str = "auto", every: int = 0, label: str = "step",
                 images_per_step: int = 0, stream: IO[str] | None = None,
                 clock: Callable[[], float] = time.perf_counter):
        check_choice("progress mode", mode, ("auto", "bar", "lines", "off"))
        self.stream = sys.stderr if stream is None else stream
        if mode == "auto":
            mode = "bar" if getattr(self.stream, "isatty", lambda: False)() else "lines"
        self.mode, self.total, self.initial, self.label = mode, total, initial, label
        self.every = every if every > 0 else max(1, (total - initial) // 20)  # ~20 lines a run
        self.images_per_step = images_per_step
        self.clock = clock
        self.started = clock()
        self._bar = None
        if mode == "bar":
            from tqdm.auto import tqdm

            self._bar = tqdm(total=total, initial=initial, unit=label, dynamic_ncols=True, file=self.stream)

    def due(self, step: int) -> bool:
        """Whether ``update(step)`` shows values (a line, or the bar's postfix): a caller whose values cost
        something (a GPU sync) computes them only then."""
        return self.mode != "off" and ((step - self.initial) % self.every == 0 or step == self.total)

    def update(self, step: int, **values: float) -> None:
        if self.mode == "off":
            return
        shown = " ".join(f"{k} {v:.4g}" for k, v in values.items())
        if self._bar is not None:
            self._bar.update(step - self._bar.n)
            if shown:
                self._bar.set_postfix_str(shown, refresh=False)
            return
        if not self.due(step):
            return
        print(self.line(step, shown), file=self.stream, flush=True)

    def line(self, step: int, shown: str = "") -> str:
        done = step - self.initial
        elapsed = self.clock() - self.started
        rate = done / elapsed if elapsed > 0 else math.inf
        eta = (self.total - step) / rate if done > 0 and rate > 0 else math.inf
        speed = f"{rate * self.images_per_step:,.0f} images/s" if self.images_per_step else f"{rate:.3g} {self.label}/s"
        width = len(str(self.total))
        parts = [f"{self.label} {step:>{width}}/{self.total}", speed, shown, f"elapsed {_clock(elapsed)}",
                 f"ETA {_clock(eta)}"]
        return "  ".join(p for p in parts if p)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
