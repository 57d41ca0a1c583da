"""evaluation.score's and evaluation.train_classifier's bad input: each is one `error:` line on
stderr, a non-zero exit, nothing on stdout, and nothing left behind.

The cases run each CLI's real ``main(argv)`` in this process and end it as the interpreter would
(``SystemExit("error: ...")`` prints its message on stderr and exits 1); one case per CLI runs
``python -m MODULE`` in a real process, to prove the console behaviour end to end."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from evaluation.score import main as score_main
from evaluation.train_classifier import main as train_classifier_main

from cli_runner import run_bad_input
from test_eval_datasets import write_idx_dataset

NO_CUDA = not torch.cuda.is_available()
UNWRITABLE = "/proc/gan-refine-search-test/dir"
SUBPROCESS_CASES = {"evaluation.score": "text-file-as-checkpoint", "evaluation.train_classifier": "dataset-absent"}


def _run_bad(module: str, main: Callable, case: str, argv: list[str], folder: Path, expected: str,
             monkeypatch, capfd) -> None:
    """Run ``module`` in ``folder`` (holding FILE, a text file, and RANDOM, random bytes) and check the contract:
    in a real process for the module's SUBPROCESS_CASES case, else its ``main`` in this one."""
    (folder / "FILE").write_text("not a checkpoint, not a folder\n")
    (folder / "RANDOM").write_bytes(torch.randint(0, 256, (4096,), generator=torch.Generator().manual_seed(0),
                                                  dtype=torch.uint8).numpy().tobytes())
    run_bad_input(module, main, argv, folder, expected, in_subprocess=case == SUBPROCESS_CASES[module],
                  monkeypatch=monkeypatch, capfd=capfd)


# (id, arguments, text the error line must contain); CKPT is a real checkpoint. "--cache-dir CACHE"
# (a fresh path, which must stay uncreated) is added unless the case gives its own --cache-dir.
SCORE_CASES = [
    ("text-file-as-checkpoint", ["FILE"], "checkpoint FILE is corrupt or unreadable: not a torch archive"),
    ("random-bytes-as-checkpoint", ["RANDOM"], "checkpoint RANDOM is corrupt or unreadable: not a torch archive"),
    ("missing-checkpoint", ["nope.pt"], "checkpoint not found: nope.pt"),
    ("cache-dir-is-a-file", ["CKPT", "--cache-dir", "FILE"], "--cache-dir FILE exists and is not a folder"),
    ("cache-dir-under-a-file", ["CKPT", "--cache-dir", "FILE/cache"], "cannot be created: FILE is a file"),
    ("cache-dir-unwritable", ["CKPT", "--cache-dir", UNWRITABLE], f"--cache-dir {UNWRITABLE} is not writable"),
    ("device-without-cuda", ["CKPT", "--device", "cuda" if NO_CUDA else "cuda:99"],
     "requested but CUDA is not available" if NO_CUDA else "CUDA device(s)"),
    ("n-zero", ["CKPT", "--n", "0"], "--n must be a positive integer, got 0"),
    ("batch-size-zero", ["CKPT", "--batch-size", "0"], "--batch-size must be a positive integer, got 0"),
    ("n-real-beyond-the-split", ["CKPT", "--n", "50", "--n-real", "20000"], "n_real=20000 exceeds the 10000 images"),
    ("unknown-feature-space", ["CKPT", "--features", "classifier,inception"],
     "unknown feature space(s) 'inception'; valid choices: classifier, logits, pixel, vgg16"),
    ("unknown-metric", ["CKPT", "--metrics", "fid,is"], "valid choices: fid, prdc, class"),
    ("option-for-another-space", ["CKPT", "--vgg16-weights", "FILE"],
     "--vgg16-weights applies only to --features vgg16, got --features classifier"),
    ("unknown-option", ["CKPT", "--n-fake", "10"], "unrecognized arguments: --n-fake 10"),
]


@pytest.mark.parametrize("case, args, expected", SCORE_CASES, ids=[c[0] for c in SCORE_CASES])
def test_score_bad_input(case, args, expected, tmp_path, checkpoint, data_root, monkeypatch, capfd):
    argv = [str(checkpoint) if a == "CKPT" else a for a in args] + ["--data-root", str(data_root)]
    argv += [] if "--cache-dir" in args else ["--cache-dir", "CACHE"]
    _run_bad("evaluation.score", score_main, case, argv, tmp_path, expected, monkeypatch, capfd)


TRAIN_CLASSIFIER_CASES = [
    ("evaluator-dir-is-a-file", ["--evaluator-dir", "FILE"], "--evaluator-dir FILE exists and is not a folder"),
    ("evaluator-dir-under-a-file", ["--evaluator-dir", "FILE/sub"], "cannot be created: FILE is a file"),
    ("evaluator-dir-unwritable", ["--evaluator-dir", UNWRITABLE], "is not writable"),
    ("batch-larger-than-dataset", ["--batch-size", "601"],
     "--batch-size 601 exceeds the 600 train images of kmnist; valid: 1 to 600"),
    ("epochs-zero", ["--epochs", "0"], "--epochs must be a positive integer, got 0"),
    ("unknown-role", ["--roles", "classifier,teacher"], "unknown role(s) 'teacher'; valid choices: classifier, "),
    ("unknown-dataset", ["--dataset", "cifar10"], "argument --dataset: invalid choice: 'cifar10'"),
    ("dataset-absent", ["--dataset", "fashion-mnist"], "fashion-mnist data not found"),
]
assert SUBPROCESS_CASES["evaluation.score"] in [c[0] for c in SCORE_CASES]
assert SUBPROCESS_CASES["evaluation.train_classifier"] in [c[0] for c in TRAIN_CLASSIFIER_CASES]


@pytest.fixture(scope="module")
def kmnist_only_root(tmp_path_factory) -> Path:
    return write_idx_dataset(tmp_path_factory.mktemp("kmnist-only"), "kmnist")


@pytest.mark.parametrize("case, args, expected", TRAIN_CLASSIFIER_CASES, ids=[c[0] for c in TRAIN_CLASSIFIER_CASES])
def test_train_classifier_bad_input(case, args, expected, tmp_path, kmnist_only_root, monkeypatch, capfd):
    argv = [*args, "--data-root", str(kmnist_only_root)]
    argv += [] if "--epochs" in args else ["--epochs", "1"]
    argv += [] if "--dataset" in args else ["--dataset", "kmnist"]
    argv += [] if "--evaluator-dir" in args else ["--evaluator-dir", "EVALUATORS"]
    _run_bad("evaluation.train_classifier", train_classifier_main, case, argv, tmp_path, expected, monkeypatch, capfd)
