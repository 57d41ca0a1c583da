"""Evaluation fixtures: a session-wide real-statistics cache and one 2k-real Evaluator on it.
(data_root, mnist_train and mnist_test come from tests/conftest.py.)"""

from __future__ import annotations

from pathlib import Path

import pytest

N_REAL = 2000


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("eval-cache")


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory, mnist_train) -> Path:
    """A tiny real checkpoint (5 steps, seed 3) for the score CLI's tests."""
    from gan_models import TrainConfig, train_gan

    path = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    train_gan(TrainConfig(steps=5, batch_size=16, seed=3), images_u8=mnist_train.images[:512], checkpoint_path=path,
              progress=False)
    return path


@pytest.fixture(scope="session")
def evaluator_2k(data_root, cache_dir):
    from evaluation import Evaluator

    return Evaluator(features=("classifier", "pixel"), n_real=N_REAL, data_root=data_root, cache_dir=cache_dir)
