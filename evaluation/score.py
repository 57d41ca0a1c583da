"""Score a checkpoint's generator: ``python -m evaluation.score CHECKPOINT --n 10000 --features classifier,pixel``.

Draws --n samples from fixed latents (--seed), scores them against --n-real images of the
checkpoint's dataset, and prints a table (or JSON with --json). The evaluator (the classifier of the
checkpoint's dataset) is the package's shipped one for MNIST, else the one
``python -m evaluation.train_classifier --dataset NAME`` wrote to --evaluator-dir (default
``$GAN_EVALUATOR_DIR``, else ``~/.cache/gan-refine-search/evaluators``); pixel-space scores need none.
Any bad input ends in one line on stderr and a non-zero exit, before anything is written.
"""

from __future__ import annotations

import json
import math
import sys
import types
from typing import TYPE_CHECKING

# light modules only: torch and the evaluator are imported where used (main() after parsing: fast --help)
from gan_models.cli import OneLineArgumentParser, cli_prog
from gan_models.registry import check_choices

if TYPE_CHECKING:
    import torch
    from torch import Tensor, nn

# Names that --help shows, declared here without torch (their registries import it): the scoring
# feature spaces (evaluation.evaluator.SCORING_SPACES), every feature space (evaluation.features.
# FEATURE_SPACES), the metric groups (evaluation.evaluator.METRIC_GROUPS), the evaluator roles
# (evaluation.classifier.ROLES) and two environment variables. tests/test_cli_help.py asserts they
# equal the originals, so they cannot drift apart.
SCORING_SPACE_NAMES = ("classifier", "logits", "pixel", "vgg16")
FEATURE_SPACE_NAMES = (*SCORING_SPACE_NAMES, "classifier-alt")
METRIC_GROUP_NAMES = ("fid", "prdc", "class")
ROLE_NAMES = ("classifier", "classifier-alt")
CACHE_ENV_NAME = "GAN_EVAL_CACHE"  # evaluation.cache.CACHE_ENV
EVALUATOR_DIR_ENV_NAME = "GAN_EVALUATOR_DIR"  # evaluation.classifier.EVALUATOR_DIR_ENV


class _CallableModule(types.ModuleType):
    """``evaluation.score`` is both the library function and this CLI module. Importing the module
    (``from evaluation.score import main``, the console script) rebinds the package attribute to
    the module, so the module forwards calls to the function and both spellings keep working."""

    def __call__(self, samples: Tensor, **kwargs):
        from .evaluator import score as _score_samples

        return _score_samples(samples, **kwargs)


sys.modules[__name__].__class__ = _CallableModule


def sample_generator(
    generator: nn.Module, n: int, *, latent_dim: int, latent_prior: str, seed: int = 0,
    batch_size: int = 1000, device: str | torch.device = "cpu",
) -> Tensor:
    """n images [n, 1, 28, 28] from latents drawn with a generator seeded by ``seed``."""
    import torch

    from gan_models import sample_latent

    with torch.no_grad():
        z = sample_latent(n, latent_dim, latent_prior, generator=torch.Generator().manual_seed(seed), device=device)
        return torch.cat([generator(z[i : i + batch_size]) for i in range(0, n, batch_size)]).cpu()


def format_table(result: dict, spaces: tuple[str, ...]) -> str:
    """Rows: metrics; columns: feature spaces; then the class metrics and the metadata."""
    from .evaluator import PRDC_KEYS

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
    sha = result["evaluator_sha256"]
    who = "none (no classifier used)" if sha == "none" else f"{result['evaluator']} (sha256 {sha[:16]}...)"
    lines.append(f"evaluator {who}, n_fake={result['n_fake']}, n_real={result['n_real']}")
    return "\n".join(lines)


