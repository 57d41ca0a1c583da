"""CLI: refine a checkpoint's samples with DOT or DDLS and score them step by step.

    python -m refinement.run CHECKPOINT --method latent --steps 20 --lr 0.01 --k-eff estimate --out DIR

Writes DIR/samples.pt (refined images), samples.png, frontier.parquet (one row per scored step),
frontier.png, precision_recall.png, strip.png and result.json. Results are assembled in a
temporary folder beside DIR and moved into place at the end, so an interrupted or failed run
never leaves partial results in DIR; an existing non-empty DIR is refused unless --overwrite.

Bad input ends in one ``error:`` line before any work: an unreadable checkpoint, a DIR that cannot
be written, a missing device, --score-steps beyond --steps, and a flag the chosen method (or
--no-score) would ignore, such as --embedding with --method latent. The evaluator of a dataset
other than MNIST (and the embedding of embedded DOT) comes from --evaluator-dir, see evaluation.score.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

# light modules only: torch and the heavy modules are imported by main() once the flags parse (fast --help)
from evaluation.score import FEATURE_SPACE_NAMES, METRIC_GROUP_NAMES, SCORING_SPACE_NAMES
from gan_models.cli import (
    OneLineArgumentParser,
    add_config_flags,
    bool_fields,
    cli_prog,
    config_from_flags,
    flag_name,
    given_config_flags,
)
from gan_models.config import PRECISION_NAMES
from gan_models.data import DATA_ROOT_ENV, DataNotFoundError

from .config import (
    DEFAULT_SCORE_STEPS,
    K_EFF_CHOICES,
    METHODS,
    NORMS,
    OPTIMIZERS,
    PROJECTIONS,
    RefineConfig,
    RefineConfigError,
)

if TYPE_CHECKING:
    import torch


# shown in --help; validated (with the same lists in the message) by RefineConfig, the embedding
# (a feature space of evaluation.features) when the embedder is built
_CHOICES = {"method": tuple(METHODS), "optimizer": OPTIMIZERS, "norm": NORMS, "k_eff": K_EFF_CHOICES,
            "projection": PROJECTIONS, "embedding": FEATURE_SPACE_NAMES, "precision": PRECISION_NAMES}
# --k-eff choice -> the K_eff fields it reads (refinement.lipschitz); a choice not listed here is
# assumed to read both, so that a new estimator is never refused its own flags
_K_EFF_FIELDS = {"estimate": ("k_eff_pairs",), "mean-of-max": ("k_eff_pairs", "k_eff_repeats"), "one": (),
                 "gradient": ("k_eff_pairs",)}
# scoring flag -> its default; the parser's default is None so that an explicit flag is told apart
# (and refused with --no-score, which would ignore it)
_SCORING_DEFAULTS: dict[str, Any] = {"features": "classifier", "metrics": None, "n_real": 10000, "cache_dir": None,
                                     "data_root": None}


def build_parser() -> argparse.ArgumentParser:
    p = OneLineArgumentParser(prog=cli_prog("refinement.run"), description=__doc__.split("\n\n")[0])
    p.add_argument("checkpoint", type=Path, help="a gan_models checkpoint (generator and discriminator)")
    p.add_argument("--raw-generator", action="store_true",
                   help="refine the samples of G's own weights, not of its weight average (when the run kept one)")
    add_config_flags(p, RefineConfig, _CHOICES)
    p.add_argument("--out", required=True, type=Path, help="output folder (refused if non-empty, see --overwrite)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace a non-empty --out once the new results are complete")
    p.add_argument("--n", type=int, default=10000, help="samples to refine and score (default 10000)")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of the latents (K_eff pairs and DDLS noise use seed+1, seed+2)")
    p.add_argument("--score-steps", default=None,
                   help=f"comma-separated steps to score, each <= --steps (default: those of "
                        f"{','.join(map(str, DEFAULT_SCORE_STEPS))} within --steps); the final step is always scored")
    p.add_argument("--batch-size", type=int, default=1000)
    p.add_argument("--features", default=None,
                   help=f"comma-separated scoring feature spaces, first gives fid etc.; choices: "
                        f"{','.join(SCORING_SPACE_NAMES)} (default classifier)")
    p.add_argument("--metrics", default=None,
                   help=f"comma-separated metric groups to compute; choices: {','.join(METRIC_GROUP_NAMES)} "
                        f"(default fid,prdc and, with a classifier space, class)")
    p.add_argument("--n-real", type=int, default=None, help="real test images the scores compare with (default 10000)")
    p.add_argument("--cache-dir", default=None, help="real-statistics cache folder (evaluation's default if unset)")
    p.add_argument("--evaluator-dir", default=None,
                   help="trained evaluators and embeddings of datasets the package does not ship "
                        "(default $GAN_EVALUATOR_DIR or ~/.cache/gan-refine-search/evaluators)")
    p.add_argument("--no-score", action="store_true",
                   help="refine without an evaluator (trajectory has D and displacement only)")
    p.add_argument("--data-root", default=None, help=f"folder with MNIST/raw etc. (default ${DATA_ROOT_ENV})")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default cpu)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar or lines while refining")
    return p


def _score_steps(text: str | None, steps: int) -> tuple[int, ...]:
    """The explicit --score-steps (each within [0, --steps]), else the defaults that fall within --steps."""
    if text is None:
        return tuple(s for s in DEFAULT_SCORE_STEPS if s <= steps)
    try:
        chosen = tuple(int(s) for s in text.split(",") if s.strip())
    except ValueError:
        raise SystemExit(f"error: --score-steps must be comma-separated integers, got {text!r}") from None
    if not chosen or min(chosen) < 0:
        raise SystemExit(f"error: --score-steps must be integers >= 0, got {text!r}")
    beyond = [s for s in chosen if s > steps]
    if beyond:
        raise SystemExit(f"error: --score-steps {','.join(map(str, beyond))} beyond --steps {steps}; "
                         f"valid: 0 to {steps}")
    return chosen


def _flag(name: str) -> str:
    flag = flag_name(name)
    return f"{flag}/--no-{flag[2:]}" if name in bool_fields(RefineConfig) else flag


def _check_applicable(args: argparse.Namespace, config: RefineConfig) -> None:
    """Refuse flags that the chosen method, K_eff choice or --no-score would silently ignore."""
    # a field some method reads (its declaration's ``reads``) is refused to the methods that do not;
    # the fields no method lists (method, steps, precision) apply to all
    listed = {f for method in METHODS.values() for f in method.reads}
    given = [name for name in given_config_flags(args, RefineConfig) if name in listed]
    for name in given:
        if name not in config.variant.reads:
            users = [m for m, method in METHODS.items() if name in method.reads]
            raise SystemExit(f"error: {_flag(name)} does not apply to --method {config.method}; "
                             f"it is used by: {', '.join(users)}")
        if name in ("k_eff_pairs", "k_eff_repeats") and name not in _K_EFF_FIELDS.get(config.k_eff, (name,)):
            users = [k for k, fields in _K_EFF_FIELDS.items() if name in fields]
            raise SystemExit(f"error: {_flag(name)} does not apply to --k-eff {config.k_eff}; "
                             f"it is used by --k-eff {' or '.join(users)}")
    if args.no_score:
        extra = [_flag(n) for n in _SCORING_DEFAULTS if getattr(args, n) is not None]
        if args.evaluator_dir is not None and not config.embedded:
            extra.append("--evaluator-dir")
        if extra:
            raise SystemExit(f"error: {', '.join(extra)} only apply to scoring; drop them or drop --no-score")


def _config(args: argparse.Namespace) -> RefineConfig:
    try:
        config = config_from_flags(args, RefineConfig)
    except RefineConfigError as exc:
        raise SystemExit(f"error: {exc}") from None
    if config.steps < 1:
        raise SystemExit(f"error: --steps must be a positive integer, got {config.steps}")
    return config


def _check_out(out: Path, overwrite: bool) -> None:
    """OUT must be writable (or creatable) and empty unless --overwrite; the temp folder beside it
    needs OUT's parent writable too. Checked before any work, since results are written at the end."""
    from gan_models.checkpoint import OutputDirError, check_writable_dir

    try:
        check_writable_dir(out, what="--out")
        if out.is_dir():
            check_writable_dir(out.parent, what="--out's parent folder")
    except OutputDirError as exc:
        raise SystemExit(f"error: {exc}") from None
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise SystemExit(f"error: --out {out} is not empty; pass --overwrite to replace it or choose another folder")


