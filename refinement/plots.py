"""Pictures of a refinement trajectory (PNG): metrics against step, the precision/recall
frontier, and a strip of the same samples across the scored steps."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
from torch import Tensor


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_metrics(trajectory: pd.DataFrame, path: str | os.PathLike, *, title: str = "") -> Path:
    """FID (left axis) and precision/recall (right axis) against the refinement step. Without
    evaluator columns it plots the mean discriminator score and the displacement instead."""
    plt = _pyplot()
    path = Path(path)
    steps = trajectory["step"]
    fig, left = plt.subplots(figsize=(7, 4))
    if "fid" in trajectory.columns:
        left.plot(steps, trajectory["fid"], "o-", color="tab:red", label="FID")
        left.set_ylabel("FID", color="tab:red")
        right_cols = [c for c in ("precision", "recall") if c in trajectory.columns]
        right_label = "precision / recall"
    else:
        left.plot(steps, trajectory["d_mean"], "o-", color="tab:red", label="mean D")
        left.set_ylabel("mean D(x)", color="tab:red")
        right_cols = ["displacement"]
        right_label = "mean ||x - y||"
    right = left.twinx()
    for col, color in zip(right_cols, ("tab:blue", "tab:green"), strict=False):  # one or two columns
        right.plot(steps, trajectory[col], "s--", color=color, label=col)
    right.set_ylabel(right_label)
    left.set_xlabel("refinement step")
    handles = left.get_legend_handles_labels()[0] + right.get_legend_handles_labels()[0]
    left.legend(handles, [h.get_label() for h in handles], loc="best", fontsize=8)
    left.grid(alpha=0.3)
    if title:
        left.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_precision_recall(trajectory: pd.DataFrame, path: str | os.PathLike, *, title: str = "") -> Path:
    """Precision against recall, one point per scored step (labelled), joined in step order."""
    if not {"precision", "recall"} <= set(trajectory.columns):
        raise ValueError("the trajectory has no precision/recall columns (it was run without an evaluator)")
    plt = _pyplot()
    path = Path(path)
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot(trajectory["recall"], trajectory["precision"], "o-")
    for step, r, p in zip(trajectory["step"], trajectory["recall"], trajectory["precision"], strict=True):
        ax.annotate(str(int(step)), (r, p), textcoords="offset points", xytext=(4, 4), fontsize=8)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.grid(alpha=0.3)
    ax.set_title(title or "precision/recall frontier (labels: step)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def save_strip(strip: Tensor, steps: Sequence[int], path: str | os.PathLike) -> Path:
    """strip [S, m, 1, H, W] in [-1, 1] -> one PNG: a row per sample, a column per scored step."""
    plt = _pyplot()
    path = Path(path)
    n_steps, m = strip.shape[0], strip.shape[1]
    h, w = strip.shape[-2], strip.shape[-1]
    # [S, m, 1, H, W] -> [m * H, S * W], one tile per (sample, step)
    tiles = strip.detach().cpu().float().clamp(-1, 1)[:, :, 0]
    canvas = tiles.permute(1, 2, 0, 3).reshape(m * h, n_steps * w)
    fig, ax = plt.subplots(figsize=(0.6 * n_steps + 0.8, 0.6 * m + 0.6))
    ax.imshow(((canvas + 1) / 2).numpy(), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    ax.set_xticks([w * k + w / 2 - 0.5 for k in range(n_steps)], [str(s) for s in steps], fontsize=7)
    ax.set_yticks([])
    ax.set_xlabel("refinement step")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path

