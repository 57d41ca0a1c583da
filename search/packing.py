"""How many trials shared each GPU at once: the figure that decides a GPU cluster's throughput.

A trial that asks for ``--gpus-per-trial 0.25`` lets Ray put four on one GPU; whether four really
ran together depends on the CPUs, the trials' lengths and the scheduler. Each trial reports the GPU
Ray gave it (``<node address>:<GPU id>``, Optuna user attr ``gpu``); its run is the interval from
when Ray started its actor (user attr ``ran_from``, the driver's clock; Optuna's own start is the
ask, which Ray makes ahead while the trial still waits for a GPU share) to Optuna's end. Per GPU:

    at_once(t) = #{trials i on the GPU : start_i <= t < end_i}
    max_at_once = max_t at_once(t)
    mean_at_once = (1 / |busy|) * integral over busy of at_once(t) dt,   busy = {t : at_once(t) >= 1}

(the mean is taken while the GPU had work, so idle gaps between sessions do not dilute it).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

RAN_FROM_ATTR = "ran_from"  # seconds since the epoch when Ray started the trial's actor


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


def _seconds(when: Any) -> float | None:
    """Seconds since the epoch of a datetime (Optuna's naive local ones) or of a number; None for
    a missing value (None, NaN, NaT)."""
    if isinstance(when, (int, float)):
        return float(when) if math.isfinite(when) else None
    try:
        return when.timestamp()
    except (AttributeError, ValueError):  # None, or NaT in a table
        return None


def run_interval(row: Mapping[str, Any]) -> tuple[float, float] | None:
    """[start, end) in seconds of a trial row holding ``ran_from`` (falling back to Optuna's
    ``datetime_start`` where a trial has none) and ``datetime_complete``; None while it runs."""
    start, end = _seconds(row.get(RAN_FROM_ATTR)), _seconds(row.get("datetime_complete"))
    if start is None:
        start = _seconds(row.get("datetime_start"))
    return None if start is None or end is None else (start, end)


def gpu_sharing(rows: Iterable[dict[str, Any]]) -> list[Sharing]:
    """Per GPU, from trial rows holding ``gpu`` and what ``run_interval`` reads; a row without a
    GPU or not finished is skipped."""
    by_gpu: dict[str, list[tuple[float, float]]] = {}
    for row in rows:
        gpu, interval = row.get("gpu"), run_interval(row)
        if not isinstance(gpu, str) or not gpu or interval is None:
            continue
        by_gpu.setdefault(gpu, []).append(interval)
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


def trials_per_node(resources: Mapping[str, float], *, cpus_per_trial: float, gpus_per_trial: float) -> tuple[int, int]:
    """(trials at once that the node's CPUs allow, trials at once that its GPUs allow) for one
    node's Ray resources. Ray counts resources in units of 1e-4, so 3 x 0.3333 fits one GPU."""
    if not (cpus_per_trial > 0 and gpus_per_trial > 0):
        raise ValueError(f"both requests must be > 0, got cpus_per_trial={cpus_per_trial:g}, "
                         f"gpus_per_trial={gpus_per_trial:g}")
    return (math.floor(resources.get("CPU", 0.0) / cpus_per_trial + 1e-6),
            math.floor(resources.get("GPU", 0.0) / gpus_per_trial + 1e-6))


def cpu_bound_note(nodes: Iterable[Mapping[str, float]], *, cpus_per_trial: float,
                   gpus_per_trial: float) -> str | None:
    """A note when a GPU node's CPUs, not its GPUs, cap how many trials share its GPUs: the GPU
    hours are paid for either way, so the user hears which --cpus-per-trial would fill them."""
    if not 0 < gpus_per_trial < 1:
        return None
    for res in nodes:
        by_cpu, by_gpu = trials_per_node(res, cpus_per_trial=cpus_per_trial, gpus_per_trial=gpus_per_trial)
        if by_gpu >= 1 and by_cpu < by_gpu:
            fill = math.floor(res.get("CPU", 0.0) / by_gpu * 100) / 100  # rounded down, so all by_gpu fit
            advice = (f"--cpus-per-trial {fill:g} would fill them" if fill > 0 else
                      "the node has fewer CPUs than trials its GPUs could take")
            return (f"CPUs cap GPU sharing: a node with {res.get('GPU', 0.0):g} GPUs and {res.get('CPU', 0.0):g} "
                    f"CPUs runs {by_cpu} trials at once where --gpus-per-trial {gpus_per_trial:g} fits {by_gpu}; "
                    f"{advice}")
    return None
