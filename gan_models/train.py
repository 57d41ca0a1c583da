"""CLI: train one GAN from flags and write its checkpoint, loss curve and a grid of 64 samples.

    python -m gan_models.train --loss wgan-gp --steps 2000 --out runs/wgan-gp

Writes OUT/checkpoint.pt, OUT/config.json, OUT/loss_curve.png, OUT/samples.png. An existing
checkpoint in OUT is never overwritten: pass --resume to continue it, or choose another OUT.
Bad input (a bad flag or flag combination, an OUT that cannot be written, a missing device or
dataset, a batch larger than the dataset) ends in one ``error:`` line before anything is written.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

# light modules only: torch and the heavy ones are imported by main() once the flags parse (fast --help)
from .cli import OneLineArgumentParser, add_config_flags, cli_prog, config_from_flags, error_line
from .config import FIELD_CHOICES, ConfigError, TrainConfig
from .data import DATA_ROOT_ENV, DataNotFoundError


class _BadInput(Exception):
    """A CLI-level bad input (a flag combination no config sees); its message is the error line."""


def build_parser() -> argparse.ArgumentParser:
    p = OneLineArgumentParser(prog=cli_prog("gan_models.train"), description=__doc__.split("\n\n")[0])
    add_config_flags(p, TrainConfig, FIELD_CHOICES)  # choices shown; TrainConfig validates them
    p.add_argument("--out", required=True, type=Path, help="output folder")
    p.add_argument("--data-root", default=None, help=f"folder with MNIST/raw etc. (default ${DATA_ROOT_ENV})")
    p.add_argument("--download", action="store_true", help="download the dataset if absent (needs network)")
    p.add_argument("--resume", action="store_true", help="continue OUT/checkpoint.pt (which must exist)")
    p.add_argument("--checkpoint-every", type=int, default=500, metavar="K", help="save every K steps (default 500)")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default cpu)")
    p.add_argument("--no-progress", action="store_true", help="print nothing while training")
    p.add_argument("--progress-every", type=int, default=0, metavar="N",
                   help="when stderr is not a terminal, a progress line every N steps (default: ~20 lines a run)")
    return p


def _check_resume(out: Path, ckpt: Path, resume: bool, config: TrainConfig) -> None:
    """An existing checkpoint is continued only with --resume, and --resume needs one with this config."""
    if ckpt.exists() and not resume:
        raise _BadInput(f"{ckpt} already exists; pass --resume to continue it or choose another --out")
    if not resume:
        return
    from .checkpoint import load_checkpoint
    from .trainer import config_changes

    if not ckpt.is_file():
        raise _BadInput(f"--resume: no checkpoint in {out} (expected {ckpt.name}); "
                        f"drop --resume to start a new run there, or point --out at the run to continue")
    changed = config_changes(load_checkpoint(ckpt)["config"], config.to_dict())
    if changed:
        raise _BadInput(f"--resume with a different config than {ckpt} (differs in: {', '.join(changed)})")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from .checkpoint import CheckpointError, OutputDirError, check_writable_dir
    from .data import load_images
    from .images import save_grid, save_loss_curve
    from .trainer import DivergenceError, check_device, train_gan

    out: Path = args.out
    ckpt = out / "checkpoint.pt"
    try:  # every check comes first, and nothing is written until all pass
        config = config_from_flags(args, TrainConfig)
        if args.progress_every < 0:
            raise _BadInput(f"--progress-every must be >= 0 steps (0: about 20 lines a run), got {args.progress_every}")
        if args.checkpoint_every <= 0:
            raise _BadInput(f"--checkpoint-every must be a positive number of steps, got {args.checkpoint_every}")
        device = check_device(args.device, what="--device")
        check_writable_dir(out, what="--out")
        _check_resume(out, ckpt, args.resume, config)
        images = load_images(config.dataset, split="train", data_root=args.data_root, download=args.download).images
        if config.batch_size > images.shape[0]:
            raise _BadInput(f"--batch-size {config.batch_size} exceeds the {images.shape[0]} train images of "
                            f"{config.dataset}; valid: 1 to {images.shape[0]}")
        try:
            out.mkdir(parents=True, exist_ok=True)
            (out / "config.json").write_text(json.dumps(config.to_dict(), indent=2))
        except OSError as exc:
            raise _BadInput(f"--out {out} cannot be written: {exc.strerror or exc}") from None
    except (_BadInput, ConfigError, OutputDirError, DataNotFoundError, CheckpointError, ValueError) as exc:
        raise SystemExit(error_line(exc)) from None
    try:
        result = train_gan(config, images_u8=images, checkpoint_path=ckpt, checkpoint_every=args.checkpoint_every,
                           resume=args.resume, progress=not args.no_progress,
                           progress_every=args.progress_every, device=device)
    except (CheckpointError, DivergenceError) as exc:
        raise SystemExit(error_line(exc)) from None
    save_grid(result.trainer.sample(64, seed=0), out / "samples.png")
    save_loss_curve(result.history, out / "loss_curve.png")
    print(f"trained {result.trainer.step} steps -> {ckpt}, {out / 'samples.png'}, {out / 'loss_curve.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
