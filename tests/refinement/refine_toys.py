"""Small analytic networks with known Lipschitz constants for the refinement tests."""

from __future__ import annotations

import torch
from torch import Tensor, nn


class Identity(nn.Module):
    """G(z) = z: 'images' are the 2-D points themselves."""

    def forward(self, z: Tensor) -> Tensor:
        return z


class LinearMap(nn.Module):
    """G(z) = W z, z [B, d] -> [B, m]."""

    def __init__(self, weight: Tensor):
        super().__init__()
        self.weight = nn.Parameter(weight.clone())

    def forward(self, z: Tensor) -> Tensor:
        return z @ self.weight.T


class LinearCritic(nn.Module):
    """D(x) = a . x: Lipschitz constant ||a||, attained by every pair along a."""

    def __init__(self, a: Tensor):
        super().__init__()
        self.a = nn.Parameter(a.clone())

    def forward(self, x: Tensor) -> Tensor:
        return x.flatten(1) @ self.a


class ConeCritic(nn.Module):
    """D(x) = -||x - c||: 1-Lipschitz, highest at c."""

    def __init__(self, c: Tensor):
        super().__init__()
        self.register_buffer("c", c.clone())

    def forward(self, x: Tensor) -> Tensor:
        return -(x.flatten(1) - self.c).norm(dim=1)


class FlatCritic(nn.Module):
    """D(x) = 3 everywhere (no gradient signal)."""

    def forward(self, x: Tensor) -> Tensor:
        return torch.full((x.shape[0],), 3.0, dtype=x.dtype, device=x.device)
