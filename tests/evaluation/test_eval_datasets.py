"""Every dataset end to end: train a GAN, train its evaluator into a user folder, score, refine.

The Fashion-MNIST and KMNIST files are synthetic here (nothing is downloaded): a few hundred
class-structured 28x28 images written in torchvision's idx-ubyte layout under each dataset's name.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

from evaluation import resolve_classifier
from evaluation.classifier import EVALUATOR_DIR_ENV, MANIFEST_NAME, WEIGHTS_DIR, file_sha256
from evaluation.score import main as score_main
from evaluation.train_classifier import main as train_classifier_main
from gan_models import load_images
from gan_models.train import main as train_main

from synthetic_data import write_idx_dataset

REPO = Path(__file__).resolve().parents[2]
OTHER_DATASETS = ("fashion-mnist", "kmnist")


@pytest.fixture(scope="module")
def synthetic_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("synthetic-data")
    for i, name in enumerate(OTHER_DATASETS):
        write_idx_dataset(root, name, seed=i)
    return root


@pytest.fixture(scope="module")
def trained(synthetic_root, tmp_path_factory) -> dict[str, dict[str, Path]]:
    """Per dataset: a 3-step GAN checkpoint and an evaluator folder written by train_classifier."""
    out: dict[str, dict[str, Path]] = {}
    for name in OTHER_DATASETS:
        base = tmp_path_factory.mktemp(name)
        run, evaluators = base / "run", base / "evaluators"
        assert train_main(["--dataset", name, "--steps", "3", "--batch-size", "32", "--data-root", str(synthetic_root),
                           "--out", str(run), "--no-progress"]) == 0
        assert train_classifier_main(["--dataset", name, "--data-root", str(synthetic_root), "--evaluator-dir",
                                      str(evaluators), "--epochs", "3", "--batch-size", "50"]) == 0
        out[name] = {"checkpoint": run / "checkpoint.pt", "evaluators": evaluators}
    return out


def test_synthetic_files_load_through_torchvision(synthetic_root):
    for name in OTHER_DATASETS:
        train, test = load_images(name, split="train", data_root=synthetic_root), load_images(
            name, split="test", data_root=synthetic_root)
        assert train.images.shape == (600, 28, 28) and test.images.shape == (200, 28, 28)
        assert train.images.dtype == torch.uint8 and sorted(train.labels.unique().tolist()) == list(range(10))


@pytest.mark.parametrize("name", OTHER_DATASETS)
def test_train_classifier_writes_a_verified_evaluator_folder(name, trained):
    folder = trained[name]["evaluators"]
    manifest = json.loads((folder / MANIFEST_NAME).read_text())
    for role, seed in (("classifier", 0), ("classifier-alt", 1)):
        entry = manifest["models"][f"{name}/{role}"]
        assert entry["sha256"] == file_sha256(folder / entry["file"]) and entry["seed"] == seed
        assert entry["test_accuracy"] > 0.5  # class-structured data: far above chance (0.1)
        info = resolve_classifier(name, role, evaluator_dir=folder)
        assert info.path == folder / f"{name}-{role}.pt" and info.name == f"{name}-lenet-seed{seed}"
    assert not list(WEIGHTS_DIR.glob(f"{name}-*"))  # nothing written into the installed package


@pytest.mark.parametrize("name", OTHER_DATASETS)
def test_score_finds_the_evaluator_in_the_user_folder(name, trained, synthetic_root, tmp_path, capsys):
    t = trained[name]
    argv = [str(t["checkpoint"]), "--n", "100", "--n-real", "200", "--data-root", str(synthetic_root),
            "--cache-dir", str(tmp_path / "cache"), "--evaluator-dir", str(t["evaluators"]),
            "--features", "classifier,pixel", "--json"]
    assert score_main(argv) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["dataset"] == name and result["step"] == 3 and result["n_real"] == 200
    assert result["evaluator"] == f"{name}-lenet-seed0"
    assert result["evaluator_sha256"] == file_sha256(t["evaluators"] / f"{name}-classifier.pt")
    for key in ("fid", "precision", "recall", "pixel/fid", "class_coverage"):
        assert result[key] is not None and result[key] >= 0, key


def test_score_reads_the_evaluator_folder_from_the_environment(trained, synthetic_root, tmp_path):
    t = trained["kmnist"]
    env = {**os.environ, EVALUATOR_DIR_ENV: str(t["evaluators"])}
    proc = subprocess.run([sys.executable, "-m", "evaluation.score", str(t["checkpoint"]), "--n", "50", "--n-real",
                           "100", "--metrics", "fid", "--data-root", str(synthetic_root), "--cache-dir",
                           str(tmp_path / "cache"), "--json"], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["evaluator"] == "kmnist-lenet-seed0" and result["fid"] > 0


def test_pixel_scores_need_no_classifier(trained, synthetic_root, tmp_path, capsys):
    t = trained["fashion-mnist"]
    empty = tmp_path / "no-evaluators"
    assert score_main([str(t["checkpoint"]), "--n", "100", "--n-real", "200", "--features", "pixel",
                       "--data-root", str(synthetic_root), "--cache-dir", str(tmp_path / "cache"),
                       "--evaluator-dir", str(empty), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["evaluator"] == "none" and result["evaluator_sha256"] == "none"
    assert result["fid"] > 0 and "class_coverage" not in result  # class metrics need the classifier
    assert not empty.exists()


def test_score_without_an_evaluator_names_the_command(trained, synthetic_root, tmp_path):
    t = trained["fashion-mnist"]
    empty = tmp_path / "no-evaluators"
    with pytest.raises(SystemExit) as err:
        score_main([str(t["checkpoint"]), "--n", "50", "--n-real", "100", "--data-root", str(synthetic_root),
                    "--cache-dir", str(tmp_path / "cache"), "--evaluator-dir", str(empty)])
    message = str(err.value.code)
    assert message.startswith("error: classifier weights for fashion-mnist not found") and "\n" not in message
    assert f"python -m evaluation.train_classifier --dataset fashion-mnist --evaluator-dir {empty}" in message


def test_tampered_user_evaluator_is_refused(trained, tmp_path):
    src = trained["kmnist"]["evaluators"]
    folder = tmp_path / "evaluators"
    folder.mkdir()
    for f in src.iterdir():
        (folder / f.name).write_bytes(f.read_bytes())
    weights = folder / "kmnist-classifier.pt"
    data = bytearray(weights.read_bytes())
    data[-100] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="does not match its recorded sha256.*--dataset kmnist --evaluator-dir"):
        resolve_classifier("kmnist", evaluator_dir=folder)
    assert resolve_classifier("kmnist", "classifier-alt", evaluator_dir=folder).path.parent == folder


def test_shipped_mnist_weights_stay_first(tmp_path, capsys):
    folder = tmp_path / "evaluators"
    assert resolve_classifier("mnist", evaluator_dir=folder).path.parent == WEIGHTS_DIR
    # training mnist into a user folder would write a copy never found: it is skipped, not trained
    assert train_classifier_main(["--dataset", "mnist", "--evaluator-dir", str(folder)]) == 0
    assert "shipped in" in capsys.readouterr().out and not folder.exists()


def test_refine_embedded_dot_on_another_dataset(trained, synthetic_root, tmp_path):
    from refinement.run import main as refine_main

    t = trained["kmnist"]
    out = tmp_path / "refined"
    assert refine_main([str(t["checkpoint"]), "--method", "embedded-latent", "--steps", "2", "--n", "60",
                        "--n-real", "100", "--score-steps", "0,2", "--batch-size", "30", "--data-root",
                        str(synthetic_root), "--cache-dir", str(tmp_path / "cache"), "--evaluator-dir",
                        str(t["evaluators"]), "--out", str(out)]) == 0
    table = pd.read_parquet(out / "frontier.parquet")
    assert list(table["step"]) == [0, 2] and bool((table["fid"] > 0).all())
    assert set(table["evaluator_sha256"]) == {file_sha256(t["evaluators"] / "kmnist-classifier.pt")}
