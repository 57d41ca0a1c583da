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
