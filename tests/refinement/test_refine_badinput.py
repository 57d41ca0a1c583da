"""refinement.run's bad input: each is one `error:` line on stderr, a non-zero exit, nothing on
stdout, and nothing left behind (no --out folder, no temp folder beside it, no cache).

The cases run the CLI's real ``main(argv)`` in this process and end it as the interpreter would
(``SystemExit("error: ...")`` prints its message on stderr and exits 1); one case runs
``python -m refinement.run`` in a real process, to prove the console behaviour end to end."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from gan_models import TrainConfig, train_gan
from refinement.run import main

from cli_runner import run_bad_input

NO_CUDA = not torch.cuda.is_available()
UNWRITABLE = "/proc/gan-refine-search-test/dir"
SUBPROCESS_CASE = "text-file-as-checkpoint"


def _checkpoint(path: Path, images, **config) -> Path:
    train_gan(TrainConfig(steps=2, batch_size=16, seed=0, **config), images_u8=images, checkpoint_path=path,
              progress=False)
    return path


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory, mnist_train) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("ckpt")
    images = mnist_train.images[:256]
    return {"CKPT": _checkpoint(folder / "normal.pt", images),
            "UNIFORM_CKPT": _checkpoint(folder / "uniform.pt", images, latent_prior="uniform")}


CASES = [
    ("text-file-as-checkpoint", ["FILE"], "checkpoint FILE is corrupt or unreadable: not a torch archive"),
    ("random-bytes-as-checkpoint", ["RANDOM"], "checkpoint RANDOM is corrupt or unreadable: not a torch archive"),
    ("out-is-a-file", ["CKPT", "--out", "FILE"], "--out FILE exists and is not a folder"),
    ("out-under-a-file", ["CKPT", "--out", "FILE/sub"], "--out FILE/sub cannot be created: FILE is a file"),
    ("out-unwritable", ["CKPT", "--out", UNWRITABLE], f"--out {UNWRITABLE} is not writable"),
    ("cache-dir-under-a-file", ["CKPT", "--cache-dir", "FILE/cache"], "--cache-dir FILE/cache cannot be created"),
    ("device-without-cuda", ["CKPT", "--device", "cuda" if NO_CUDA else "cuda:99"],
     "requested but CUDA is not available" if NO_CUDA else "CUDA device(s)"),
    ("unknown-precision", ["CKPT", "--precision", "fp16"], "unknown precision 'fp16'; valid choices: fp32, tf32, bf16"),
    ("score-steps-beyond-steps", ["CKPT", "--steps", "5", "--score-steps", "0,2,30"],
     "--score-steps 30 beyond --steps 5; valid: 0 to 5"),
    ("embedding-with-latent", ["CKPT", "--method", "latent", "--embedding", "classifier-alt"],
     "--embedding does not apply to --method latent; it is used by: embedded-target, embedded-latent"),
    ("projection-with-target", ["CKPT", "--method", "target", "--projection", "tanaka"],
     "--projection does not apply to --method target"),
    ("clip-images-with-latent", ["CKPT", "--method", "latent", "--no-clip-images"],
     "--clip-images/--no-clip-images does not apply to --method latent"),
    ("lr-with-ddls", ["CKPT", "--method", "ddls", "--lr", "0.1"], "--lr does not apply to --method ddls"),
    ("ddls-step-with-dot", ["CKPT", "--method", "target", "--ddls-step-size", "0.1"],
     "--ddls-step-size does not apply to --method target; it is used by: ddls"),
    ("k-eff-repeats-with-estimate", ["CKPT", "--k-eff", "estimate", "--k-eff-repeats", "5"],
     "--k-eff-repeats does not apply to --k-eff estimate; it is used by --k-eff mean-of-max"),
    ("projection-with-uniform-prior", ["UNIFORM_CKPT", "--method", "latent", "--projection", "tanaka"],
     "--projection applies only to a normal latent prior"),
    ("scoring-flags-with-no-score", ["CKPT", "--no-score", "--features", "pixel", "--n-real", "500"],
     "--features, --n-real only apply to scoring; drop them or drop --no-score"),
    ("steps-zero", ["CKPT", "--steps", "0"], "--steps must be a positive integer, got 0"),
    ("n-zero", ["CKPT", "--n", "0"], "--n must be a positive integer, got 0"),
    ("unknown-method", ["CKPT", "--method", "latnet"], "unknown method 'latnet'; valid choices: target, latent"),
    ("unknown-option", ["CKPT", "--step-count", "3"], "unrecognized arguments: --step-count 3"),
]


@pytest.mark.parametrize("case, args, expected", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_and_leaves_nothing(case, args, expected, tmp_path, checkpoints, data_root, monkeypatch,
                                                  capfd):
    (tmp_path / "FILE").write_text("not a checkpoint, not a folder\n")
    (tmp_path / "RANDOM").write_bytes(torch.randint(0, 256, (4096,), generator=torch.Generator().manual_seed(0),
                                                    dtype=torch.uint8).numpy().tobytes())
    argv = [str(checkpoints[a]) if a in checkpoints else a for a in args]
    argv += [] if "--out" in args else ["--out", "OUT"]
    argv += [] if "--cache-dir" in args or "--no-score" in args else ["--cache-dir", "CACHE"]
    argv += [] if "--no-score" in args else ["--data-root", str(data_root)]
    argv += [] if "--n" in args else ["--n", "20"]
    run_bad_input("refinement.run", main, argv, tmp_path, expected, in_subprocess=case == SUBPROCESS_CASE,
                  monkeypatch=monkeypatch, capfd=capfd)
