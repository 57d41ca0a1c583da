"""Train the evaluators: ``python -m evaluation.train_classifier --dataset fashion-mnist``.

For every MNIST-family dataset named with --dataset (default: every one whose files are present)
it trains the scoring ``classifier`` (seed 0) and the embedding ``classifier-alt`` (seed 1), writes
``<dataset>-<role>.pt`` (float32 state dict) into the evaluator folder and records the file's
sha256, seed and test accuracy in that folder's ``manifest.json``, which loading verifies.

The evaluator folder is --evaluator-dir, else ``$GAN_EVALUATOR_DIR``, else
``~/.cache/gan-refine-search/evaluators``: evaluation.score, refinement.run and search.run look
there after the package's shipped weights (MNIST), so a model the package ships is not trained
again elsewhere; to retrain a shipped file pass ``--evaluator-dir`` the package's weights folder.

Deterministic from the seed: network init, batch order, shifts and dropout all come from seeded
generators, and training runs on a fixed number of CPU threads (default 1) because multi-thread
convolution backward passes may sum in a different order. Existing files are kept unless --force.
"""

from __future__ import annotations

import io
import json
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

# light modules only: torch and evaluation.classifier are imported where used (main() after parsing: fast --help)
from gan_models.cli import OneLineArgumentParser, cli_prog
from gan_models.data import DATASETS, DataNotFoundError
from gan_models.registry import check_choices

from .score import EVALUATOR_DIR_ENV_NAME, ROLE_NAMES

if TYPE_CHECKING:
    import torch
    from torch import Tensor

    from gan_models import ImageSet

    from .classifier import LeNet

# A shipped evaluator below this test accuracy is refused (only MNIST has a bar the small net clears
# with margin; Fashion-MNIST / KMNIST evaluators are recorded with whatever accuracy they reach).
MIN_TEST_ACCURACY = {"mnist": 0.99}


@dataclass(frozen=True)
class ClassifierTrainConfig:
    seed: int = 0
    epochs: int = 4
    batch_size: int = 128
    lr: float = 2e-3
    weight_decay: float = 1e-4
    max_shift: int = 2  # random translation in pixels, each direction

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
                raise ValueError(f"{name} must be a positive integer, got {v!r}")
        if not (isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"lr must be a positive number, got {self.lr!r}")
        if not isinstance(self.max_shift, int) or self.max_shift < 0:
            raise ValueError(f"max_shift must be a non-negative integer, got {self.max_shift!r}")


def random_shift(x: Tensor, max_shift: int, generator: torch.Generator) -> Tensor:
    """Translate each image [B, 1, 28, 28] by its own (dy, dx) in [-s, s], filling with -1 (background)."""
    import torch
    import torch.nn.functional as F

    if max_shift == 0:
        return x
    b, _, h, w = x.shape
    s = max_shift
    padded = F.pad(x, (s, s, s, s), value=-1.0)  # [B, 1, h+2s, w+2s]
    oy = torch.randint(0, 2 * s + 1, (b,), generator=generator)
    ox = torch.randint(0, 2 * s + 1, (b,), generator=generator)
    rows = (oy[:, None] + torch.arange(h))[:, :, None]  # [B, h, 1]
    cols = (ox[:, None] + torch.arange(w))[:, None, :]  # [B, 1, w]
    return padded[torch.arange(b)[:, None, None], 0, rows, cols].unsqueeze(1)


def accuracy(net: LeNet, images_u8: Tensor, labels: Tensor, *, batch_size: int = 1000) -> float:
    import torch

    from gan_models import to_float

    net.eval()
    correct = 0
    with torch.no_grad():
        for i in range(0, images_u8.shape[0], batch_size):
            logits = net(to_float(images_u8[i : i + batch_size]))
            correct += int((logits.argmax(1) == labels[i : i + batch_size]).sum())
    return correct / images_u8.shape[0]


