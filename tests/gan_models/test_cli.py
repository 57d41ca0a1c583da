"""python -m gan_models.train end to end, and its bad-input lines."""

import json
import subprocess
import sys

import pytest
import torch


def run(args, data_root, **kw):
    return subprocess.run([sys.executable, "-m", "gan_models.train", *args, "--data-root", str(data_root)],
                          capture_output=True, text=True, timeout=300, **kw)


def test_cli_writes_checkpoint_curve_grid_and_resumes(tmp_path, data_root):
    out = tmp_path / "run"
    args = ["--loss", "wgan-gp", "--n-critic", "2", "--batch-size", "16", "--out", str(out)]
    r = run([*args, "--steps", "4"], data_root)
    assert r.returncode == 0, r.stderr
    for name in ("checkpoint.pt", "samples.png", "loss_curve.png", "config.json"):
        assert (out / name).is_file(), name
    assert json.loads((out / "config.json").read_text())["lambda_gp"] == 10.0
    ckpt = torch.load(out / "checkpoint.pt", weights_only=True)
    assert ckpt["step"] == 4

    before = (out / "checkpoint.pt").read_bytes()
    again = run([*args, "--steps", "4"], data_root)
    assert again.returncode != 0
    assert again.stderr.strip().splitlines() == [f"error: {out / 'checkpoint.pt'} already exists; "
                                                 "pass --resume to continue it or choose another --out"]
    assert (out / "checkpoint.pt").read_bytes() == before

    more = run([*args, "--steps", "6", "--resume"], data_root)
    assert more.returncode == 0, more.stderr
    assert torch.load(out / "checkpoint.pt", weights_only=True)["step"] == 6


@pytest.mark.parametrize(
    "args, expected",
    [
        (["--loss", "lsgan"], "error: unknown loss 'lsgan'; valid choices: bce, wgan, wgan-gp, hinge, san"),
        (["--precision", "fp16"], "error: unknown precision 'fp16'; valid choices: fp32, tf32, bf16"),
        (["--loss", "bce", "--lambda-gp", "10"], "error: lambda_gp is only used by loss 'wgan-gp', got loss 'bce'"),
        (["--steps", "-3"], "error: steps must be a positive integer, got -3"),
    ],
)
def test_cli_bad_input_is_one_line(args, expected, tmp_path, data_root):
    r = run([*args, "--out", str(tmp_path / "x")], data_root)
    assert r.returncode != 0
    assert r.stderr.strip().splitlines() == [expected]
    assert not (tmp_path / "x").exists()


def test_cli_missing_data_folder(tmp_path):
    r = subprocess.run([sys.executable, "-m", "gan_models.train", "--out", str(tmp_path / "x"),
                        "--data-root", str(tmp_path / "empty")], capture_output=True, text=True, timeout=120)
    assert r.returncode != 0
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: mnist data not found: expected train-images-idx3-ubyte")
