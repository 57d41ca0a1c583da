"""gan_models.train's bad input: each is one `error:` line on stderr, a non-zero exit, nothing on
stdout, and nothing left behind (no OUT folder, no config.json, no temp file).

The cases run the CLI's real ``main(argv)`` in this process and end it as the interpreter would
(``SystemExit("error: ...")`` prints its message on stderr and exits 1); one case runs
``python -m gan_models.train`` in a real process, to prove the console behaviour end to end."""

from __future__ import annotations

import pytest
import torch

from gan_models.data import DATASETS
from gan_models.train import main

from cli_runner import run_bad_input

NO_CUDA = not torch.cuda.is_available()
SUBPROCESS_CASE = "device-unknown"

# (id, arguments, text the one error line must contain). FILE is a regular file in the test folder,
# OUT a fresh path there; "--out OUT" is added unless the case gives its own --out.
CASES = [
    ("out-is-a-file", ["--out", "FILE"], "--out FILE exists and is not a folder"),
    ("out-under-a-file", ["--out", "FILE/sub"], "--out FILE/sub cannot be created: FILE is a file, not a folder"),
    ("out-unwritable", ["--out", "/proc/gan-refine-search-test/out"], "is not writable: cannot create files in /proc"),
    ("batch-larger-than-dataset", ["--batch-size", "60001"],
     "--batch-size 60001 exceeds the 60000 train images of mnist; valid: 1 to 60000"),
    ("device-without-cuda", ["--device", "cuda" if NO_CUDA else "cuda:99"],
     "requested but CUDA is not available" if NO_CUDA else "CUDA device(s)"),
    ("device-unknown", ["--device", "gpu"], "invalid --device 'gpu'; valid examples: cpu, cuda, cuda:0"),
    ("resume-without-checkpoint", ["--resume"], "--resume: no checkpoint in OUT"),
    ("checkpoint-every-zero", ["--checkpoint-every", "0"], "--checkpoint-every must be a positive number of steps"),
    ("checkpoint-every-negative", ["--checkpoint-every", "-5"], "got -5"),
    ("option-of-another-loss", ["--loss", "hinge", "--clip-value", "0.1"],
     "clip_value is only used by loss 'wgan', got loss 'hinge'"),
    ("unknown-dataset", ["--dataset", "cifar10"],
     f"unknown dataset 'cifar10'; valid choices: {', '.join(DATASETS)}"),
    ("unknown-option", ["--lamda-gp", "5"], "unrecognized arguments: --lamda-gp 5"),
    ("not-a-number", ["--steps", "ten"], "argument --steps: invalid int value: 'ten'"),
]
assert SUBPROCESS_CASE in [c[0] for c in CASES]


@pytest.mark.parametrize("case, args, expected", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_and_leaves_nothing(case, args, expected, tmp_path, data_root, monkeypatch, capfd):
    (tmp_path / "FILE").write_text("not a folder\n")
    argv = [*args, "--data-root", str(data_root), "--no-progress"]
    argv += [] if "--out" in args else ["--out", "OUT"]
    argv += [] if "--steps" in args else ["--steps", "2"]
    run_bad_input("gan_models.train", main, argv, tmp_path, expected, in_subprocess=case == SUBPROCESS_CASE,
                  monkeypatch=monkeypatch, capfd=capfd)
