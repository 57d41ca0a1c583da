"""Checkpoints: one torch file holding the config, both networks, both optimisers, the step,
the RNG states and the loss history. Written atomically (temp file + rename) so an interrupted
save never replaces a good checkpoint with half a file; read back with ``weights_only=True``.

Also the check every CLI makes before any work on a folder it will write (``check_writable_dir``).
"""

from __future__ import annotations

import io
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import torch
from torch import nn

from .config import ConfigError, TrainConfig
from .networks import Discriminator, NetworkConfig, build_discriminator, build_generator

_Net = TypeVar("_Net", bound=nn.Module)

FORMAT = "gan-refine-search/checkpoint/v1"
_ZIP_MAGIC = b"PK\x03\x04"  # torch.save's (default) zip archive; save_checkpoint always writes one


class CheckpointError(RuntimeError):
    """A checkpoint file is missing, unreadable, or not one of ours."""


class OutputDirError(ValueError):
    """An output folder is a file, or cannot be created or written."""


def check_writable_dir(path: str | os.PathLike, *, what: str = "output folder") -> Path:
    """``path`` if it is a folder this process can write, or can be created as one; else OutputDirError.

    Creates nothing: it probes the folder (or, when absent, its nearest existing ancestor) with a
    temp file removed at once. Root ignores permission bits, so probing is the only honest test.
    ``what`` names the folder in the message (a CLI passes its flag, e.g. ``--out``).
    """
    path = Path(path).expanduser()
    if _exists(path) and not path.is_dir():
        raise OutputDirError(f"{what} {path} exists and is not a folder; choose a folder path")
    probe = path
    while not _exists(probe):
        probe = probe.parent
    if not probe.is_dir():
        raise OutputDirError(f"{what} {path} cannot be created: {probe} is a file, not a folder")
    try:
        fd, name = tempfile.mkstemp(dir=probe, prefix=".write-test-")
        os.close(fd)
        os.unlink(name)
    except OSError as exc:
        raise OutputDirError(f"{what} {path} is not writable: cannot create files in {probe} "
                             f"({exc.strerror or exc})") from None
    return path


def _exists(path: Path) -> bool:
    try:
        return path.exists()
    except OSError:  # e.g. a permission error on a parent: treat as absent, the probe then fails
        return False


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
        with open(path, "rb") as f:
            magic = f.read(len(_ZIP_MAGIC))
    except OSError as exc:
        raise CheckpointError(f"checkpoint {path} is corrupt or unreadable: {exc.strerror or exc}") from None
    if magic != _ZIP_MAGIC:  # text, random bytes, a legacy pickle: torch.load would fail in odd ways
        raise CheckpointError(f"checkpoint {path} is corrupt or unreadable: not a torch archive "
                              f"(expected a checkpoint.pt written by gan_models.train)")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # truncated zip, pickle errors, refused classes, bad storages
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if first.startswith("Weights only load failed"):
            first = "it holds objects a weights-only load refuses (not a plain tensor checkpoint)"
        raise CheckpointError(f"checkpoint {path} is corrupt or unreadable: {first}") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a gan-refine-search checkpoint (expected format {FORMAT!r})")
    if "config" not in payload:
        raise CheckpointError(f"checkpoint {path} has no config")
    return payload


@dataclass
class LoadedModels:
    """Networks rebuilt from a checkpoint, in eval mode. Either network may be absent.

    ``generator`` is the one that samples: the weight average (gan_models.ema) when the run kept one,
    unless ``load_models(raw=True)`` asked for G's own weights; ``averaged`` says which it is."""

    config: TrainConfig
    step: int
    generator: nn.Module | None
    discriminator: Discriminator | None
    averaged: bool = False


def load_models(path: str | os.PathLike, *, device: str | torch.device = "cpu", raw: bool = False) -> LoadedModels:
    payload = load_checkpoint(path, map_location=device)
    try:
        config = TrainConfig.from_dict(payload["config"])
    except (ConfigError, TypeError) as exc:
        raise CheckpointError(f"checkpoint {path} has an invalid config: {exc}") from None

    def restore(key: str, build: Callable[[NetworkConfig], _Net]) -> _Net | None:
        state = payload.get(key)
        if state is None:
            return None
        net = build(config.network).to(device)
        try:
            net.load_state_dict(state)
        except (RuntimeError, TypeError, AttributeError) as exc:  # wrong keys/shapes, or not a state dict
            raise CheckpointError(f"checkpoint {path}: {key} weights do not fit its config: "
                                  f"{str(exc).splitlines()[0]}") from None
        return net.eval()

    averaged = not raw and payload.get("generator_ema") is not None
    generator = restore("generator_ema" if averaged else "generator", build_generator)
    discriminator = restore("discriminator", build_discriminator)
    return LoadedModels(config=config, step=int(payload.get("step", 0)),
                        generator=generator, discriminator=discriminator, averaged=averaged)
