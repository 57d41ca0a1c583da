"""Shared fixtures for the evaluation tests: the real MNIST splits and one cached 2k-real Evaluator."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from gan_models import DataNotFoundError, load_images

N_REAL = 2000


def _data_root() -> Path:
    env = os.environ.get("GAN_DATA_ROOT", "")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[3] / "shared" / "mnist"  # CI: shared/ beside the clone


@pytest.fixture(scope="session")
def data_root() -> Path:
    return _data_root()


@pytest.fixture(scope="session")
def mnist_test(data_root):
    try:
        return load_images("mnist", split="test", data_root=data_root)
    except DataNotFoundError as exc:
        pytest.fail(f"MNIST is required for the evaluation tests: {exc}")


@pytest.fixture(scope="session")
def mnist_train(data_root):
    return load_images("mnist", split="train", data_root=data_root)


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("eval-cache")


@pytest.fixture(scope="session")
def evaluator_2k(data_root, cache_dir):
    from evaluation import Evaluator

    return Evaluator(features=("classifier", "pixel"), n_real=N_REAL, data_root=data_root, cache_dir=cache_dir)
