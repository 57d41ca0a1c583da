"""Pictures of a run: sample grids and loss curves (PNG), shared by every package's CLI."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import Tensor
from torchvision.utils import save_image


def save_grid(images: Tensor, path: str | os.PathLike, *, nrow: int = 8) -> Path:
    """images [N, 1, 28, 28] in [-1, 1] -> one PNG grid with ``nrow`` images per row."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_image(images.detach().cpu().clamp(-1, 1), path, nrow=nrow, normalize=True, value_range=(-1, 1), pad_value=1.0)
    return path


def save_loss_curve(history: dict[str, list[float]], path: str | os.PathLike) -> Path:
    """D and G losses against the generator step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(7, 4))
    steps = history["step"]
    for key, label in (("loss_d", "discriminator"), ("loss_g", "generator")):
        ax.plot(steps, _smooth(history[key]), label=label, lw=1.2)
    ax.set_xlabel("generator step")
    ax.set_ylabel("loss (moving average)")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _smooth(values: list[float], window: int = 25) -> list[float]:
    if len(values) < window:
        return values
    t = torch.tensor(values, dtype=torch.float64)
    kernel = torch.ones(window, dtype=torch.float64) / window
    head = [float(t[: i + 1].mean()) for i in range(window - 1)]
    return head + torch.nn.functional.conv1d(t.view(1, 1, -1), kernel.view(1, 1, -1)).view(-1).tolist()