def _csv(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def default_metrics(features: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """FID and precision/recall/density/coverage in every space; the class metrics (the evaluator's
    predictions) only when a requested space runs the evaluator anyway, so pixel scores need no classifier."""
    from .evaluator import METRIC_GROUPS
    from .features import FEATURE_SPACES

    uses_classifier = any(FEATURE_SPACES[f].backbone == "classifier" for f in features)
    return tuple(m for m in METRIC_GROUPS if m != "class" or uses_classifier)


def _fail(message: str) -> SystemExit:
    return SystemExit(f"error: {message}")


def build_parser() -> OneLineArgumentParser:
    p = OneLineArgumentParser(prog=cli_prog("evaluation.score"), description=__doc__.splitlines()[0])
    p.add_argument("checkpoint", help="checkpoint file written by gan_models.train")
    p.add_argument("--n", type=int, default=10000, help="generated samples (default 10000)")
    p.add_argument("--n-real", type=int, default=10000, help="real images (default 10000)")
    p.add_argument("--split", default="test", choices=["train", "test"], help="real split (default test)")
    p.add_argument("--features", default="classifier",
                   help=f"comma list, first is the headline; choices: {','.join(SCORING_SPACE_NAMES)}")
    p.add_argument("--metrics", default=None,
                   help=f"comma list of {','.join(METRIC_GROUP_NAMES)} "
                        f"(default: all; class only with a classifier space)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--raw-generator", action="store_true",
                   help="score G's own weights, not its weight average (when the run kept one)")
    p.add_argument("--data-root", default=None, help="MNIST-family data folder (default $GAN_DATA_ROOT)")
    p.add_argument("--cache-dir", default=None, help=f"real-statistics cache (default ${CACHE_ENV_NAME} or ~/.cache)")
    p.add_argument("--evaluator-dir", default=None,
                   help=f"trained evaluators of datasets the package does not ship (default ${EVALUATOR_DIR_ENV_NAME} "
                        f"or ~/.cache/gan-refine-search/evaluators)")
    p.add_argument("--vgg16-weights", default=None, help="local torchvision vgg16-397923af.pth (or $GAN_VGG16_WEIGHTS)")
    p.add_argument("--seed", type=int, default=0, help="latent seed (default 0)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch-size", type=int, default=1000)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from .evaluator import SCORING_SPACES

    features = _csv(args.features)
    try:
        check_choices("feature space", features, SCORING_SPACES)
    except ValueError as exc:
        raise _fail(str(exc)) from None
    metrics = _csv(args.metrics) if args.metrics is not None else list(default_metrics(features))
    for flag in ("n", "n_real", "batch_size"):
        if getattr(args, flag) <= 0:
            raise _fail(f"--{flag.replace('_', '-')} must be a positive integer, got {getattr(args, flag)}")
    if args.vgg16_weights is not None and "vgg16" not in features:
        raise _fail(f"--vgg16-weights applies only to --features vgg16, got --features {','.join(features)}")
    models, evaluator, result = _score_checkpoint(args, features, metrics)
    cfg = models.config
    result = {"checkpoint": args.checkpoint, "step": models.step, "dataset": cfg.dataset, "split": args.split,
              "features": features, "seed": args.seed, "averaged_generator": models.averaged, **result}
    if args.json:
        print(json.dumps({k: (None if isinstance(v, float) and not math.isfinite(v) else v)
                          for k, v in result.items()}, indent=2))
    else:
        which = ", weight average" if models.averaged else ""
        print(f"{args.checkpoint} (step {models.step}{which}, {cfg.dataset}, {args.split} split)")
        print(format_table(result, evaluator.spaces))
    return 0


def _score_checkpoint(args, features: list[str], metrics: list[str]):
    """(models, evaluator, scores) of the checkpoint's sampling generator; bad input ends in one line."""
    from gan_models import CheckpointError, DataNotFoundError, load_models
    from gan_models.checkpoint import OutputDirError, check_writable_dir
    from gan_models.trainer import check_device

    from .cache import resolve_cache_dir
    from .evaluator import Evaluator

    try:
        # the device before torch.load, whose CUDA error would read as a corrupt file
        device = check_device(args.device, what="--device")
        check_writable_dir(resolve_cache_dir(args.cache_dir), what="--cache-dir")
        models = load_models(args.checkpoint, device=device, raw=args.raw_generator)
        if models.generator is None:
            raise _fail(f"checkpoint {args.checkpoint} holds no generator")
        cfg = models.config
        evaluator = Evaluator(
            dataset=cfg.dataset, features=features, n_real=args.n_real, split=args.split, data_root=args.data_root,
            cache_dir=args.cache_dir, metrics=metrics, device=device, batch_size=args.batch_size,
            vgg16_weights=args.vgg16_weights, evaluator_dir=args.evaluator_dir,
        )
        samples = sample_generator(models.generator, args.n, latent_dim=cfg.latent_dim, latent_prior=cfg.latent_prior,
                                   seed=args.seed, batch_size=args.batch_size, device=device)
        return models, evaluator, evaluator.score(samples)
    except (CheckpointError, DataNotFoundError, OutputDirError, ValueError, RuntimeError, OSError) as exc:
        text = str(exc).strip()
        raise _fail(text.splitlines()[0] if text else type(exc).__name__) from None


if __name__ == "__main__":
    sys.exit(main())
