"""python -m refinement.run end to end on a checkpoint trained here, and its bad-input handling."""

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

from gan_models import TrainConfig, save_checkpoint, train_gan
from refinement import METHODS
from refinement.run import main

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def checkpoint(mnist_train, tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "checkpoint.pt"
    config = TrainConfig(steps=5, batch_size=32, seed=0)
    train_gan(config, images_u8=mnist_train.images[:2000], checkpoint_path=path, progress=False)
    return path


def _fails(argv, capsys=None) -> str:
    with pytest.raises(SystemExit) as exc:
        main([str(a) for a in argv])
    message = str(exc.value.code)
    assert exc.value.code != 0 and message.startswith("error: ") and "\n" not in message
    return message


def test_cli_end_to_end(checkpoint, tmp_path, data_root):
    out = tmp_path / "refined"
    env = {**os.environ, "GAN_DATA_ROOT": str(data_root), "GAN_EVAL_CACHE": str(tmp_path / "cache")}
    cmd = [sys.executable, "-m", "refinement.run", str(checkpoint), "--method", "latent", "--steps", "3",
           "--lr", "0.01", "--k-eff", "estimate", "--n", "60", "--n-real", "300", "--score-steps", "0,1,2",
           "--batch-size", "32", "--out", str(out)]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    for name in ("samples.pt", "samples.png", "frontier.parquet", "frontier.png", "precision_recall.png", "strip.png",
                 "result.json"):
        assert (out / name).is_file(), name
    table = pd.read_parquet(out / "frontier.parquet")
    assert list(table["step"]) == [0, 1, 2, 3]
    assert bool((table["fid"] > 0).all())
    images = torch.load(out / "samples.pt", weights_only=True)["images"]
    assert images.shape == (60, 1, 28, 28)
    assert not list(tmp_path.glob(".refined.tmp-*"))  # the temp folder was moved, not left behind

    # --overwrite replaces it with a complete new result; without it, the folder is refused and untouched
    before = (out / "frontier.parquet").read_bytes()
    msg = _fails([checkpoint, "--method", "target", "--steps", "1", "--n", "20", "--no-score", "--out", out])
    assert "not empty" in msg and "--overwrite" in msg
    assert (out / "frontier.parquet").read_bytes() == before
    assert main([str(checkpoint), "--method", "ddls", "--steps", "2", "--n", "20", "--no-score", "--out", str(out),
                 "--overwrite"]) == 0
    assert list(pd.read_parquet(out / "frontier.parquet")["step"]) == [0, 1, 2]
    assert not (out / "precision_recall.png").exists()


def test_unknown_method_lists_the_valid_ones(checkpoint, tmp_path):
    msg = _fails([checkpoint, "--method", "latnet", "--out", tmp_path / "o"])
    assert "'latnet'" in msg and all(m in msg for m in METHODS)
    assert not (tmp_path / "o").exists()


def test_unknown_k_eff_lists_the_valid_ones(checkpoint, tmp_path):
    msg = _fails([checkpoint, "--k-eff", "max", "--out", tmp_path / "o"])
    assert "estimate, mean-of-max, one" in msg


@pytest.mark.parametrize("steps", ["0", "-3"])
def test_non_positive_steps(checkpoint, tmp_path, steps):
    msg = _fails([checkpoint, "--steps", steps, "--out", tmp_path / "o"])
    assert "steps" in msg


def test_checkpoint_without_generator(checkpoint, tmp_path):
    payload = torch.load(checkpoint, weights_only=True)
    payload["generator"] = None
    no_g = tmp_path / "no_generator.pt"
    save_checkpoint(no_g, {k: v for k, v in payload.items() if k != "format"})
    msg = _fails([no_g, "--method", "latent", "--steps", "2", "--no-score", "--out", tmp_path / "o"])
    assert "has no generator" in msg and "'latent'" in msg
    assert not (tmp_path / "o").exists()


def test_missing_checkpoint_bad_device_and_bad_score_steps(tmp_path, checkpoint):
    assert "not found" in _fails([tmp_path / "nope.pt", "--out", tmp_path / "o"])
    if not torch.cuda.is_available():
        assert "CUDA is not available" in _fails([checkpoint, "--device", "cuda", "--out", tmp_path / "o"])
    assert "--score-steps" in _fails([checkpoint, "--score-steps", "1,x", "--out", tmp_path / "o"])
    assert "--n must be a positive" in _fails([checkpoint, "--n", "0", "--out", tmp_path / "o"])


def test_bad_input_in_a_real_process_is_one_line(checkpoint, tmp_path):
    proc = subprocess.run([sys.executable, "-m", "refinement.run", str(checkpoint), "--method", "latnet", "--out",
                           str(tmp_path / "o")], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert proc.stderr.strip().count("\n") == 0 and proc.stderr.startswith("error: unknown method 'latnet'")


def test_unclipped_target_with_scoring_is_refused_before_any_work(checkpoint, tmp_path):
    msg = _fails([checkpoint, "--method", "target", "--no-clip-images", "--steps", "2", "--out", tmp_path / "o"])
    assert "clip_images=False" in msg
