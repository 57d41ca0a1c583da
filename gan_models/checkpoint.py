"""Checkpoints: one torch file holding the config, both networks, both optimisers, the step,
the RNG states and the loss history. Written atomically (temp file + rename) so an interrupted
save never replaces a good checkpoint with half a file; read back with ``weights_only=True``.
"""

from __future__ import annotations

import io
import os
import pickle
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .config import ConfigError, TrainConfig
from .networks import Discriminator, build_discriminator, build_generator

FORMAT = "gan-refine-search/checkpoint/v1"


class CheckpointError(RuntimeError):
    """A checkpoint file is missing, unreadable, or not one of ours."""


def save_checkpoint(path: str | os.PathLike, payload: dict[str, Any]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()  # serialise in memory: torch names the archive after the file, keep it stable
    torch.save({"format": FORMAT, **payload}, buffer)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(buffer.getvalue())
    os.replace(tmp, path)
    return path


def load_checkpoint(path: str | os.PathLike, *, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except (RuntimeError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile, ValueError, OSError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"checkpoint {path} is corrupt or unreadable: {first}") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a gan-refine-search checkpoint (expected format {FORMAT!r})")
    if "config" not in payload:
        raise CheckpointError(f"checkpoint {path} has no config")
    return payload


@dataclass
class LoadedModels:
    """Networks rebuilt from a checkpoint, in eval mode. Either network may be absent."""

    config: TrainConfig
    step: int
    generator: nn.Module | None
    discriminator: Discriminator | None


def load_models(path: str | os.PathLike, *, device: str | torch.device = "cpu") -> LoadedModels:
    payload = load_checkpoint(path, map_location=device)
    try:
        config = TrainConfig.from_dict(payload["config"])
    except (ConfigError, TypeError) as exc:
        raise CheckpointError(f"checkpoint {path} has an invalid config: {exc}") from None
    nets: dict[str, nn.Module | None] = {}
    for key, build in (("generator", build_generator), ("discriminator", build_discriminator)):
        state = payload.get(key)
        if state is None:
            nets[key] = None
            continue
        net = build(config.network).to(device)
        try:
            net.load_state_dict(state)
        except RuntimeError as exc:
            raise CheckpointError(f"checkpoint {path}: {key} weights do not fit its config: "
                                  f"{str(exc).splitlines()[0]}") from None
        nets[key] = net.eval()
    return LoadedModels(config=config, step=int(payload.get("step", 0)),
                        generator=nets["generator"], discriminator=nets["discriminator"])
