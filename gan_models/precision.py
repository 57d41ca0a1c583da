"""The numeric precision of the networks' passes: ``--precision fp32 | tf32 | bf16`` (default fp32).

fp32: float32 tensors and float32 arithmetic ("ieee"), also where a library would default to TF32
  (cuDNN convolutions do): the reference every other mode is compared with.
tf32: float32 tensors; CUDA matmuls and convolutions run on TF32 tensor cores (inputs rounded to a 10-bit
  mantissa, float32 accumulation). A CPU has no TF32 and computes exactly as fp32.
bf16: ``torch.autocast`` to bfloat16: matmuls and convolutions in bfloat16, weights, optimiser state and
  the losses (gan_models.losses casts D's outputs) in float32. bfloat16 keeps float32's exponent range, so
  no loss scaling is needed.

The TF32 switches are process-wide in torch; ``precision_scope`` sets them for its body and restores
what was there, so a trial's choice never leaks into the next code that runs in the same worker.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from typing import Any, cast

import torch

from .config import PRECISION_NAMES
from .registry import check_choice

# precision -> torch's float32 arithmetic for CUDA matmuls and cuDNN convolutions
_FP32_ARITHMETIC = {"fp32": "ieee", "tf32": "tf32", "bf16": "ieee"}


@contextmanager
def precision_scope(precision: str, device: torch.device | str) -> Iterator[None]:
    """Run the body's forward passes on ``device`` at ``precision`` (see the module docstring)."""
    check_choice("precision", precision, PRECISION_NAMES)
    device = torch.device(device)
    matmul, conv = torch.backends.cuda.matmul, cast(Any, torch.backends.cudnn).conv  # conv: untyped in torch
    saved = matmul.fp32_precision, conv.fp32_precision
    matmul.fp32_precision = conv.fp32_precision = _FP32_ARITHMETIC[precision]
    autocast = (torch.autocast(device.type, dtype=torch.bfloat16) if precision == "bf16" else nullcontext())
    try:
        with autocast:
            yield
    finally:
        matmul.fp32_precision, conv.fp32_precision = saved