def _device(name: str) -> torch.device:
    from gan_models.trainer import check_device

    try:
        return check_device(name, what="--device")
    except ValueError as exc:
        raise SystemExit(f"error: {exc}") from None


def _embedder(config: RefineConfig, dataset: str, evaluator_dir: str | None, device: torch.device):
    """E for the embedded methods, its classifier found like the evaluator's (shipped, then --evaluator-dir)."""
    from evaluation import ROLES, feature_extractor, resolve_classifier
    from evaluation.features import check_feature_space

    backbone = check_feature_space(config.embedding).backbone
    weights = None
    if backbone in ROLES:  # a classifier: resolved (and sha256-checked against its manifest) here
        weights = resolve_classifier(dataset, backbone, evaluator_dir=evaluator_dir).path
    return feature_extractor(config.embedding, dataset=dataset, device=device, weights=weights)


def _publish(tmp: Path, out: Path) -> None:
    """Move the finished results into ``out`` (replacing what was there only now, at the end)."""
    if out.exists():
        shutil.rmtree(out)
    os.replace(tmp, out)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    config = _config(args)
    _check_applicable(args, config)
    score_steps = _score_steps(args.score_steps, config.steps)
    for name in ("n", "batch_size", "n_real"):
        value = getattr(args, name)
        if value is not None and value <= 0:
            raise SystemExit(f"error: {_flag(name)} must be a positive integer, got {value}")
    _check_out(args.out, args.overwrite)
    if not args.no_score:
        from .trajectory import check_scorable

        try:
            check_scorable(config)
        except ValueError as exc:
            raise SystemExit(f"error: {exc} (--no-score)") from None
    device = _device(args.device)
    models = _models(args, config, device)
    try:
        result = _refine(args, config, models, device, score_steps)
    except (ValueError, DataNotFoundError, OSError) as exc:
        raise SystemExit(f"error: {str(exc).strip().splitlines()[0]}") from None
    paths = _write(result, args.out)
    print(result.trajectory.to_string(index=False))
    print(f"k_eff={result.k_eff:.4g} best_step={result.best_step} -> "
          + ", ".join(str(args.out / p.name) for p in paths.values()))
    return 0


