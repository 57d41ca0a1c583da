"""Helpers shared by the benchmark scripts: the machine's matmul rate, FLOP counting, JSON output."""

from __future__ import annotations

import json
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode


def matmul_rate(n: int = 2048, seconds: float = 2.0) -> float:
    """The machine's own float32 matrix-multiply rate (FLOP/s): best of repeated n x n x n products."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    for _ in range(3):
        a @ b
    best = 0.0
    t_end = time.perf_counter() + seconds
    while time.perf_counter() < t_end:
        t0 = time.perf_counter()
        a @ b
        best = max(best, 2 * n**3 / (time.perf_counter() - t0))
    return best


def count_flops(fn: Callable[[], object]) -> int:
    """FLOPs of one call of fn as torch's FlopCounterMode counts them (matmuls and convolutions)."""
    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


def time_calls(fn: Callable[[], object], *, repeats: int, warmup: int = 3) -> float:
    """Seconds per call of fn, after a warm-up."""
    for _ in range(warmup):
        fn()
    t0 = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - t0) / repeats


def machine() -> dict:
    return {
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "processor": platform.processor() or platform.machine(),
    }


def write_json(result: dict, out: str | os.PathLike | None, *, echo: bool = True) -> None:
    """Write ``result`` to ``out`` (parents created); ``echo`` prints it too."""
    text = json.dumps(result, indent=2, default=str)
    if echo:
        print(text)
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(text + "\n")
