"""Refinement on a GPU follows the CPU's trajectory within float tolerance (marker gpu: skipped without CUDA)."""

from __future__ import annotations

import copy

import pytest
import torch

from refinement import RefineConfig, refine

pytestmark = pytest.mark.gpu


@pytest.mark.parametrize("method", ["latent", "target", "latent-image", "ddls"])
def test_refined_samples_match_across_devices(small_gan, method):
    g, d = small_gan
    cfg = RefineConfig(method=method, steps=5, **({} if method == "ddls" else {"k_eff": "one"}))
    kw = dict(latent_dim=8, latent_prior="normal", n=64, seed=0)
    on_cpu = refine(g, d, cfg, device="cpu", **kw)
    on_gpu = refine(copy.deepcopy(g).cuda(), copy.deepcopy(d).cuda(), cfg, device="cuda", **kw)
    # fp32 is "ieee" on both (TF32 off), so only summation order differs
    torch.testing.assert_close(on_gpu.samples.cpu(), on_cpu.samples, rtol=1e-4, atol=1e-4)
    assert on_gpu.k_eff == pytest.approx(on_cpu.k_eff, rel=1e-5)
