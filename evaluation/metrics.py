"""Sample-quality metrics on feature matrices: FID, improved precision/recall, density/coverage,
class coverage. Pure functions; the real set always comes first, the generated set second.

Nearest-neighbour work is blocked: a [N_real, chunk] block of squared distances is formed with one
matmul, reduced, and dropped, so 10k x 10k never holds more than ``max_block_elements`` floats
(64 MB at float32 by default) plus a few same-sized boolean masks.
"""

from __future__ import annotations

import math

import numpy as np
import scipy.linalg
import torch
from torch import Tensor

K_PRECISION_RECALL = 3  # Kynkäänniemi et al. 2019
K_DENSITY_COVERAGE = 5  # Naeem et al. 2020
# A class counts as present when the generated set predicts it at least this fraction as often
# as the real set does: a 99%-accurate evaluator scatters ~0.1% of a one-digit set over the other
# classes, which must not count as covering them.
CLASS_PRESENT_RATIO = 0.1
MAX_BLOCK_ELEMENTS = 1 << 24


# ---------------------------------------------------------------------------------------- FID
def gaussian_stats(features: Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Mean [F] and unbiased covariance [F, F] of features [N, F], both float64."""
    x = features.detach().to("cpu", torch.float64)
    if x.shape[0] < 2:
        raise ValueError(f"FID needs at least 2 samples, got {x.shape[0]}")
    mu = x.mean(0)
    xc = x - mu
    sigma = (xc.T @ xc) / (x.shape[0] - 1)
    return mu.numpy(), sigma.numpy()


def sqrtm_psd(sigma: np.ndarray) -> np.ndarray:
    """Symmetric square root of a symmetric PSD matrix via eigh (negative round-off eigenvalues -> 0)."""
    w, v = np.linalg.eigh(sigma)
    return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def frechet_distance(
    mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray, *, sqrt_sigma1: np.ndarray | None = None
) -> float:
    """||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2)) in float64.

    Tr((S1 S2)^(1/2)) = sum_i sqrt(lambda_i(S1^(1/2) S2 S1^(1/2))): S1 S2 and the symmetric PSD
    matrix S1^(1/2) S2 S1^(1/2) share their eigenvalues, and eigvalsh on the latter is stable where
    sqrtm of the non-symmetric product can turn complex. ``sqrt_sigma1`` lets the real side's root
    be computed once and cached.
    """
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    s1, s2 = np.asarray(sigma1, np.float64), np.asarray(sigma2, np.float64)
    r1 = sqrtm_psd(s1) if sqrt_sigma1 is None else np.asarray(sqrt_sigma1, np.float64)
    m = r1 @ s2 @ r1
    # eigenvalues only, by LAPACK's MRRR driver: several times faster than numpy's eigvalsh at F = 784
    lam = scipy.linalg.eigh((m + m.T) / 2, eigvals_only=True, driver="evr")
    tr_sqrt = np.sqrt(np.clip(lam, 0.0, None)).sum()
    diff = mu1 - mu2
    fid = float(diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * tr_sqrt)
    return max(fid, 0.0)  # exact value is >= 0; round-off can leave -1e-12


# ------------------------------------------------------------------------ nearest neighbours
def _chunk(n_rows: int, max_block_elements: int) -> int:
    return max(1, min(n_rows, max_block_elements // max(n_rows, 1)))


def _lift(x: Tensor) -> tuple[Tensor, Tensor]:
    """Rows (x_i, ||x_i||^2, 1) and (-2 x_i, 1, ||x_i||^2), both [n, F+2]: their products are squared distances.

    ||a_i - b_j||^2 = ||a_i||^2 + ||b_j||^2 - 2 a_i.b_j = <(a_i, ||a_i||^2, 1), (-2 b_j, 1, ||b_j||^2)>, so one
    matmul gives a whole block with no broadcast copies or extra passes. Round-off can leave tiny negative
    values for (near-)duplicates; comparisons with radii >= 0 are unaffected and radii are clamped.
    """
    sq = (x * x).sum(1, keepdim=True)
    one = torch.ones_like(sq)
    return torch.cat([x, sq, one], 1), torch.cat([-2.0 * x, one, sq], 1)


def knn_radii(features: Tensor, ks: tuple[int, ...], *, max_block_elements: int = MAX_BLOCK_ELEMENTS) -> Tensor:
    """SQUARED distance from each point of ``features`` [N, F] to its k-th nearest other point, for each k.

    Returns [N, len(ks)] squared radii, taken from the same lifted-matmul distances that ``prdc``
    compares them with: no square root is taken, because sqrt(r^2)^2 can land below r^2 (for the
    integer 3, sqrt(3.0)**2 < 3.0 in float64) and a point exactly on a ball's edge would then drop
    out of the closed ball. The point itself is excluded (its own distance is set to exactly 0 and
    counted as the 0-th neighbour), as in Kynkäänniemi et al. and the prdc package.
    """
    n = features.shape[0]
    k_max = max(ks)
    if n <= k_max:
        raise ValueError(f"k-NN radii with k={k_max} need more than {k_max} samples, got {n}")
    left, right = _lift(features)
    out = torch.empty(n, len(ks), dtype=features.dtype, device=features.device)
    step = _chunk(n, max_block_elements)
    for i in range(0, n, step):
        rows = slice(i, min(i + step, n))
        d2 = left[rows] @ right.T  # [c, N] squared distances
        c = d2.shape[0]
        d2[torch.arange(c), torch.arange(i, i + c)] = 0.0
        nearest = torch.topk(d2, k_max + 1, dim=1, largest=False, sorted=True).values  # [c, k_max+1]
        out[rows] = nearest[:, list(ks)]
    return out.clamp_min_(0.0)


def prdc(
    real: Tensor,
    fake: Tensor,
    *,
    real_radii: Tensor | None = None,
    k_pr: int = K_PRECISION_RECALL,
    k_dc: int = K_DENSITY_COVERAGE,
    max_block_elements: int = MAX_BLOCK_ELEMENTS,
) -> dict[str, float]:
    """Improved precision/recall (k = k_pr) and density/coverage (k = k_dc) of ``fake`` against ``real``.

    real [N, F], fake [M, F], same dtype and device. ``real_radii`` [N, 2]: the real set's SQUARED k_pr-th
    and k_dc-th neighbour distances (``knn_radii(real, (k_pr, k_dc))``), cacheable with the real set.
    Balls are closed (distance <=), and every comparison is of a squared distance with a squared
    radius from the same computation, so a point exactly on a ball's edge (ties are common for
    integer or repeated features) counts as inside. With B(x, r) the ball around x of its k-NN radius:
      precision = 1/M sum_j 1[exists i: y_j in B(x_i, r_pr(x_i))]
      recall    = 1/N sum_i 1[exists j: x_i in B(y_j, r_pr(y_j))]
      density   = 1/(k_dc M) sum_j sum_i 1[y_j in B(x_i, r_dc(x_i))]
      coverage  = 1/N sum_i 1[exists j: y_j in B(x_i, r_dc(x_i))]
    """
    if real.shape[1] != fake.shape[1]:
        raise ValueError(f"real and fake features differ in width: {real.shape[1]} vs {fake.shape[1]}")
    if real_radii is None:
        real_radii = knn_radii(real, (k_pr, k_dc), max_block_elements=max_block_elements)
    fake_r2 = knn_radii(fake, (k_pr,), max_block_elements=max_block_elements)[:, 0]  # [M], squared
    real_r2 = real_radii.to(real.dtype)  # [N, 2], squared
    r2_pr, r2_dc = real_r2[:, 0], real_r2[:, 1]  # [N]
    n, m = real.shape[0], fake.shape[0]
    real_left, _ = _lift(real)
    _, fake_right = _lift(fake)
    # Reductions over boolean masks go through uint8 views: amax/sum on bytes are several times
    # faster than any()/sum() on bool, which widen to int64 first.
    in_some_real_ball = torch.empty(m, dtype=torch.uint8, device=fake.device)
    n_real_balls = torch.empty(m, dtype=torch.int32, device=fake.device)
    in_some_fake_ball = torch.zeros(n, dtype=torch.uint8, device=real.device)
    nearest_fake_d2 = torch.full((n,), math.inf, dtype=real.dtype, device=real.device)
    step = _chunk(n, max_block_elements)
    for j in range(0, m, step):
        cols = slice(j, min(j + step, m))
        d2 = real_left @ fake_right[cols].T  # [N, c] squared distances
        in_some_real_ball[cols] = (d2 <= r2_pr[:, None]).view(torch.uint8).amax(0)
        n_real_balls[cols] = (d2 <= r2_dc[:, None]).view(torch.uint8).sum(0, dtype=torch.int32)
        torch.maximum(in_some_fake_ball, (d2 <= fake_r2[None, cols]).view(torch.uint8).amax(1), out=in_some_fake_ball)
        torch.minimum(nearest_fake_d2, d2.amin(1), out=nearest_fake_d2)
    return {
        "precision": in_some_real_ball.double().mean().item(),
        "recall": in_some_fake_ball.double().mean().item(),
        "density": n_real_balls.double().sum().item() / (k_dc * m),
        "coverage": (nearest_fake_d2 <= r2_dc).double().mean().item(),
    }


# ------------------------------------------------------------------------------- classes
def class_histogram(logits: Tensor, num_classes: int = 10) -> np.ndarray:
    """Share of each predicted class (argmax of logits [N, C]) as float64 [C]."""
    counts = torch.bincount(logits.argmax(1).cpu(), minlength=num_classes).to(torch.float64)
    return (counts / counts.sum()).numpy()


def class_metrics(fake_hist: np.ndarray, real_hist: np.ndarray) -> dict[str, float | int]:
    """class_coverage: classes with p_fake(c) >= CLASS_PRESENT_RATIO * p_real(c) (and p_fake(c) > 0);
    class_kl: KL(p_fake || p_real) = sum_c p_fake(c) log(p_fake(c) / p_real(c))."""
    p = np.asarray(fake_hist, np.float64)
    q = np.asarray(real_hist, np.float64)
    q = (q + 1e-12) / (q + 1e-12).sum()  # a class absent from the real predictions stays finite
    present = (p > 0) & (p >= CLASS_PRESENT_RATIO * q)
    nz = p > 0
    kl = float(np.sum(p[nz] * np.log(p[nz] / q[nz])))
    return {"class_coverage": int(present.sum()), "class_kl": max(kl, 0.0)}
