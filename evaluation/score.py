"""Score a checkpoint's generator: ``python -m evaluation.score CHECKPOINT --n 10000 --features classifier,pixel``.

Draws --n samples from fixed latents (--seed), scores them against --n-real images of the
checkpoint's dataset, and prints a table (or JSON with --json). Any bad input ends in one line on
stderr and a non-zero exit.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import types

import torch
from torch import Tensor, nn

from gan_models import CheckpointError, DataNotFoundError, load_models, sample_latent

from .evaluator import METRIC_GROUPS, PRDC_KEYS, SCORING_SPACES, Evaluator, check_device
from .evaluator import score as _score_samples


class _CallableModule(types.ModuleType):
    """``evaluation.score`` is both the library function and this CLI module. Importing the module
    (``from evaluation.score import main``, the console script) rebinds the package attribute to
    the module, so the module forwards calls to the function and both spellings keep working."""

    def __call__(self, samples: Tensor, **kwargs):
        return _score_samples(samples, **kwargs)


sys.modules[__name__].__class__ = _CallableModule


@torch.no_grad()
def sample_generator(
    generator: nn.Module, n: int, *, latent_dim: int, latent_prior: str, seed: int = 0,
    batch_size: int = 1000, device: str | torch.device = "cpu",
) -> Tensor:
    """n images [n, 1, 28, 28] from latents drawn with a generator seeded by ``seed``."""
    z = sample_latent(n, latent_dim, latent_prior, generator=torch.Generator().manual_seed(seed), device=device)
    return torch.cat([generator(z[i : i + batch_size]) for i in range(0, n, batch_size)]).cpu()


def format_table(result: dict, spaces: tuple[str, ...]) -> str:
    """Rows: metrics; columns: feature spaces; then the class metrics and the metadata."""
    rows = [m for m in ("fid", *PRDC_KEYS) if m in result]
    lines = []
    if rows:
        lines.append(f"{'metric':<12}" + "".join(f"{s:>14}" for s in spaces))
        for m in rows:
            cells = [result[m if i == 0 else f"{s}/{m}"] for i, s in enumerate(spaces)]
            lines.append(f"{m:<12}" + "".join(f"{v:>14.4f}" for v in cells))
    for k in ("class_coverage", "class_kl"):
        if k in result:
            v = result[k]
            lines.append(f"{k:<16}{v:>10}" if isinstance(v, int) else f"{k:<16}{v:>10.4f}")
    lines.append(f"evaluator {result['evaluator']} (sha256 {result['evaluator_sha256'][:16]}...), "
                 f"n_fake={result['n_fake']}, n_real={result['n_real']}")
    return "\n".join(lines)


def _csv(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m evaluation.score", description=__doc__.splitlines()[0])
    p.add_argument("checkpoint", help="checkpoint file written by gan_models.train")
    p.add_argument("--n", type=int, default=10000, help="generated samples (default 10000)")
    p.add_argument("--n-real", type=int, default=10000, help="real images (default 10000)")
    p.add_argument("--split", default="test", choices=["train", "test"], help="real split (default test)")
    p.add_argument("--features", default="classifier",
                   help=f"comma list, first is the headline; choices: {','.join(SCORING_SPACES)}")
    p.add_argument("--metrics", default=",".join(METRIC_GROUPS), help=f"comma list of {','.join(METRIC_GROUPS)}")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--data-root", default=None, help="MNIST-family data folder (default $GAN_DATA_ROOT)")
    p.add_argument("--cache-dir", default=None, help="real-statistics cache (default $GAN_EVAL_CACHE or ~/.cache)")
    p.add_argument("--vgg16-weights", default=None, help="local torchvision vgg16-397923af.pth (or $GAN_VGG16_WEIGHTS)")
    p.add_argument("--seed", type=int, default=0, help="latent seed (default 0)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch-size", type=int, default=1000)
    args = p.parse_args(argv)

    features = _csv(args.features)
    bad = [f for f in features if f not in SCORING_SPACES]
    if bad or not features:
        p.error(f"unknown feature space(s) {', '.join(bad) or '(none)'}; valid choices: {', '.join(SCORING_SPACES)}")
    if args.n <= 0 or args.n_real <= 0 or args.batch_size <= 0:
        p.error("--n, --n-real and --batch-size must be positive")
    try:
        device = check_device(args.device)  # before torch.load, whose CUDA error would read as a corrupt file
        models = load_models(args.checkpoint, device=device)
        if models.generator is None:
            raise SystemExit(f"error: checkpoint {args.checkpoint} holds no generator")
        cfg = models.config
        evaluator = Evaluator(
            dataset=cfg.dataset, features=features, n_real=args.n_real, split=args.split, data_root=args.data_root,
            cache_dir=args.cache_dir, metrics=_csv(args.metrics), device=device, batch_size=args.batch_size,
            vgg16_weights=args.vgg16_weights,
        )
        samples = sample_generator(models.generator, args.n, latent_dim=cfg.latent_dim, latent_prior=cfg.latent_prior,
                                   seed=args.seed, batch_size=args.batch_size, device=device)
        result = evaluator.score(samples)
    except (CheckpointError, DataNotFoundError, ValueError, RuntimeError) as exc:
        raise SystemExit(f"error: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}")
    result = {"checkpoint": args.checkpoint, "step": models.step, "dataset": cfg.dataset, "split": args.split,
              "features": features, "seed": args.seed, **result}
    if args.json:
        print(json.dumps({k: (None if isinstance(v, float) and not math.isfinite(v) else v)
                          for k, v in result.items()}, indent=2))
    else:
        print(f"{args.checkpoint} (step {models.step}, {cfg.dataset}, {args.split} split)")
        print(format_table(result, evaluator.spaces))
    return 0


if __name__ == "__main__":
    sys.exit(main())