def _models(args: argparse.Namespace, config: RefineConfig, device: torch.device):
    """The checkpoint's networks: both are needed; its sampling generator (the weight average when it kept
    one) unless --raw-generator."""
    from gan_models import CheckpointError, load_models

    try:
        models = load_models(args.checkpoint, device=device, raw=args.raw_generator)
    except CheckpointError as exc:
        raise SystemExit(f"error: {exc}") from None
    for role, net in (("generator", models.generator), ("discriminator", models.discriminator)):
        if net is None:
            raise SystemExit(f"error: checkpoint {args.checkpoint} has no {role}; method {config.method!r} "
                             f"refines the generator's samples with the discriminator and needs both")
    if args.projection is not None and models.config.latent_prior != "normal":
        raise SystemExit(f"error: --projection applies only to a normal latent prior; {args.checkpoint} has prior "
                         f"{models.config.latent_prior!r}, whose latents are always clipped to [-1, 1]")
    return models


def _evaluator(args: argparse.Namespace, dataset: str, device: torch.device):
    """The evaluator with its real statistics prepared (a missing dataset fails before any refinement work)."""
    from evaluation import Evaluator
    from evaluation.cache import resolve_cache_dir
    from evaluation.score import default_metrics
    from gan_models.checkpoint import check_writable_dir

    check_writable_dir(resolve_cache_dir(args.cache_dir), what="--cache-dir")
    features = [f.strip() for f in (args.features or _SCORING_DEFAULTS["features"]).split(",") if f.strip()]
    evaluator = Evaluator(dataset=dataset, features=features, n_real=args.n_real or _SCORING_DEFAULTS["n_real"],
                          data_root=args.data_root, cache_dir=args.cache_dir,
                          metrics=args.metrics or default_metrics(features), device=device,
                          evaluator_dir=args.evaluator_dir)
    evaluator.prepare()
    return evaluator


def _refine(args: argparse.Namespace, config: RefineConfig, models, device: torch.device, score_steps):
    from gan_models.progress import StepProgress

    from .trajectory import refine

    dataset = models.config.dataset
    evaluator = None if args.no_score else _evaluator(args, dataset, device)
    embedder = _embedder(config, dataset, args.evaluator_dir, device) if config.embedded else None

    def report(row: dict) -> None:
        shown = {k: row[k] for k in ("step", "fid", "precision", "recall", "d_mean") if k in row}
        print("  " + "  ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in shown.items()),
              file=sys.stderr, flush=True)

    # a bar on a terminal, else a line per step: images/s and ETA (scoring time excluded from neither)
    progress = StepProgress(config.steps, mode="off" if args.no_progress else "auto", every=1,
                            label="refine step", images_per_step=args.n)
    try:
        return refine(models.generator, models.discriminator, config, latent_dim=models.config.latent_dim,
                      latent_prior=models.config.latent_prior, n=args.n, seed=args.seed, evaluator=evaluator,
                      score_steps=score_steps, batch_size=args.batch_size, device=device, embedder=embedder,
                      dataset=dataset, on_score=report, on_step=progress.update)
    finally:
        progress.close()


def _write(result, out: Path) -> dict[str, Path]:
    """Save the results in a temp folder beside ``out``, then move them into place (replacing it only now)."""
    from .results import save_result

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    try:
        paths = save_result(result, tmp)
        _publish(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return paths


if __name__ == "__main__":
    sys.exit(main())
