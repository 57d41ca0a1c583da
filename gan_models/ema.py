"""An exponential moving average of the generator's weights, the generator that samples by default.

A GAN's generator weights oscillate around a good solution as G and D chase each other; averaging
them over the last few thousand steps (Yazici et al. 2019, "The unusual effectiveness of averaging in
GAN training"; BigGAN, StyleGAN) gives a generator better than any single iterate. The average is
ramped so that the random initial weights do not dominate it early (the schedule of TensorFlow's
``ExponentialMovingAverage(num_updates=t)``):

    β_t = min(β, (1 + t) / (10 + t))                 t: generator updates so far (1 after the first)
    θ_ema ← β_t θ_ema + (1 − β_t) θ                  for every float parameter and buffer of G

Buffers (batch norm's running mean and variance) are averaged like the weights, so the averaged
network's normalisation matches its averaged weights; integer buffers (batch counters) are copied.
``β = 0`` turns the average off: the trainer then samples from G itself.
"""

from __future__ import annotations

import copy

import torch
from torch import Tensor, nn

RAMP_OFFSET = 10  # the 10 in (1 + t) / (10 + t): β_1 = 2/11, β_100 = 0.918, β_1000 = 0.991


def ema_decay_at(decay: float, step: int) -> float:
    """β_t for the update after generator step ``step`` (>= 1)."""
    return min(decay, (1.0 + step) / (RAMP_OFFSET + step))


def ema_copy(model: nn.Module) -> nn.Module:
    """A frozen copy of ``model`` to hold the average (same device, eval mode, no gradients)."""
    average = copy.deepcopy(model).eval()
    average.requires_grad_(False)
    return average


def _float_tensors(model: nn.Module) -> tuple[list[Tensor], list[Tensor]]:
    """(float tensors, other buffers) of the model's state, parameters first, in a fixed order."""
    floats = [p.data for p in model.parameters()]
    others: list[Tensor] = []
    for b in model.buffers():
        (floats if b.is_floating_point() else others).append(b)
    return floats, others


@torch.no_grad()
def update_ema_(average: nn.Module, model: nn.Module, beta: float) -> None:
    """θ_ema ← β θ_ema + (1 − β) θ in place (one fused pass, no host sync); integer buffers copied."""
    avg_floats, avg_others = _float_tensors(average)
    new_floats, new_others = _float_tensors(model)
    # lerp(a, b, w) = a + w (b − a) = (1 − w) a + w b, with w = 1 − β
    torch._foreach_lerp_(avg_floats, new_floats, 1.0 - beta)
    for a, b in zip(avg_others, new_others, strict=True):
        a.copy_(b)
