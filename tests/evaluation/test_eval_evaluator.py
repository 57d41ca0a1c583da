"""The Evaluator on real MNIST with the shipped weights: sanity cases, keys, caching, bad input."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

import evaluation
from evaluation import Evaluator, WeightsError, load_classifier, resolve_classifier
from evaluation.cache import cache_path, load_entry
from evaluation.classifier import MANIFEST_NAME, WEIGHTS_DIR
from gan_models import to_float

PRDC = ("precision", "recall", "density", "coverage")
N_REAL = 2000  # the evaluator_2k fixture's real set


# ------------------------------------------------------------------------ shipped weights
@pytest.mark.parametrize("role", ["classifier", "classifier-alt"])
def test_shipped_weights_reach_99_percent_and_match_manifest(role, mnist_test):
    net, info = load_classifier("mnist", role)
    manifest = json.loads((WEIGHTS_DIR / MANIFEST_NAME).read_text())["models"][f"mnist/{role}"]
    assert info.sha256 == manifest["sha256"] and info.name == manifest["name"]
    assert info.path.stat().st_size < 5e6
    with torch.no_grad():
        pred = torch.cat([net(to_float(mnist_test.images[i : i + 2000])).argmax(1) for i in range(0, 10000, 2000)])
    acc = (pred == mnist_test.labels).double().mean().item()
    assert acc >= 0.99
    assert acc == pytest.approx(manifest["test_accuracy"], abs=1e-4)  # the manifest tells the truth


def test_the_two_shipped_classifiers_differ():
    a, info_a = load_classifier("mnist", "classifier")
    b, info_b = load_classifier("mnist", "classifier-alt")
    assert info_a.sha256 != info_b.sha256
    assert not torch.equal(a.head.weight, b.head.weight)


# --------------------------------------------------------------------------- sanity cases
def test_real_test_split_vs_real_train_split_is_near_perfect(evaluator_2k, mnist_train):
    r = evaluator_2k.score(to_float(mnist_train.images[:N_REAL]))
    for prefix in ("", "pixel/"):
        assert r[prefix + "precision"] > 0.8 and r[prefix + "recall"] > 0.8
        assert 0.85 < r[prefix + "density"] < 1.15
        assert r[prefix + "coverage"] > 0.9
    assert r["fid"] < 10 and r["pixel/fid"] < 15  # vs > 1000 and ~100 for one digit (next test)
    assert r["class_coverage"] == 10 and r["class_kl"] < 0.01


def test_mode_collapsed_set_has_high_precision_low_recall_one_class(evaluator_2k, mnist_train):
    threes = mnist_train.images[mnist_train.labels == 3][:1000]
    r = evaluator_2k.score(to_float(threes))
    assert r["precision"] > 0.8 and r["recall"] < 0.25
    assert r["coverage"] < 0.2
    assert r["class_coverage"] == 1
    assert r["class_kl"] > 1.5  # log(10) = 2.30 for a perfect one-of-ten collapse
    assert r["fid"] > 500
    assert r["n_fake"] == 1000 and r["n_real"] == N_REAL


def test_keys_prefix_every_space_after_the_first(evaluator_2k, mnist_train):
    r = evaluator_2k.score(to_float(mnist_train.images[:300]))
    expected = {"fid", *PRDC, "class_coverage", "class_kl", "evaluator", "evaluator_sha256", "n_fake", "n_real"}
    expected |= {f"pixel/{k}" for k in ("fid", *PRDC)}
    assert set(r) == expected
    assert r["evaluator"] == "mnist-lenet-seed0"
    assert r["evaluator_sha256"] == resolve_classifier("mnist").sha256
    assert isinstance(r["class_coverage"], int) and isinstance(r["fid"], float)


def test_fid_only_evaluator_computes_only_fid(data_root, cache_dir, mnist_train):
    ev = Evaluator(metrics=("fid",), n_real=N_REAL, data_root=data_root, cache_dir=cache_dir)
    r = ev.score(to_float(mnist_train.images[:500]))
    assert set(r) == {"fid", "evaluator", "evaluator_sha256", "n_fake", "n_real"}


def test_one_extraction_matches_the_differentiable_extractor(evaluator_2k, mnist_train):
    x = to_float(mnist_train.images[:64])
    feats, logits = evaluator_2k.extract(x)
    module = evaluation.feature_extractor("classifier")
    torch.testing.assert_close(feats["classifier"], module(x))
    torch.testing.assert_close(feats["pixel"], x.reshape(64, -1))
    torch.testing.assert_close(logits, evaluation.feature_extractor("logits")(x))


def test_score_convenience_equals_evaluator(evaluator_2k, data_root, cache_dir, mnist_train):
    x = to_float(mnist_train.images[5000:5400])
    direct = evaluation.score(x, features=("classifier", "pixel"), n_real=N_REAL, data_root=data_root,
                              cache_dir=cache_dir)
    assert direct == evaluator_2k.score(x)


# ------------------------------------------------------------------------------- caching
def test_real_stats_come_from_disk_without_the_data(evaluator_2k, cache_dir, tmp_path, mnist_train):
    evaluator_2k.prepare()
    key = evaluator_2k._key("classifier", evaluator_2k.info.sha256)
    entry = load_entry(cache_path(cache_dir, key), key)
    assert entry is not None and entry["features"].shape == (N_REAL, 128)
    assert entry["radii"].shape == (N_REAL, 2)
    # a fresh evaluator with an empty data root still works: nothing but the cache is read
    fresh = Evaluator(features=("classifier", "pixel"), n_real=N_REAL, data_root=tmp_path / "no-data",
                      cache_dir=cache_dir)
    x = to_float(mnist_train.images[:200])
    assert fresh.score(x) == evaluator_2k.score(x)


def test_cache_key_separates_n_real_and_rejects_foreign_files(data_root, tmp_path, mnist_train):
    a = Evaluator(metrics=("fid",), n_real=300, data_root=data_root, cache_dir=tmp_path)
    b = Evaluator(metrics=("fid",), n_real=400, data_root=data_root, cache_dir=tmp_path)
    x = to_float(mnist_train.images[:200])
    fa, fb = a.score(x)["fid"], b.score(x)["fid"]
    assert fa != fb
    pa = cache_path(tmp_path, a._key("classifier", a.info.sha256))
    pb = cache_path(tmp_path, b._key("classifier", b.info.sha256))
    assert pa.is_file() and pb.is_file() and pa != pb
    shutil.copy(pb, pa)  # a file under the wrong name is not trusted: recomputed, same number as before
    assert Evaluator(metrics=("fid",), n_real=300, data_root=data_root, cache_dir=tmp_path).score(x)["fid"] == fa


# ------------------------------------------------------------------------------ bad input
@pytest.mark.parametrize(
    "samples, message",
    [
        (torch.zeros(10, 28, 28), r"shape \[N, 1, 28, 28\]"),
        (torch.zeros(10, 3, 32, 32), r"shape \[N, 1, 28, 28\]"),
        (torch.full((10, 1, 28, 28), 255.0), r"\[-1, 1\]"),
        (torch.zeros(10, 1, 28, 28, dtype=torch.uint8), "gan_models.to_float"),
        (torch.zeros(0, 1, 28, 28), "empty"),
        ([[0.0]], "torch.Tensor"),
    ],
)
def test_bad_samples_raise_one_line_value_errors(evaluator_2k, samples, message):
    with pytest.raises(ValueError, match=message) as err:
        evaluator_2k.score(samples)
    assert "\n" not in str(err.value)


def test_nan_samples_are_refused(evaluator_2k):
    x = torch.zeros(20, 1, 28, 28)
    x[3, 0, 5, 5] = float("nan")
    x[4, 0, 0, 0] = float("inf")
    with pytest.raises(ValueError, match="2 NaN/inf values"):
        evaluator_2k.score(x)


def test_too_few_samples_for_prdc(evaluator_2k):
    with pytest.raises(ValueError, match="more than 5 samples"):
        evaluator_2k.score(torch.zeros(5, 1, 28, 28))


def test_unknown_feature_space_lists_valid_ones(data_root):
    with pytest.raises(ValueError, match="unknown feature space 'inception'; valid choices: classifier, logits, pixel"):
        Evaluator(features=("inception",), data_root=data_root)


def test_refinement_embedding_never_scores(data_root):
    with pytest.raises(ValueError, match="refinement only"):
        Evaluator(features=("classifier-alt",), data_root=data_root)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"metrics": ("fid", "is")}, "unknown metric group.*valid choices: fid, prdc, class"),
        ({"dataset": "cifar10"}, "unknown dataset 'cifar10'; valid choices"),
        ({"split": "val"}, "unknown split 'val'"),
        ({"n_real": 0}, "n_real must be a positive integer"),
        ({"features": ("pixel", "pixel")}, "repeated"),
        ({"device": "cuda:7"} if not torch.cuda.is_available() else {"device": "nope"}, "device"),
    ],
)
def test_bad_evaluator_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Evaluator(**kwargs)


def test_n_real_larger_than_the_split(data_root, tmp_path):
    ev = Evaluator(metrics=("fid",), n_real=10001, data_root=data_root, cache_dir=tmp_path)
    with pytest.raises(ValueError, match="n_real=10001 exceeds the 10000 images of mnist/test"):
        ev.score(torch.zeros(10, 1, 28, 28))


def test_missing_weights_file_names_path_and_remedy(tmp_path):
    with pytest.raises(WeightsError, match="python -m evaluation.train_classifier --dataset mnist") as err:
        resolve_classifier("mnist", weights_dir=tmp_path)
    assert str(tmp_path / "mnist-classifier.pt") in str(err.value)
    assert isinstance(err.value, ValueError) and isinstance(err.value, FileNotFoundError)
    # a dataset whose evaluator was never trained (no data here) fails the same way at the Evaluator
    with pytest.raises(WeightsError, match="classifier weights for kmnist not found"):
        Evaluator(dataset="kmnist")


def test_tampered_weights_file_is_refused(tmp_path):
    for name in ("mnist-classifier.pt", MANIFEST_NAME):
        shutil.copy(WEIGHTS_DIR / name, tmp_path / name)
    assert resolve_classifier("mnist", weights_dir=tmp_path).sha256 == resolve_classifier("mnist").sha256
    data = bytearray((tmp_path / "mnist-classifier.pt").read_bytes())
    data[-100] ^= 0xFF
    (tmp_path / "mnist-classifier.pt").write_bytes(bytes(data))
    with pytest.raises(WeightsError, match="does not match its recorded sha256"):
        load_classifier("mnist", weights_dir=tmp_path)
