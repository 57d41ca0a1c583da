"""The evaluator on a GPU scores what it scores on the CPU (marker gpu: skipped without CUDA)."""

from __future__ import annotations

import pytest
import torch

from gan_models import to_float

pytestmark = pytest.mark.gpu


def test_scores_on_gpu_equal_the_cpu_scores(evaluator_2k, mnist_test):
    samples = to_float(mnist_test.images[-1000:])  # fixed samples: real test digits the real set does not hold
    samples = samples + 0.05 * torch.randn(samples.shape, generator=torch.Generator().manual_seed(0))
    samples = samples.clamp(-1, 1)
    on_cpu = evaluator_2k.to("cpu").score(samples)
    try:
        on_gpu = evaluator_2k.to("cuda").score(samples.to("cuda"))
    finally:
        evaluator_2k.to("cpu")  # the session fixture goes back as it was
    assert abs(on_gpu["fid"] - on_cpu["fid"]) <= 1e-4
    for key in ("precision", "recall", "density", "coverage"):
        assert on_gpu[key] == pytest.approx(on_cpu[key], abs=1e-6), key
