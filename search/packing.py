"""How many trials shared each GPU at once: the figure that decides a GPU cluster's throughput.

A trial that asks for ``--gpus-per-trial 0.25`` lets Ray put four on one GPU; whether four really
ran together depends on the CPUs, the trials' lengths and the scheduler. Each trial reports the GPU
Ray gave it (``<node address>:<GPU id>``, Optuna user attr ``gpu``); its run is the interval from
Optuna's start to its end. Per GPU:

    at_once(t) = #{trials i on the GPU : start_i <= t < end_i}
    max_at_once = max_t at_once(t)
    mean_at_once = (1 / |busy|) * integral over busy of at_once(t) dt,   busy = {t : at_once(t) >= 1}

(the mean is taken while the GPU had work, so idle gaps between sessions do not dilute it).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Sharing:
    """One GPU's share of the study."""

    gpu: str  # <node address>:<GPU id>, as Ray assigned it
    trials: int
    max_at_once: int
    mean_at_once: float  # time-weighted, while at least one trial ran
    busy_s: float  # seconds with at least one trial


def trials_at_once(intervals: Sequence[tuple[float, float]]) -> tuple[int, float, float]:
    """(max, time-weighted mean while busy, busy seconds) of how many [start, end) intervals overlap.

    A sweep over the sorted start (+1) and end (-1) events; an end sorts before a start at the same
    instant, so back-to-back trials never count as overlapping.
    """
    events = sorted([(end, -1) for start, end in intervals if end > start]
                    + [(start, +1) for start, end in intervals if end > start])
    running = peak = 0
    busy = weighted = 0.0
    last = None
    for t, delta in events:
        if last is not None and running > 0:
            busy += t - last
            weighted += running * (t - last)
        running += delta
        peak = max(peak, running)
        last = t
    return peak, (weighted / busy if busy > 0 else 0.0), busy


def gpu_sharing(rows: Iterable[dict[str, Any]]) -> list[Sharing]:
    """Per GPU, from trial rows holding ``gpu``, ``datetime_start`` and ``datetime_complete``
    (Optuna's datetimes; a row without a GPU or not finished is skipped)."""
    by_gpu: dict[str, list[tuple[float, float]]] = {}
    for row in rows:
        gpu, start, end = row.get("gpu"), row.get("datetime_start"), row.get("datetime_complete")
        if not isinstance(gpu, str) or not gpu or start is None or end is None:
            continue
        try:
            by_gpu.setdefault(gpu, []).append((start.timestamp(), end.timestamp()))
        except (AttributeError, ValueError):  # NaT / a missing timestamp in a table
            continue
    out = []
    for gpu, intervals in sorted(by_gpu.items()):
        peak, mean, busy = trials_at_once(intervals)
        out.append(Sharing(gpu=gpu, trials=len(intervals), max_at_once=peak, mean_at_once=mean, busy_s=busy))
    return out


def sharing_metrics(sharing: Sequence[Sharing]) -> dict[str, float]:
    """The study-level figures for its parent MLflow run (none when no trial had a GPU)."""
    if not sharing:
        return {}
    return {"gpus_used": float(len(sharing)),
            "gpu_trials_at_once_max": float(max(s.max_at_once for s in sharing)),
            "gpu_trials_at_once_mean": sum(s.mean_at_once for s in sharing) / len(sharing)}


def sharing_lines(sharing: Sequence[Sharing]) -> list[str]:
    """One line per GPU for the study's printed outcome."""
    return [f"GPU {s.gpu}: {s.trials} trials, up to {s.max_at_once} at once "
            f"(mean {s.mean_at_once:.2f} over {s.busy_s:.0f} s busy)" for s in sharing]
