"""Precision/recall/density/coverage at exact ties: integer and repeated features, where points lie
exactly on the edge of a closed k-NN ball. The reference below is brute force in exact int64
arithmetic (squared distances, never a square root), written independently of evaluation.metrics.
(The prdc package cannot serve here: it compares sqrt distances with a strict '<'.)"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from evaluation import knn_radii, prdc


def exact_prdc(real: np.ndarray, fake: np.ndarray, k_pr: int, k_dc: int) -> dict[str, float]:
    """Closed balls (<=) on exact int64 squared distances; full matrices, no blocking."""
    real, fake = np.asarray(real, np.int64), np.asarray(fake, np.int64)

    def d2(a, b):
        return ((a[:, None, :] - b[None, :, :]) ** 2).sum(-1)

    rr, ff, rf = np.sort(d2(real, real), 1), np.sort(d2(fake, fake), 1), d2(real, fake)  # column 0: the point itself
    r_pr, r_dc, f_pr = rr[:, k_pr], rr[:, k_dc], ff[:, k_pr]
    return {
        "precision": float((rf <= r_pr[:, None]).any(0).mean()),
        "recall": float((rf <= f_pr[None, :]).any(1).mean()),
        "density": float((rf <= r_dc[:, None]).sum(0).mean() / k_dc),
        "coverage": float((rf.min(1) <= r_dc).mean()),
    }


def lattice(seed: int, n: int, dim: int, levels: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, levels, (n, dim))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_points_on_the_diagonal_edge_of_a_ball_count(dtype):
    # k = 1: every real ball has squared radius 3 ((i,i,i) to (i+1,i+1,i+1)); (4,4,4) lies exactly on
    # the ball of (3,3,3), (.5,.5,.5) inside two balls, (10,10,10) in none. sqrt(3.0)**2 < 3.0 in
    # float64, so a square-root round trip used to drop the edge point: 0.333 / 0.667 / 0.5.
    real = torch.tensor([[0, 0, 0], [1, 1, 1], [2, 2, 2], [3, 3, 3]], dtype=dtype)
    fake = torch.tensor([[4, 4, 4], [0.5, 0.5, 0.5], [10, 10, 10]], dtype=dtype)
    assert prdc(real, fake, k_pr=1, k_dc=1) == {"precision": 2 / 3, "recall": 1.0, "density": 1.0, "coverage": 0.75}


def test_knn_radii_are_exact_squared_integers():
    x = lattice(0, 300, 7, 4)
    d2 = np.sort(((x[:, None] - x[None]) ** 2).sum(-1), 1)
    got = knn_radii(torch.from_numpy(x).double(), (3, 5), max_block_elements=300 * 17)  # ragged 17-row blocks
    assert torch.equal(got, torch.from_numpy(d2[:, [3, 5]]).double())


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("block", [10**9, 2000 * 37])  # one block, and many ragged blocks
def test_lattice_features_match_the_exact_reference(dtype, block):
    # {0,1,2}^10: squared distances are small integers, so nearly every k-NN radius is tied by other points
    real, fake = lattice(1, 2000, 10, 3), lattice(2, 2000, 10, 3)
    ref = exact_prdc(real, fake, 3, 5)
    got = prdc(torch.from_numpy(real).to(dtype), torch.from_numpy(fake).to(dtype), max_block_elements=block)
    assert got == ref
    # golden numbers of this lattice; the sqrt round trip gave P 0.958 R 0.963 D 0.7324 C 0.960 in float64
    # and P 0.995 R 0.9945 D 1.9827 C 0.8655 in float32
    assert ref == {"precision": 0.9985, "recall": 0.9965, "density": pytest.approx(2.1195, abs=1e-12),
                   "coverage": 0.9935}


def test_pixel_like_integers_match_the_exact_reference_in_float64():
    # 0..255 in 64 dims, few levels used: many ties among large squared distances (exact in float64)
    rng = np.random.default_rng(3)
    real = rng.choice([0, 128, 255], size=(400, 64))
    fake = rng.choice([0, 128, 255], size=(300, 64))
    real[:50] = real[50:100]  # exact duplicates: zero radii and zero distances
    fake[:20] = real[:20]
    ref = exact_prdc(real, fake, 3, 5)
    got = prdc(torch.from_numpy(real).double(), torch.from_numpy(fake).double(), max_block_elements=997)
    assert got == pytest.approx(ref, abs=1e-12)
    assert 0 < ref["precision"] < 1 and 0 < ref["coverage"] < 1  # a non-trivial case


def test_cached_real_radii_give_the_same_numbers():
    # the Evaluator caches knn_radii(real, (3, 5)) and passes them back as real_radii
    real, fake = lattice(4, 500, 6, 3), lattice(5, 400, 6, 3)
    r, f = torch.from_numpy(real).float(), torch.from_numpy(fake).float()
    assert prdc(r, f, real_radii=knn_radii(r, (3, 5))) == prdc(r, f) == exact_prdc(real, fake, 3, 5)