def train_classifier(
    train_u8: Tensor, train_labels: Tensor, config: ClassifierTrainConfig, *, log=None
) -> LeNet:
    """Adam with a cosine-decayed learning rate on cross-entropy, random shifts as augmentation."""
    import torch
    import torch.nn.functional as F

    from gan_models import to_float

    from .classifier import LeNet

    torch.manual_seed(config.seed)  # init and dropout masks
    net = LeNet()
    order = torch.Generator().manual_seed(config.seed + 1000)
    shifts = torch.Generator().manual_seed(config.seed + 2000)
    opt = torch.optim.Adam(net.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    n = train_u8.shape[0]
    if config.batch_size > n:
        raise ValueError(f"batch_size {config.batch_size} exceeds the {n} training images; valid: 1 to {n}")
    steps_per_epoch = n // config.batch_size
    total = steps_per_epoch * config.epochs
    # lr_t = lr * (1 + cos(pi t / T)) / 2
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda t: 0.5 * (1.0 + math.cos(math.pi * t / total)))
    for epoch in range(config.epochs):
        net.train()
        perm = torch.randperm(n, generator=order)
        running = 0.0
        for i in range(steps_per_epoch):
            idx = perm[i * config.batch_size : (i + 1) * config.batch_size]
            x = random_shift(to_float(train_u8[idx]), config.max_shift, shifts)
            loss = F.cross_entropy(net(x), train_labels[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            running += loss.item()
        if log is not None:
            log(f"  epoch {epoch + 1}/{config.epochs}: mean loss {running / steps_per_epoch:.4f}")
    return net.eval()


def save_weights(
    net: LeNet,
    *,
    dataset: str,
    role: str,
    config: ClassifierTrainConfig,
    test_accuracy: float,
    threads: int,
    weights_dir: str | os.PathLike | None = None,
) -> Path:
    """Write the float32 state dict and record its sha256 in the manifest (both atomically).

    ``weights_dir``: the folder (default: the evaluator folder, see ``resolve_evaluator_dir``)."""
    import torch

    from .classifier import (
        MANIFEST_FORMAT,
        MANIFEST_NAME,
        classifier_name,
        file_sha256,
        manifest_key,
        read_manifest,
        resolve_evaluator_dir,
        weights_filename,
    )

    folder = resolve_evaluator_dir(weights_dir)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / weights_filename(dataset, role)
    # Serialise in memory: torch.save names the archive after the file it writes, so saving to a
    # temp file would put its pid into the bytes and the sha256 would differ between identical nets.
    buf = io.BytesIO()
    torch.save({k: v.detach().to(torch.float32).contiguous() for k, v in net.state_dict().items()}, buf)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(buf.getvalue())
    os.replace(tmp, path)
    manifest = read_manifest(folder)
    manifest["format"] = MANIFEST_FORMAT
    manifest["models"][manifest_key(dataset, role)] = {
        "name": classifier_name(dataset, role),
        "file": path.name,
        "sha256": file_sha256(path),
        "bytes": path.stat().st_size,
        "architecture": "lenet-16-32-128",
        "seed": config.seed,
        "epochs": config.epochs,
        "batch_size": config.batch_size,
        "lr": config.lr,
        "max_shift": config.max_shift,
        "test_accuracy": round(test_accuracy, 5),
        "threads": threads,
        "torch": torch.__version__.split("+")[0],
    }
    manifest["models"] = dict(sorted(manifest["models"].items()))
    mpath = folder / MANIFEST_NAME
    mtmp = mpath.with_name(f".{mpath.name}.{os.getpid()}.tmp")
    mtmp.write_text(json.dumps(manifest, indent=2) + "\n")
    os.replace(mtmp, mpath)
    return path


def _shipped(dataset: str, role: str, folder: Path) -> bool:
    """True when the package ships this model and ``folder`` is not the package's own: the shipped
    file is found first, so a copy trained into ``folder`` would never be used."""
    from .classifier import WEIGHTS_DIR, manifest_key, read_manifest

    return folder.resolve() != WEIGHTS_DIR and manifest_key(dataset, role) in read_manifest(WEIGHTS_DIR)["models"]


def build_parser() -> OneLineArgumentParser:
    p = OneLineArgumentParser(prog=cli_prog("evaluation.train_classifier"), description=__doc__.splitlines()[0])
    p.add_argument("--dataset", action="append", choices=list(DATASETS),
                   help="dataset to train for (repeatable); default: every one whose data is present")
    p.add_argument("--roles", default=",".join(ROLE_NAMES),
                   help=f"comma list of roles; choices: {','.join(ROLE_NAMES)} (default: all)")
    p.add_argument("--epochs", type=int, default=ClassifierTrainConfig.epochs)
    p.add_argument("--batch-size", type=int, default=ClassifierTrainConfig.batch_size)
    p.add_argument("--data-root", default=None, help="MNIST-family data folder (default $GAN_DATA_ROOT)")
    p.add_argument("--evaluator-dir", default=None,
                   help=f"output folder (default ${EVALUATOR_DIR_ENV_NAME}, "
                        f"else ~/.cache/gan-refine-search/evaluators)")
    p.add_argument("--threads", type=int, default=1, help="CPU threads (fixed for bit-reproducible weights)")
    p.add_argument("--force", action="store_true", help="retrain and overwrite existing weights files")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    import torch

    from gan_models.checkpoint import OutputDirError, check_writable_dir

    from .classifier import ROLES, resolve_evaluator_dir, weights_filename

    roles = [r.strip() for r in args.roles.split(",") if r.strip()]
    try:
        check_choices("role", roles, ROLES)
    except ValueError as exc:
        raise SystemExit(f"error: {exc}") from None
    for flag, value in (("--epochs", args.epochs), ("--batch-size", args.batch_size), ("--threads", args.threads)):
        if value <= 0:
            raise SystemExit(f"error: {flag} must be a positive integer, got {value}")
    folder = resolve_evaluator_dir(args.evaluator_dir)
    try:
        check_writable_dir(folder, what="--evaluator-dir")
    except OutputDirError as exc:
        raise SystemExit(f"error: {exc}") from None
    torch.set_num_threads(args.threads)
    plan = _plan(args, roles, folder)  # what to train, and its data: a bad dataset fails before anything is written
    for dataset, train_set, test_set, todo in plan:
        for role in todo:
            _train_one(dataset, role, train_set, test_set, args, folder)
    if not plan and not args.dataset and not any((folder / weights_filename(d, r)).exists() or _shipped(d, r, folder)
                                                 for d in DATASETS for r in roles):
        raise SystemExit("error: no dataset found to train on; point --data-root (or GAN_DATA_ROOT) at the data")
    return 0


def _plan(args, roles: list[str], folder: Path) -> list[tuple[str, ImageSet, ImageSet, list[str]]]:
    """(dataset, train set, test set, roles to train) for every dataset with something to train."""
    from gan_models import load_images

    from .classifier import WEIGHTS_DIR, weights_filename

    plan = []
    for dataset in args.dataset or list(DATASETS):
        todo = []
        for role in roles:
            path = folder / weights_filename(dataset, role)
            if _shipped(dataset, role, folder):
                print(f"{dataset} {role}: shipped in {WEIGHTS_DIR}, which is searched first; not training a copy "
                      f"(to retrain the shipped file: --evaluator-dir {WEIGHTS_DIR} --force)")
            elif path.exists() and not args.force:
                print(f"{path} exists; keeping it (use --force to retrain)")
            else:
                todo.append(role)
        if not todo:
            continue
        try:
            train_set = load_images(dataset, split="train", data_root=args.data_root)
            test_set = load_images(dataset, split="test", data_root=args.data_root)
        except DataNotFoundError as exc:
            if args.dataset:  # asked for by name: absence is an error
                raise SystemExit(f"error: {exc}") from None
            print(f"skipping {dataset}: {exc}", file=sys.stderr)
            continue
        if args.batch_size > len(train_set):
            raise SystemExit(f"error: --batch-size {args.batch_size} exceeds the {len(train_set)} train images of "
                             f"{dataset}; valid: 1 to {len(train_set)}")
        plan.append((dataset, train_set, test_set, todo))
    return plan


def _train_one(dataset: str, role: str, train_set: ImageSet, test_set: ImageSet, args, folder: Path) -> None:
    """Train one role's classifier; write its weights only if it reaches the dataset's minimum test accuracy."""
    from .classifier import ROLES, file_sha256

    config = ClassifierTrainConfig(seed=ROLES[role], epochs=args.epochs, batch_size=args.batch_size)
    print(f"training {dataset} {role} (seed {config.seed}, {config.epochs} epochs, {args.threads} thread(s))")
    t0 = time.perf_counter()
    net = train_classifier(train_set.images, train_set.labels, config, log=print)
    acc = accuracy(net, test_set.images, test_set.labels)
    minimum = MIN_TEST_ACCURACY.get(dataset, 0.0)
    if acc < minimum:
        raise SystemExit(f"error: {dataset} {role} reached test accuracy {acc:.4f} < {minimum}; "
                         f"nothing written (try more --epochs)")
    saved = save_weights(net, dataset=dataset, role=role, config=config, test_accuracy=acc, threads=args.threads,
                         weights_dir=folder)
    print(f"  test accuracy {acc:.4f}; wrote {saved} ({saved.stat().st_size / 1e6:.2f} MB, "
          f"sha256 {file_sha256(saved)[:12]}...) in {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    sys.exit(main())
