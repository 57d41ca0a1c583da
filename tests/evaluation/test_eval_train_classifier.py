"""The classifier trainer: determinism from the seed, the manifest round trip, missing data."""

from __future__ import annotations

import pytest
import torch

from evaluation import load_classifier, resolve_classifier
from evaluation.classifier import EVALUATOR_DIR_ENV, MANIFEST_NAME
from evaluation.train_classifier import (
    ClassifierTrainConfig,
    accuracy,
    main,
    random_shift,
    save_weights,
    train_classifier,
)

from test_eval_datasets import write_idx_dataset


def _train(images, labels, seed):
    return train_classifier(images, labels, ClassifierTrainConfig(seed=seed, epochs=1, batch_size=64))


def test_training_is_deterministic_from_the_seed(mnist_train):
    x, y = mnist_train.images[:320], mnist_train.labels[:320]
    a, b, c = _train(x, y, 0), _train(x, y, 0), _train(x, y, 1)
    for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(va, vb), k
    assert not torch.equal(a.head.weight, c.head.weight)


def test_saved_weights_are_byte_identical_and_verified(mnist_train, mnist_test, tmp_path):
    x, y = mnist_train.images[:640], mnist_train.labels[:640]
    net = _train(x, y, 0)
    acc = accuracy(net, mnist_test.images[:1000], mnist_test.labels[:1000])
    assert acc > 0.2  # ten 64-image steps already beat chance (0.1)
    cfg = ClassifierTrainConfig(seed=0, epochs=1, batch_size=64)
    p1 = save_weights(net, dataset="mnist", role="classifier", config=cfg, test_accuracy=acc, threads=1,
                      weights_dir=tmp_path / "a")
    p2 = save_weights(_train(x, y, 0), dataset="mnist", role="classifier", config=cfg, test_accuracy=acc,
                      threads=1, weights_dir=tmp_path / "b")
    assert p1.read_bytes() == p2.read_bytes()  # same seed -> same file -> same sha256
    info = resolve_classifier("mnist", weights_dir=tmp_path / "a")
    loaded, _ = load_classifier("mnist", weights_dir=tmp_path / "a")
    assert info.name == "mnist-lenet-seed0"
    assert accuracy(loaded, mnist_test.images[:1000], mnist_test.labels[:1000]) == acc


def test_random_shift_moves_content_and_keeps_background():
    x = torch.full((4, 1, 28, 28), -1.0)
    x[:, 0, 14, 14] = 1.0
    out = random_shift(x, 2, torch.Generator().manual_seed(0))
    assert out.shape == x.shape
    assert (out == 1.0).sum() == 4 and (out == -1.0).sum() == 4 * 783  # each bright pixel moved, not lost
    rows, cols = (out[:, 0] == 1.0).nonzero()[:, 1], (out[:, 0] == 1.0).nonzero()[:, 2]
    assert ((rows - 14).abs() <= 2).all() and ((cols - 14).abs() <= 2).all()


def test_batch_larger_than_the_training_set_is_refused(mnist_train):
    with pytest.raises(ValueError, match="batch_size 128 exceeds the 100 training images; valid: 1 to 100"):
        train_classifier(mnist_train.images[:100], mnist_train.labels[:100], ClassifierTrainConfig())


def test_cli_with_absent_dataset_exits_with_one_line(tmp_path):
    with pytest.raises(SystemExit, match="error: kmnist data not found"):
        main(["--dataset", "kmnist", "--data-root", str(tmp_path), "--evaluator-dir", str(tmp_path / "w")])
    assert not (tmp_path / "w").exists()


def test_cli_keeps_existing_weights_without_force(tmp_path, capsys):
    root = write_idx_dataset(tmp_path / "data", "kmnist", n_train=100, n_test=50)
    folder = tmp_path / "w"
    folder.mkdir()
    (folder / "kmnist-classifier.pt").write_bytes(b"keep me")
    main(["--dataset", "kmnist", "--roles", "classifier", "--data-root", str(root), "--evaluator-dir", str(folder)])
    assert (folder / "kmnist-classifier.pt").read_bytes() == b"keep me"
    assert "use --force" in capsys.readouterr().out
    main(["--dataset", "kmnist", "--roles", "classifier", "--data-root", str(root), "--evaluator-dir", str(folder),
          "--epochs", "1", "--batch-size", "50", "--force"])
    assert resolve_classifier("kmnist", evaluator_dir=folder).path == folder / "kmnist-classifier.pt"


def test_cli_writes_to_the_evaluator_dir_from_the_environment(tmp_path, monkeypatch):
    root = write_idx_dataset(tmp_path / "data", "fashion-mnist", n_train=100, n_test=50)
    monkeypatch.setenv(EVALUATOR_DIR_ENV, str(tmp_path / "env-evaluators"))
    assert main(["--dataset", "fashion-mnist", "--data-root", str(root), "--epochs", "1", "--batch-size", "50"]) == 0
    assert sorted(p.name for p in (tmp_path / "env-evaluators").iterdir()) == [
        "fashion-mnist-classifier-alt.pt", "fashion-mnist-classifier.pt", MANIFEST_NAME]
    assert resolve_classifier("fashion-mnist", "classifier-alt").path.parent == tmp_path / "env-evaluators"
