"""python -m gan_models.train, in a real process: each bad input is one `error:` line on stderr,
a non-zero exit, and nothing left behind (no OUT folder, no config.json, no temp file)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

NO_CUDA = not torch.cuda.is_available()

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
     "unknown dataset 'cifar10'; valid choices: mnist, fashion-mnist, kmnist"),
    ("unknown-option", ["--lamda-gp", "5"], "unrecognized arguments: --lamda-gp 5"),
    ("not-a-number", ["--steps", "ten"], "argument --steps: invalid int value: 'ten'"),
]


def _tree(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


@pytest.mark.parametrize("args, expected", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_and_leaves_nothing(args, expected, tmp_path, data_root):
    (tmp_path / "FILE").write_text("not a folder\n")
    cmd = [sys.executable, "-m", "gan_models.train", *args, "--data-root", str(data_root), "--no-progress"]
    cmd += [] if "--out" in args else ["--out", "OUT"]
    cmd += [] if "--steps" in args else ["--steps", "2"]
    before = _tree(tmp_path)
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    lines = proc.stderr.splitlines()
    assert proc.returncode != 0
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert expected in lines[0]
    assert _tree(tmp_path) == before  # no OUT, no config.json, no temp files
