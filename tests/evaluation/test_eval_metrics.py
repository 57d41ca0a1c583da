"""Golden and reference tests of the metric functions on fixed toy features (no data, no weights)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.linalg
import torch

from evaluation import class_metrics, frechet_distance, gaussian_stats, knn_radii, prdc, sqrtm_psd


# ---------------------------------------------------------------------------- references
def reference_prdc(real: np.ndarray, fake: np.ndarray, k_pr: int, k_dc: int) -> dict[str, float]:
    """Plain numpy, full distance matrices, closed balls (<=): written independently of evaluation.metrics."""

    def dists(a, b):
        return np.sqrt(((a[:, None, :] - b[None, :, :]) ** 2).sum(-1))

    def radius(x, k):
        d = np.sort(dists(x, x), axis=1)  # column 0 is the point itself
        return d[:, k]

    d_rf = dists(real, fake)  # [N, M]
    r_real_pr, r_real_dc, r_fake_pr = radius(real, k_pr), radius(real, k_dc), radius(fake, k_pr)
    return {
        "precision": float((d_rf <= r_real_pr[:, None]).any(0).mean()),
        "recall": float((d_rf <= r_fake_pr[None, :]).any(1).mean()),
        "density": float((d_rf <= r_real_dc[:, None]).sum(0).mean() / k_dc),
        "coverage": float((d_rf.min(1) <= r_real_dc).mean()),
    }


def random_features(seed: int, n: int, m: int, dim: int):
    rng = np.random.default_rng(seed)
    real = rng.normal(size=(n, dim))
    fake = rng.normal(size=(m, dim)) * 1.2 + 0.3  # shifted, wider: every metric strictly inside (0, 1)
    return real, fake


# ------------------------------------------------------------------------------------- FID
def test_fid_of_a_set_with_itself_is_zero():
    x = torch.from_numpy(np.random.default_rng(0).normal(size=(3000, 32)) @ np.diag(np.linspace(0.1, 3, 32)))
    mu, sigma = gaussian_stats(x)
    assert frechet_distance(mu, sigma, mu, sigma) == pytest.approx(0.0, abs=1e-9)


def test_fid_diagonal_gaussians_closed_form():
    # For diagonal covariances Tr((S1 S2)^1/2) = sum sqrt(a_i b_i), so FID = |mu1-mu2|^2 + sum (sqrt(a_i)-sqrt(b_i))^2.
    rng = np.random.default_rng(1)
    mu1, mu2 = rng.normal(size=8), rng.normal(size=8)
    a, b = rng.uniform(0.1, 4, 8), rng.uniform(0.1, 4, 8)
    expected = ((mu1 - mu2) ** 2).sum() + ((np.sqrt(a) - np.sqrt(b)) ** 2).sum()
    assert frechet_distance(mu1, np.diag(a), mu2, np.diag(b)) == pytest.approx(expected, rel=1e-12)


def test_fid_scaled_full_covariance_closed_form():
    # S2 = c^2 S1 => Tr(S1 + S2 - 2 (S1 S2)^1/2) = (1 - c)^2 Tr(S1), for any (non-diagonal) S1.
    rng = np.random.default_rng(2)
    a = rng.normal(size=(16, 16))
    s1 = a @ a.T + 0.1 * np.eye(16)
    mu = rng.normal(size=16)
    for c in (0.5, 1.0, 3.0):
        expected = (1 - c) ** 2 * np.trace(s1) + 4.0  # mean shifted by 2 along one axis
        shift = np.zeros(16)
        shift[3] = 2.0
        assert frechet_distance(mu, s1, mu + shift, c**2 * s1) == pytest.approx(expected, rel=1e-10)


def test_fid_matches_scipy_sqrtm_on_non_commuting_covariances():
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=(20, 20)), rng.normal(size=(20, 20))
    s1, s2 = a @ a.T, b @ b.T
    mu1, mu2 = rng.normal(size=20), rng.normal(size=20)
    ref = ((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * scipy.linalg.sqrtm(s1 @ s2).real)
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(ref, rel=1e-8)
    # the cached-root path gives the same number
    assert frechet_distance(mu1, s1, mu2, s2, sqrt_sigma1=sqrtm_psd(s1)) == pytest.approx(ref, rel=1e-8)


def test_fid_from_samples_of_two_gaussians_approaches_closed_form():
    rng = np.random.default_rng(4)
    n = 200_000
    x = rng.normal(size=(n, 4)) * np.array([1.0, 2.0, 0.5, 1.0])
    y = rng.normal(size=(n, 4)) * np.array([2.0, 1.0, 0.5, 3.0]) + np.array([1.0, 0.0, 0.0, -1.0])
    expected = 2.0 + (1 + 1 + 0 + 4)  # |dmu|^2 + sum (sd1 - sd2)^2
    mx, sx = gaussian_stats(torch.from_numpy(x))
    my, sy = gaussian_stats(torch.from_numpy(y))
    assert frechet_distance(mx, sx, my, sy) == pytest.approx(expected, rel=0.01)


def test_fid_is_stable_for_singular_covariances():
    # rank-deficient real covariance (dead units): the eigh root must not turn complex or NaN
    rng = np.random.default_rng(5)
    x = np.concatenate([rng.normal(size=(500, 5)), np.zeros((500, 5))], 1)
    mu, s = gaussian_stats(torch.from_numpy(x))
    value = frechet_distance(mu, s, mu, s)
    assert math.isfinite(value) and value == pytest.approx(0.0, abs=1e-9)


# ------------------------------------------------------------------------------ k-NN, PRDC
def test_knn_radii_match_brute_force_across_chunks():
    real, _ = random_features(6, 300, 10, 7)
    d2 = np.sort(((real[:, None] - real[None]) ** 2).sum(-1), axis=1)
    got = knn_radii(torch.from_numpy(real), (3, 5), max_block_elements=300 * 17).numpy()  # 17-row blocks
    np.testing.assert_allclose(got, d2[:, [3, 5]], rtol=1e-10)  # squared radii


def test_prdc_golden_values_on_a_line():
    # real 0,1,2,3 (k=1 radius 1 each); fakes 0.5, 4.0 (exactly on the ball of 3: <= counts), 10.
    real = torch.tensor([[0.0], [1.0], [2.0], [3.0]], dtype=torch.float64)
    fake = torch.tensor([[0.5], [4.0], [10.0]], dtype=torch.float64)
    got = prdc(real, fake, k_pr=1, k_dc=1)
    assert got == {"precision": 2 / 3, "recall": 1.0, "density": 1.0, "coverage": 0.75}


@pytest.mark.parametrize("block", [10**9, 997])  # one block, and many ragged blocks
def test_prdc_matches_numpy_reference_float64(block):
    real, fake = random_features(7, 400, 350, 12)
    ref = reference_prdc(real, fake, 3, 5)
    got = prdc(torch.from_numpy(real), torch.from_numpy(fake), max_block_elements=block)
    assert got == pytest.approx(ref, abs=1e-12)
    assert all(0.05 < v < 0.98 for k, v in ref.items() if k != "density")  # a non-trivial case


def test_prdc_float32_matches_reference_closely():
    real, fake = random_features(8, 600, 500, 24)
    ref = reference_prdc(real, fake, 3, 5)
    got = prdc(torch.from_numpy(real).float(), torch.from_numpy(fake).float())
    assert got == pytest.approx(ref, abs=3e-3)


def test_prdc_matches_the_prdc_package():
    prdc_pkg = pytest.importorskip("prdc")
    real, fake = random_features(9, 300, 250, 16)
    ours = prdc(torch.from_numpy(real), torch.from_numpy(fake))
    pr = prdc_pkg.compute_prdc(real, fake, nearest_k=3)
    dc = prdc_pkg.compute_prdc(real, fake, nearest_k=5)
    # prdc uses strict '<'; on continuous features no distance ties a radius, so the numbers agree
    assert ours["precision"] == pytest.approx(pr["precision"], abs=1e-12)
    assert ours["recall"] == pytest.approx(pr["recall"], abs=1e-12)
    assert ours["density"] == pytest.approx(dc["density"], abs=1e-12)
    assert ours["coverage"] == pytest.approx(dc["coverage"], abs=1e-12)


def test_prdc_argument_order_mode_collapse():
    # real: 10 well separated clusters; fake: samples of one cluster only
    rng = np.random.default_rng(10)
    centres = rng.normal(size=(10, 8)) * 20
    real = np.concatenate([c + rng.normal(size=(100, 8)) for c in centres])
    fake = centres[0] + rng.normal(size=(300, 8))
    r = prdc(torch.from_numpy(real), torch.from_numpy(fake))
    assert r["precision"] > 0.75 and r["recall"] < 0.15 and r["coverage"] < 0.15
    swapped = prdc(torch.from_numpy(fake), torch.from_numpy(real))
    assert swapped["precision"] < 0.15 and swapped["recall"] > 0.75


def test_knn_radii_needs_more_points_than_k():
    with pytest.raises(ValueError, match="more than 5 samples"):
        knn_radii(torch.zeros(5, 2), (3, 5))


# --------------------------------------------------------------------------------- classes
def test_class_metrics_golden():
    real = np.full(10, 0.1)
    one_digit = np.zeros(10)
    one_digit[3] = 1.0
    assert class_metrics(one_digit, real) == {"class_coverage": 1, "class_kl": pytest.approx(math.log(10))}
    assert class_metrics(real, real) == {"class_coverage": 10, "class_kl": pytest.approx(0.0, abs=1e-9)}
    # classifier noise (0.1% on each of two other digits) does not count as covering them
    noisy = one_digit.copy()
    noisy[[3, 5, 7]] = [0.998, 0.001, 0.001]
    assert class_metrics(noisy, real)["class_coverage"] == 1
    half = np.array([0.2] * 5 + [0.0] * 5)
    assert class_metrics(half, real) == {"class_coverage": 5, "class_kl": pytest.approx(math.log(2))}
