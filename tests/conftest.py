"""Shared fixtures: the real MNIST files, found through GAN_DATA_ROOT (set by .ci/run) or ../shared/mnist."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _data_root() -> Path:
    env = os.environ.get("GAN_DATA_ROOT")
    if env:
        return Path(env)
    return REPO.parent / "shared" / "mnist"


@pytest.fixture(scope="session")
def data_root() -> Path:
    root = _data_root()
    if not (root / "MNIST" / "raw" / "train-images-idx3-ubyte").is_file():
        pytest.fail(f"MNIST not found under {root}; set GAN_DATA_ROOT to a folder holding MNIST/raw/*-ubyte")
    os.environ.setdefault("GAN_DATA_ROOT", str(root))
    return root


@pytest.fixture(scope="session")
def mnist_train(data_root):
    from gan_models import load_images

    return load_images("mnist", split="train", data_root=data_root)


@pytest.fixture(scope="session")
def mnist_test(data_root):
    from gan_models import load_images

    return load_images("mnist", split="test", data_root=data_root)


def pytest_collection_modifyitems(config, items):
    """A ``gpu`` test runs where torch sees a CUDA device and is skipped, saying why, elsewhere."""
    gpu_items = [item for item in items if item.get_closest_marker("gpu") is not None]
    if not gpu_items:
        return
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU: torch.cuda.is_available() is False on this machine")
    for item in gpu_items:
        item.add_marker(skip)

