"""CLI: train one GAN from flags and write its checkpoint, loss curve and a grid of 64 samples.

    python -m gan_models.train --loss wgan-gp --steps 2000 --out runs/wgan-gp

Writes OUT/checkpoint.pt, OUT/config.json, OUT/loss_curve.png, OUT/samples.png. An existing
checkpoint in OUT is never overwritten: pass --resume to continue it, or choose another OUT.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

from .checkpoint import CheckpointError, load_checkpoint
from .config import ConfigError, TrainConfig
from .data import DATA_ROOT_ENV, DataNotFoundError, load_images
from .images import save_grid, save_loss_curve
from .trainer import DivergenceError, train_gan

_ARG_TYPES = {"int": int, "float": float, "str": str}


def _arg_type(annotation: str) -> type:
    """'float | None' -> float: the config module's annotations are strings (PEP 563)."""
    return _ARG_TYPES[str(annotation).split("|")[0].strip()]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m gan_models.train", description=__doc__.split("\n\n")[0])
    for f in dataclasses.fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        if str(f.type) == "bool":
            p.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=f"default {f.default}")
        else:
            p.add_argument(flag, type=_arg_type(f.type), default=None, metavar=f.name.upper(), help=f"default {f.default}")
    p.add_argument("--out", required=True, type=Path, help="output folder")
    p.add_argument("--data-root", default=None, help=f"folder with MNIST/raw etc. (default ${DATA_ROOT_ENV})")
    p.add_argument("--download", action="store_true", help="download the dataset if absent (needs network)")
    p.add_argument("--resume", action="store_true", help="continue OUT/checkpoint.pt")
    p.add_argument("--checkpoint-every", type=int, default=500, metavar="K", help="save every K steps (default 500)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--no-progress", action="store_true")
    return p


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    names = [f.name for f in dataclasses.fields(TrainConfig)]
    return TrainConfig.from_dict({n: getattr(args, n) for n in names if getattr(args, n) is not None})


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    ckpt = args.out / "checkpoint.pt"
    try:
        config = config_from_args(args)
        if ckpt.exists() and not args.resume:
            raise SystemExit(f"error: {ckpt} already exists; pass --resume to continue it or choose another --out")
        if args.resume and ckpt.exists():
            saved, wanted = load_checkpoint(ckpt)["config"], config.to_dict()
            changed = sorted(k for k in saved if k != "steps" and saved[k] != wanted.get(k))
            if changed:
                raise SystemExit(f"error: --resume with a different config than {ckpt} (differs in: {', '.join(changed)})")
        images = load_images(config.dataset, split="train", data_root=args.data_root, download=args.download).images
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "config.json").write_text(json.dumps(config.to_dict(), indent=2))
        result = train_gan(config, images_u8=images, checkpoint_path=ckpt, checkpoint_every=args.checkpoint_every,
                           resume=args.resume, progress=False if args.no_progress else None, device=args.device)
    except (ConfigError, DataNotFoundError, CheckpointError, DivergenceError) as exc:
        raise SystemExit(f"error: {exc}") from None
    save_grid(result.trainer.sample(64, seed=0), args.out / "samples.png")
    save_loss_curve(result.history, args.out / "loss_curve.png")
    print(f"trained {result.trainer.step} steps -> {ckpt}, {args.out / 'samples.png'}, {args.out / 'loss_curve.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
