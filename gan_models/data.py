"""MNIST-family datasets held in memory as one uint8 tensor, batched without per-sample Python work.

The data root comes from an explicit argument (the CLIs' ``--data-root``) or the environment
variable ``GAN_DATA_ROOT``; it uses torchvision's layout (``ROOT/MNIST/raw/*-ubyte``).
Files are downloaded through torchvision only when they are absent and ``download`` is allowed.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .paths import missing_folders, remove_empty_folders
from .registry import check_choice, lookup

if TYPE_CHECKING:  # torch and torchvision are imported where used, so the names here load without them
    import torch
    from torch import Tensor
    from torchvision import datasets as tv_datasets

DATA_ROOT_ENV = "GAN_DATA_ROOT"
DEFAULT_DATA_ROOT = Path.home() / ".cache" / "gan-refine-search" / "data"


class _TorchvisionClasses(Mapping):
    """name -> torchvision dataset class, importing torchvision on the first class looked up: the
    names alone (``in``, iteration, ``len``) need no torch, so the CLIs' ``--help`` can list them."""

    def __init__(self, class_names: dict[str, str]):
        self._class_names = class_names

    def __getitem__(self, name: str) -> type[tv_datasets.MNIST]:
        class_name = self._class_names[name]
        from torchvision import datasets

        return getattr(datasets, class_name)

    def __iter__(self) -> Iterator[str]:
        return iter(self._class_names)

    def __len__(self) -> int:
        return len(self._class_names)

    def __repr__(self) -> str:
        return f"{{{', '.join(f'{k!r}: torchvision.datasets.{v}' for k, v in self._class_names.items())}}}"


# name -> torchvision class; every one of them stores 28x28 grey images and 10 classes.
DATASETS: Mapping[str, type[tv_datasets.MNIST]] = _TorchvisionClasses({
    "mnist": "MNIST",
    "fashion-mnist": "FashionMNIST",
    "kmnist": "KMNIST",
})
SPLITS = ("train", "test")
IMAGE_SHAPE = (1, 28, 28)


class DataNotFoundError(FileNotFoundError):
    """The dataset's files are absent and could not be downloaded."""


@dataclass(frozen=True)
class ImageSet:
    """A whole split in memory: ``images`` uint8 [N, 28, 28], ``labels`` int64 [N]."""

    name: str
    split: str
    images: Tensor
    labels: Tensor

    def __len__(self) -> int:
        return self.images.shape[0]


def resolve_data_root(data_root: str | os.PathLike | None = None) -> Path:
    """The explicit root, else ``$GAN_DATA_ROOT``, else the per-user cache folder."""
    if data_root is not None and str(data_root) != "":
        return Path(data_root).expanduser()
    env = os.environ.get(DATA_ROOT_ENV, "")
    return Path(env).expanduser() if env else DEFAULT_DATA_ROOT


def check_dataset_name(name: str) -> type[tv_datasets.MNIST]:
    return lookup(DATASETS, name, what="dataset")


def expected_files(name: str) -> tuple[Path, list[str]]:
    """The folder (relative to the data root) and file names torchvision reads for ``name``."""
    cls = check_dataset_name(name)
    files = [Path(url).stem if url.endswith(".gz") else Path(url).name for url, _ in cls.resources]
    return Path(cls.__name__) / "raw", files


def load_images(
    name: str = "mnist",
    *,
    split: str = "train",
    data_root: str | os.PathLike | None = None,
    download: bool = False,
) -> ImageSet:
    """Load one split of an MNIST-family dataset as uint8 tensors.

    Raises DataNotFoundError (one line naming the folder, the files and how to point at them)
    when the files are absent and cannot be downloaded.
    """
    import torch

    cls = check_dataset_name(name)
    check_choice("split", split, SPLITS)
    root = resolve_data_root(data_root)
    raw_dir, files = expected_files(name)
    if not all((root / raw_dir / f).is_file() for f in files):
        if not download:
            raise DataNotFoundError(_missing_message(name, root / raw_dir, files))
        created = missing_folders(root / raw_dir)
        try:
            cls(str(root), train=True, download=True)
        except Exception as exc:  # offline: URLError, socket errors, checksum failures
            remove_empty_folders(created)  # a failed download leaves no empty folders behind
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise DataNotFoundError(
                _missing_message(name, root / raw_dir, files) + f" (the download failed: {reason})"
            ) from None
    try:
        ds = cls(str(root), train=(split == "train"), download=False)
    except RuntimeError as exc:  # torchvision's own "Dataset not found" / corrupt files
        raise DataNotFoundError(f"{_missing_message(name, root / raw_dir, files)} ({exc})") from None
    images = ds.data.contiguous()
    labels = torch.as_tensor(ds.targets, dtype=torch.int64)
    if images.dtype != torch.uint8 or tuple(images.shape[1:]) != IMAGE_SHAPE[1:]:
        raise DataNotFoundError(f"{name} files under {root / raw_dir} are not 28x28 uint8 images")
    return ImageSet(name=name, split=split, images=images, labels=labels)


def _missing_message(name: str, folder: Path, files: list[str]) -> str:
    return (
        f"{name} data not found: expected {', '.join(files)} in {folder}; "
        f"point at a folder holding {folder.parent.name}/raw with --data-root DIR "
        f"or {DATA_ROOT_ENV}=DIR, or allow a download"
    )


def to_float(images_u8: Tensor) -> Tensor:
    """uint8 [B, 28, 28] -> float32 [B, 1, 28, 28] in [-1, 1]."""
    import torch

    return images_u8.unsqueeze(1).to(torch.float32).div_(127.5).sub_(1.0)


class BatchSampler:
    """Endless shuffled batches from an in-memory uint8 tensor.

    One ``randperm`` per epoch and one fancy index per batch: no per-sample Python work.
    Its state (permutation, cursor, generator) is part of a checkpoint so a resumed run sees
    exactly the batches an uninterrupted one would.
    """

    def __init__(self, images_u8: Tensor, batch_size: int, *, seed: int, device: torch.device | str = "cpu"):
        if batch_size <= 0 or batch_size > images_u8.shape[0]:
            raise ValueError(f"batch_size must be in [1, {images_u8.shape[0]}], got {batch_size}")
        import torch

        self.device = torch.device(device)
        self.images = images_u8.to(self.device)
        self.batch_size = batch_size
        self.generator = torch.Generator().manual_seed(seed)
        self._new_epoch()

    def _new_epoch(self) -> None:
        import torch

        # drawn on the CPU (the same order on every device), moved once per epoch: no copy per batch
        self.perm = torch.randperm(self.images.shape[0], generator=self.generator).to(self.device)
        self.cursor = 0

    def next(self) -> Tensor:
        """The next float batch [B, 1, 28, 28] in [-1, 1] (drops the ragged end of an epoch)."""
        if self.cursor + self.batch_size > self.perm.shape[0]:
            self._new_epoch()
        idx = self.perm[self.cursor : self.cursor + self.batch_size]
        self.cursor += self.batch_size
        return to_float(self.images[idx])

    def state_dict(self) -> dict:
        return {"perm": self.perm.clone(), "cursor": self.cursor, "generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.perm = state["perm"].to(self.device, copy=True)
        self.cursor = int(state["cursor"])
        self.generator.set_state(state["generator"])
