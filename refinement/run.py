"""CLI: refine a checkpoint's samples with DOT or DDLS and score them step by step.

    python -m refinement.run CHECKPOINT --method latent --steps 20 --lr 0.01 --k-eff estimate --out DIR

Writes DIR/samples.pt (refined images), samples.png, frontier.parquet (one row per scored step),
frontier.png, precision_recall.png, strip.png and result.json. Results are assembled in a
temporary folder beside DIR and moved into place at the end, so an interrupted or failed run
never leaves partial results in DIR; an existing non-empty DIR is refused unless --overwrite.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import sys
from pathlib import Path

import torch

from gan_models import CheckpointError, DataNotFoundError, load_models
from gan_models.data import DATA_ROOT_ENV

from .config import K_EFF_CHOICES, METHODS, NORMS, OPTIMIZERS, PROJECTIONS, RefineConfig, RefineConfigError
from .results import save_result
from .trajectory import DEFAULT_SCORE_STEPS, check_scorable, refine

_TYPES = {"int": int, "float": float, "str": str}
# shown in --help; validated (with the same lists in the message) by RefineConfig
_CHOICES = {"method": METHODS, "optimizer": OPTIMIZERS, "norm": NORMS, "k_eff": K_EFF_CHOICES, "projection": PROJECTIONS}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m refinement.run", description=__doc__.split("\n\n")[0])
    p.add_argument("checkpoint", type=Path, help="a gan_models checkpoint (generator and discriminator)")
    for f in dataclasses.fields(RefineConfig):
        flag = "--" + f.name.replace("_", "-")
        if str(f.type) == "bool":
            p.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=f"default {f.default}")
        else:
            extra = f"; one of {', '.join(_CHOICES[f.name])}" if f.name in _CHOICES else ""
            p.add_argument(flag, type=_TYPES[str(f.type)], default=None, metavar=f.name.upper(),
                           help=f"default {f.default}{extra}")
    p.add_argument("--out", required=True, type=Path, help="output folder (refused if non-empty, see --overwrite)")
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty --out once the new results are complete")
    p.add_argument("--n", type=int, default=10000, help="samples to refine and score (default 10000)")
    p.add_argument("--seed", type=int, default=0, help="seed of the latents (K_eff pairs and DDLS noise use seed+1, seed+2)")
    p.add_argument("--score-steps", default=",".join(map(str, DEFAULT_SCORE_STEPS)),
                   help="comma-separated steps to score (the final step is always scored)")
    p.add_argument("--batch-size", type=int, default=1000)
    p.add_argument("--features", default="classifier", help="comma-separated scoring feature spaces (first gives fid etc.)")
    p.add_argument("--metrics", default="fid,prdc,class", help="metric groups to compute")
    p.add_argument("--n-real", type=int, default=10000, help="real test images the scores compare with")
    p.add_argument("--cache-dir", default=None, help="real-statistics cache folder (evaluation's default if unset)")
    p.add_argument("--no-score", action="store_true", help="refine without an evaluator (trajectory has D and displacement only)")
    p.add_argument("--data-root", default=None, help=f"folder with MNIST/raw etc. (default ${DATA_ROOT_ENV})")
    p.add_argument("--device", default="cpu")
    return p


def _score_steps(text: str) -> tuple[int, ...]:
    try:
        steps = tuple(int(s) for s in text.split(",") if s.strip())
    except ValueError:
        raise SystemExit(f"error: --score-steps must be comma-separated integers, got {text!r}") from None
    if not steps or min(steps) < 0:
        raise SystemExit(f"error: --score-steps must be integers >= 0, got {text!r}")
    return steps


def _config(args: argparse.Namespace) -> RefineConfig:
    names = [f.name for f in dataclasses.fields(RefineConfig)]
    try:
        config = RefineConfig.from_dict({k: getattr(args, k) for k in names if getattr(args, k) is not None})
    except RefineConfigError as exc:
        raise SystemExit(f"error: {exc}") from None
    if config.steps < 1:
        raise SystemExit(f"error: --steps must be a positive integer, got {config.steps}")
    return config


def _check_out(out: Path, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise SystemExit(f"error: --out {out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise SystemExit(f"error: --out {out} is not empty; pass --overwrite to replace it or choose another folder")


def _device(name: str) -> torch.device:
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise SystemExit(f"error: invalid --device {name!r}; valid examples: cpu, cuda, cuda:0") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit(f"error: --device {name} requested but CUDA is not available; use --device cpu")
    return device


def _publish(tmp: Path, out: Path) -> None:
    """Move the finished results into ``out`` (replacing what was there only now, at the end)."""
    if out.exists():
        shutil.rmtree(out)
    os.replace(tmp, out)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    config = _config(args)
    score_steps = _score_steps(args.score_steps)
    for name in ("n", "batch_size", "n_real"):
        if getattr(args, name) <= 0:
            raise SystemExit(f"error: --{name.replace('_', '-')} must be a positive integer, got {getattr(args, name)}")
    _check_out(args.out, args.overwrite)
    if not args.no_score:
        try:
            check_scorable(config)
        except ValueError as exc:
            raise SystemExit(f"error: {exc} (--no-score)") from None
    device = _device(args.device)
    try:
        models = load_models(args.checkpoint, device=device)
    except CheckpointError as exc:
        raise SystemExit(f"error: {exc}") from None
    for role, net in (("generator", models.generator), ("discriminator", models.discriminator)):
        if net is None:
            raise SystemExit(f"error: checkpoint {args.checkpoint} has no {role}; method {config.method!r} "
                             f"refines the generator's samples with the discriminator and needs both")

    evaluator = None
    try:
        if not args.no_score:
            from evaluation import Evaluator

            evaluator = Evaluator(dataset=models.config.dataset, features=args.features, n_real=args.n_real,
                                  data_root=args.data_root, cache_dir=args.cache_dir, metrics=args.metrics,
                                  device=device)
            evaluator.prepare()  # real statistics now: a missing dataset fails before any refinement work

        def report(row: dict) -> None:
            shown = {k: row[k] for k in ("step", "fid", "precision", "recall", "d_mean") if k in row}
            print("  " + "  ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in shown.items()),
                  file=sys.stderr, flush=True)

        result = refine(models.generator, models.discriminator, config, latent_dim=models.config.latent_dim,
                        latent_prior=models.config.latent_prior, n=args.n, seed=args.seed, evaluator=evaluator,
                        score_steps=score_steps, batch_size=args.batch_size, device=device,
                        dataset=models.config.dataset, on_score=report)
    except (ValueError, DataNotFoundError, OSError) as exc:
        raise SystemExit(f"error: {str(exc).strip().splitlines()[0]}") from None

    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.parent / f".{args.out.name}.tmp-{os.getpid()}"
    try:
        paths = save_result(result, tmp)
        _publish(tmp, args.out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    print(result.trajectory.to_string(index=False))
    print(f"k_eff={result.k_eff:.4g} best_step={result.best_step} -> "
          + ", ".join(str(args.out / p.name) for p in paths.values()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
