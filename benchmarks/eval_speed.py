"""Evaluation speed and agreement against reference implementations, in one run.

    python -m benchmarks.eval_speed --n 10000 --out benchmarks/results/eval_speed.json [--checkpoint CKPT]

Times, on N generated vs N real (test split) images in the --features space:
  * the project's full evaluation (feature extraction + FID + precision/recall/density/coverage +
    class metrics): cold (empty cache: real features, statistics and k-NN radii computed), with the
    real statistics read from the disk cache by a fresh Evaluator, and warm (same Evaluator again);
  * prdc.compute_prdc on the same features (k=3 for precision/recall, k=5 for density/coverage:
    two calls give the same four numbers the project computes);
  * a plain numpy/scipy FID (np.cov + scipy.linalg.sqrtm, the pytorch-fid formula) on the same features;
  * torchmetrics' FrechetInceptionDistance with the same feature extractor as a custom module.
Writes JSON with every time and the max |project - reference| per metric.
"Generated" samples come from --checkpoint's generator, or else are a deterministic perturbation of
real train images (Gaussian noise, clamped), recorded in the JSON.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import sys
import tempfile
import time
import warnings

import numpy as np
import torch

from benchmarks.common import machine, write_json


def perturbed_train_images(n: int, *, data_root, sigma: float = 0.35, seed: int = 0) -> torch.Tensor:
    """n train images (seeded choice) plus N(0, sigma^2) pixel noise, clamped to [-1, 1]."""
    from gan_models import load_images, to_float

    train = load_images("mnist", split="train", data_root=data_root)
    g = torch.Generator().manual_seed(seed)
    idx = torch.randperm(len(train), generator=g)[:n]
    x = to_float(train.images[idx])
    return (x + sigma * torch.randn(x.shape, generator=g)).clamp_(-1.0, 1.0)


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def scipy_fid(real: np.ndarray, fake: np.ndarray) -> float:
    import scipy.linalg

    mu1, mu2 = real.mean(0), fake.mean(0)
    s1, s2 = np.cov(real, rowvar=False), np.cov(fake, rowvar=False)
    covmean = scipy.linalg.sqrtm(s1 @ s2)
    covmean = covmean.real if np.iscomplexobj(covmean) else covmean
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=10000, help="generated and real samples (default 10000)")
    p.add_argument("--features", default="classifier", help="feature space compared with the references")
    p.add_argument("--checkpoint", default=None, help="sample the generated set from this checkpoint")
    p.add_argument("--data-root", default=None)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--out", default="benchmarks/results/eval_speed.json")
    args = p.parse_args(argv)
    if args.n < 10:
        p.error("--n must be at least 10")
    if args.threads is not None:
        if args.threads <= 0:
            p.error("--threads must be positive")
        torch.set_num_threads(args.threads)

    from evaluation import Evaluator, feature_extractor
    from evaluation.evaluator import PRDC_KEYS
    from gan_models import CheckpointError, DataNotFoundError, load_models

    try:
        if args.checkpoint:
            from evaluation.score import sample_generator

            models = load_models(args.checkpoint)
            if models.generator is None:
                raise SystemExit(f"error: checkpoint {args.checkpoint} holds no generator")
            x = sample_generator(models.generator, args.n, latent_dim=models.config.latent_dim,
                                 latent_prior=models.config.latent_prior, seed=0)
            generated = f"checkpoint {args.checkpoint} (step {models.step}), latent seed 0"
        else:
            x = perturbed_train_images(args.n, data_root=args.data_root)
            generated = "perturbed real: random train images + N(0, 0.35^2) pixel noise, clamped (seed 0)"
    except (CheckpointError, DataNotFoundError) as exc:
        raise SystemExit(f"error: {exc}") from None

    space = args.features
    kwargs = dict(features=(space,), n_real=args.n, data_root=args.data_root)
    result: dict = {
        "n_fake": args.n, "n_real": args.n, "features": space, "generated": generated, "machine": machine(),
    }
    with tempfile.TemporaryDirectory() as cache:
        try:
            cold, t_cold = timed(lambda: Evaluator(cache_dir=cache, **kwargs).score(x))
        except ValueError as exc:
            raise SystemExit(f"error: {exc}") from None
        ev = Evaluator(cache_dir=cache, **kwargs)
        cached, t_cached = timed(lambda: ev.score(x))
        warm, t_warm = timed(lambda: ev.score(x))
        (feats, logits), t_extract = timed(lambda: ev.extract(x))
        _, t_metrics = timed(lambda: ev.score_features(feats, logits))
        real_f = ev.real_stats(space).features.cpu().numpy()
    fake_f = feats[space].cpu().numpy()
    result["project"] = {
        "cached_equals_cold": cold == cached == warm,  # the disk cache must not change a number
        "cold_s": t_cold, "cached_disk_s": t_cached, "warm_s": t_warm, "extract_s": t_extract,
        "metrics_s": t_metrics, "values": cached,
    }
    print(f"project: cold {t_cold:.2f} s, cached (disk) {t_cached:.2f} s, warm {t_warm:.2f} s "
          f"(extract {t_extract:.2f} s + metrics {t_metrics:.2f} s)")

    # prdc: two calls (k=3 for P/R, k=5 for D/C) give the project's four numbers
    try:
        from prdc import compute_prdc

        with contextlib.redirect_stdout(io.StringIO()):  # it prints the sample counts
            pr, t_pr = timed(lambda: compute_prdc(real_f, fake_f, nearest_k=3))
            dc, t_dc = timed(lambda: compute_prdc(real_f, fake_f, nearest_k=5))
        ref = {"precision": pr["precision"], "recall": pr["recall"], "density": dc["density"],
               "coverage": dc["coverage"]}
        diffs = {k: abs(float(ref[k]) - cached[k]) for k in PRDC_KEYS}
        result["prdc"] = {
            "time_s": t_pr + t_dc, "time_k3_s": t_pr, "time_k5_s": t_dc,
            "values": {k: float(v) for k, v in ref.items()}, "abs_diff": diffs, "max_abs_diff": max(diffs.values()),
            "speedup_full_cached_eval": (t_pr + t_dc) / t_cached,
            "speedup_metrics_only": (t_pr + t_dc) / t_metrics,
        }
        print(f"prdc.compute_prdc (k=3 and k=5): {t_pr + t_dc:.2f} s; max |diff| {max(diffs.values()):.2e}; "
              f"full cached evaluation is {(t_pr + t_dc) / t_cached:.1f}x faster")
    except ImportError as exc:
        result["prdc"] = {"error": f"prdc not importable: {exc}"}

    with warnings.catch_warnings(record=True) as caught:  # sqrtm warns on singular covariances (dead ReLU units)
        warnings.simplefilter("always")
        ref_fid, t_scipy = timed(lambda: scipy_fid(real_f.astype(np.float64), fake_f.astype(np.float64)))
    result["fid_scipy_sqrtm"] = {"time_s": t_scipy, "value": ref_fid, "abs_diff": abs(ref_fid - cached["fid"]),
                                 "warnings": sorted({str(w.message).splitlines()[0] for w in caught})}
    print(f"numpy/scipy FID: {t_scipy:.2f} s; |diff| {abs(ref_fid - cached['fid']):.2e}")

    try:
        from torchmetrics.image.fid import FrechetInceptionDistance

        real_images = ev._real_images()  # the same n_real test images (uint8)
        from gan_models import to_float

        def torchmetrics_fid() -> float:
            metric = FrechetInceptionDistance(feature=feature_extractor(space), normalize=False)
            for i in range(0, args.n, 1000):
                metric.update(to_float(real_images[i : i + 1000]), real=True)
                metric.update(x[i : i + 1000], real=False)
            return float(metric.compute())

        with torch.inference_mode():
            tm_fid, t_tm = timed(torchmetrics_fid)
        result["torchmetrics_fid"] = {"time_s": t_tm, "value": tm_fid, "abs_diff": abs(tm_fid - cached["fid"]),
                                      "note": "features + FID from scratch (no cached real side), float64 eigvals"}
        print(f"torchmetrics FID (custom extractor): {t_tm:.2f} s; |diff| {abs(tm_fid - cached['fid']):.2e}")
    except Exception as exc:  # not installed, or it wants something online: record, don't fail
        result["torchmetrics_fid"] = {"error": f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"}
        print(f"torchmetrics FID unavailable: {result['torchmetrics_fid']['error']}")

    result["goals"] = {
        "cached_eval_under_5s": t_cached < 5.0,
        "at_least_5x_faster_than_prdc": "time_s" in result["prdc"] and result["prdc"]["time_s"] >= 5 * t_cached,
    }
    write_json(result, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
