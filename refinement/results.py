"""Writing a RefineResult to a folder: samples, the frontier table and its pictures."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import torch

from gan_models.images import save_grid

from .plots import plot_metrics, plot_precision_recall, save_strip
from .trajectory import RefineResult

GRID_SIZE = 100  # images in samples.png


def save_result(result: RefineResult, out_dir: str | os.PathLike) -> dict[str, Path]:
    """Write into ``out_dir`` (created if needed) and return {name: path}:
    samples.pt (torch file: images float32 [n, 1, 28, 28], k_eff, best_step, config, seed; read with
    weights_only=True), samples.png (the first 100), frontier.parquet, frontier.png (metrics vs step),
    precision_recall.png (only when the trajectory was scored), strip.png, result.json (summary)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    config = result.config.to_dict() if result.config is not None else {}
    title = f"{config.get('method', '')} refinement, K_eff = {result.k_eff:.4g}" if config else ""
    paths: dict[str, Path] = {}
    paths["samples"] = out / "samples.pt"
    torch.save({"images": result.samples.detach().cpu().float(), "k_eff": result.k_eff, "best_step": result.best_step,
                "config": config, "seed": result.seed}, paths["samples"])
    paths["samples_png"] = save_grid(result.samples[:GRID_SIZE], out / "samples.png", nrow=10)
    paths["frontier"] = out / "frontier.parquet"
    result.trajectory.to_parquet(paths["frontier"], index=False)
    paths["frontier_png"] = plot_metrics(result.trajectory, out / "frontier.png", title=title)
    if {"precision", "recall"} <= set(result.trajectory.columns):
        paths["precision_recall_png"] = plot_precision_recall(result.trajectory, out / "precision_recall.png")
    paths["strip_png"] = save_strip(result.strip, result.strip_steps, out / "strip.png")
    paths["summary"] = out / "result.json"
    summary = {
        "k_eff": None if math.isnan(result.k_eff) else result.k_eff,
        "best_step": result.best_step,
        "n": int(result.samples.shape[0]),
        "seed": result.seed,
        "config": config,
        "scored_steps": list(result.strip_steps),
    }
    paths["summary"].write_text(json.dumps(summary, indent=2) + "\n")
    return paths
