"""`python -m evaluation.score` on a tiny real checkpoint, and its one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

import evaluation
from evaluation.score import main, sample_generator
from gan_models import load_models


def _cli_args(checkpoint, data_root, cache_dir, *extra):
    return [str(checkpoint), "--n", "300", "--n-real", "500", "--data-root", str(data_root),
            "--cache-dir", str(cache_dir), *extra]


def test_cli_json_matches_the_library(checkpoint, data_root, cache_dir, capsys):
    assert main(_cli_args(checkpoint, data_root, cache_dir, "--features", "classifier,pixel", "--json")) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["n_fake"] == 300 and out["n_real"] == 500 and out["step"] == 5
    assert out["evaluator"] == "mnist-lenet-seed0" and len(out["evaluator_sha256"]) == 64
    assert out["features"] == ["classifier", "pixel"]
    # the same samples through the library give the same numbers
    models = load_models(checkpoint)
    x = sample_generator(models.generator, 300, latent_dim=100, latent_prior="normal", seed=0)
    lib = evaluation.score(x, features=("classifier", "pixel"), n_real=500, data_root=data_root, cache_dir=cache_dir)
    for key, value in lib.items():
        assert out[key] == pytest.approx(value, rel=1e-9) if isinstance(value, float) else out[key] == value
    # a 5-step generator draws near-identical grey blobs: far from MNIST, no diversity
    assert out["fid"] > 100 and out["pixel/fid"] > 100
    assert out["recall"] < 0.05 and out["coverage"] < 0.05 and out["pixel/precision"] < 0.2


def test_cli_table(checkpoint, data_root, cache_dir, capsys):
    assert main(_cli_args(checkpoint, data_root, cache_dir, "--features", "classifier,pixel")) == 0
    text = capsys.readouterr().out
    header = next(line for line in text.splitlines() if line.startswith("metric"))
    assert header.split() == ["metric", "classifier", "pixel"]
    for row in ("fid", "precision", "recall", "density", "coverage", "class_coverage", "class_kl"):
        assert any(line.split()[0] == row for line in text.splitlines() if line.strip()), row
    assert "mnist-lenet-seed0" in text


def test_cli_errors_are_one_line_in_a_real_process(checkpoint):
    for args, message in (
        (["missing.pt"], "error: checkpoint not found: missing.pt"),
        ([str(checkpoint), "--features", "classifier,inception"], "valid choices: classifier, logits, pixel, vgg16"),
    ):
        proc = subprocess.run([sys.executable, "-m", "evaluation.score", *args], capture_output=True, text=True,
                              timeout=300)
        assert proc.returncode != 0 and proc.stdout == ""
        assert "Traceback" not in proc.stderr
        lines = [line for line in proc.stderr.splitlines() if line.strip()]
        assert message in lines[-1] and sum("error" in line for line in lines) == 1


@pytest.mark.parametrize(
    "args, message",
    [
        (["CKPT", "--features", "classifier-alt"], "valid choices: classifier, logits, pixel, vgg16"),
        (["CKPT", "--metrics", "fid,is"], "valid choices: fid, prdc, class"),
        (["CKPT", "--n", "3"], "more than 5 samples"),
        (["CKPT", "--n-real", "20000"], "n_real=20000 exceeds the 10000 images"),
        (["CKPT", "--device", "cuda:9"] if not torch.cuda.is_available() else ["CKPT", "--n", "0"], "error"),
        (["CKPT", "--data-root", "/nonexistent", "--cache-dir", "EMPTY"], "mnist data not found"),
    ],
)
def test_cli_errors_exit_with_one_line(args, message, checkpoint, tmp_path, capsys):
    argv = [str(checkpoint) if a == "CKPT" else str(tmp_path) if a == "EMPTY" else a for a in args]
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    code = exit_info.value.code
    text = code if isinstance(code, str) else capsys.readouterr().err  # SystemExit("error: ...") or argparse
    assert code != 0 and message in text
    assert len([line for line in text.splitlines() if line.startswith("error: ")]) == 1
