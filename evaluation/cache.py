"""On-disk cache of the real set's statistics, one torch file per key.

The key names everything the numbers depend on: dataset, split, how the n_real images were chosen,
the feature space and the sha256 of the weights that produced it. The key is also stored inside the
file and compared on load, so a renamed or stale file is recomputed rather than trusted.
Files are written atomically (temp file + rename): concurrent trials computing the same entry
at once each write a whole file and the last rename wins.
"""

from __future__ import annotations

import os
import pickle
import zipfile
from pathlib import Path

import torch

CACHE_ENV = "GAN_EVAL_CACHE"
DEFAULT_CACHE_DIR = Path.home() / ".cache" / "gan-refine-search" / "eval"
CACHE_VERSION = 2  # 2: cached `radii` hold squared k-NN distances (no sqrt round trip)


def resolve_cache_dir(cache_dir: str | os.PathLike | None = None) -> Path:
    """The explicit folder, else ``$GAN_EVAL_CACHE``, else the per-user cache folder."""
    if cache_dir is not None and str(cache_dir) != "":
        return Path(cache_dir).expanduser()
    env = os.environ.get(CACHE_ENV, "")
    return Path(env).expanduser() if env else DEFAULT_CACHE_DIR


def cache_key(*, dataset: str, split: str, n_real: int, space: str, weights_sha256: str, subset: str) -> dict:
    return {"version": CACHE_VERSION, "dataset": dataset, "split": split, "n_real": n_real,
            "subset": subset, "space": space, "weights_sha256": weights_sha256}


def cache_path(cache_dir: Path, key: dict) -> Path:
    sha = key["weights_sha256"][:16]
    return cache_dir / f"{key['dataset']}-{key['split']}-n{key['n_real']}-{key['space']}-{sha}-v{key['version']}.pt"


def load_entry(path: Path, key: dict) -> dict[str, torch.Tensor] | None:
    """The stored tensors, or None when the file is absent, unreadable or written under another key."""
    if not path.is_file():
        return None
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile, ValueError, OSError):
        return None
    if not isinstance(payload, dict) or payload.get("key") != key:
        return None
    return payload["tensors"]


def save_entry(path: Path, key: dict, tensors: dict[str, torch.Tensor]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    torch.save({"key": key, "tensors": {k: v.detach().cpu() for k, v in tensors.items()}}, tmp)
    os.replace(tmp, path)
