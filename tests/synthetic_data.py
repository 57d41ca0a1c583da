"""Synthetic MNIST-family files for tests: nothing is downloaded, torchvision reads them as the real ones."""

from __future__ import annotations

import struct
from pathlib import Path

import torch

from gan_models.data import expected_files


def write_idx_dataset(root: Path, name: str, *, n_train: int = 600, n_test: int = 200, seed: int = 0) -> Path:
    """Write ``name``'s four idx-ubyte files under ``root`` (torchvision's ``<Class>/raw`` layout):
    each class is its own random binary stroke pattern plus pixel noise, so a classifier can learn it."""
    raw_dir, files = expected_files(name)  # train images, train labels, test images, test labels
    folder = root / raw_dir
    folder.mkdir(parents=True, exist_ok=True)
    g = torch.Generator().manual_seed(seed)
    templates = torch.rand(10, 28, 28, generator=g) > 0.75  # [10, 28, 28] one pattern per class
    for (images_file, labels_file), n in ((files[:2], n_train), (files[2:], n_test)):
        labels = (torch.arange(n) % 10)[torch.randperm(n, generator=g)]
        images = templates[labels].float() * 190 + torch.rand(n, 28, 28, generator=g) * 65
        (folder / images_file).write_bytes(struct.pack(">IIII", 2051, n, 28, 28)
                                           + images.to(torch.uint8).numpy().tobytes())
        (folder / labels_file).write_bytes(struct.pack(">II", 2049, n) + labels.to(torch.uint8).numpy().tobytes())
    return root
