"""Contract tests over every feature-space registry entry, and vgg16's local-weights-only loading."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torch

from evaluation import FEATURE_SPACES, Evaluator, WeightsError, feature_extractor, resolve_classifier
from evaluation.features import VGG16_WEIGHTS_ENV, resolve_vgg16_weights
from gan_models import to_float


@pytest.fixture(scope="module")
def vgg16_weights(tmp_path_factory):
    """A torchvision-VGG16-shaped state dict (random, seeded) standing in for the ImageNet file."""
    from torchvision.models.vgg import cfgs, make_layers

    torch.manual_seed(0)
    trunk = make_layers(cfgs["D"], batch_norm=False)
    path = tmp_path_factory.mktemp("vgg") / "vgg16-local.pth"
    torch.save({f"features.{k}": v for k, v in trunk.state_dict().items()}, path)
    return path


@pytest.mark.parametrize("name", list(FEATURE_SPACES))
def test_every_extractor_maps_images_to_features_differentiably(name, vgg16_weights, mnist_test):
    weights = vgg16_weights if name == "vgg16" else None
    module = feature_extractor(name, weights=weights)
    x = to_float(mnist_test.images[:8]).requires_grad_(True)
    out = module(x)
    spec = FEATURE_SPACES[name]
    assert out.shape == (8, spec.dim) == (8, module.num_features)
    assert out.dtype == torch.float32 and torch.isfinite(out).all()
    assert not any(p.requires_grad for p in module.parameters())  # frozen: DOT moves the input only
    out.square().sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    if spec.backbone == "pixel":  # no weights: the only space whose digest is "none"
        assert module.weights_sha256 == "none"
    else:  # the SHA-256 of the very file the network was loaded from
        path = vgg16_weights if name == "vgg16" else resolve_classifier("mnist", spec.backbone).path
        assert module.weights_sha256 == hashlib.sha256(Path(path).read_bytes()).hexdigest()


def test_classifier_alt_is_a_different_embedding_of_a_trained_classifier(mnist_test):
    """Both roles are trained digit classifiers (random weights would fail the accuracy), and embedded DOT's
    ``classifier-alt`` is not the scoring ``classifier``: other weights, other features, other mistakes."""
    from evaluation import load_classifier

    x, labels = to_float(mnist_test.images[:2000]), mnist_test.labels[:2000]
    predictions = {}
    for role in ("classifier", "classifier-alt"):
        net, info = load_classifier("mnist", role)
        with torch.no_grad():
            predictions[role] = net(x).argmax(1)
        assert (predictions[role] == labels).float().mean() > 0.98, role
        assert feature_extractor(role).weights_sha256 == info.sha256
    a, b = feature_extractor("classifier")(x[:16]), feature_extractor("classifier-alt")(x[:16])
    assert a.shape == b.shape and not torch.allclose(a, b)
    assert not torch.equal(predictions["classifier"], predictions["classifier-alt"])


def test_unknown_feature_space_lists_the_registry():
    with pytest.raises(ValueError, match="valid choices: classifier, logits, pixel, vgg16, classifier-alt"):
        feature_extractor("inception")


def test_vgg16_weights_absent_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.delenv(VGG16_WEIGHTS_ENV, raising=False)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    with pytest.raises(WeightsError, match="nothing is downloaded.*GAN_VGG16_WEIGHTS") as err:
        feature_extractor("vgg16")
    assert str(tmp_path / "hub" / "checkpoints" / "vgg16-397923af.pth") in str(err.value)
    monkeypatch.setenv(VGG16_WEIGHTS_ENV, str(tmp_path / "missing.pth"))
    with pytest.raises(WeightsError, match="missing.pth"):
        resolve_vgg16_weights()


def test_vgg16_weights_found_by_env_and_hub_cache(vgg16_weights, tmp_path, monkeypatch):
    monkeypatch.setenv(VGG16_WEIGHTS_ENV, str(vgg16_weights))
    assert resolve_vgg16_weights() == vgg16_weights
    monkeypatch.delenv(VGG16_WEIGHTS_ENV)
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "vgg16-397923af.pth").write_bytes(vgg16_weights.read_bytes())
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    assert resolve_vgg16_weights() == tmp_path / "checkpoints" / "vgg16-397923af.pth"


def test_vgg16_wrong_file_is_a_clear_error(tmp_path):
    bad = tmp_path / "not-vgg.pth"
    torch.save({"features.0.weight": torch.zeros(3)}, bad)
    with pytest.raises(WeightsError, match="cannot be loaded as torchvision's VGG16"):
        feature_extractor("vgg16", weights=bad)


def test_evaluator_scores_in_vgg16_space(vgg16_weights, data_root, tmp_path, mnist_train):
    ev = Evaluator(features=("classifier", "vgg16"), n_real=60, data_root=data_root, cache_dir=tmp_path,
                   vgg16_weights=vgg16_weights, batch_size=30)
    r = ev.score(to_float(mnist_train.images[:30]))
    assert {"vgg16/fid", "vgg16/precision", "vgg16/recall", "vgg16/density", "vgg16/coverage"} <= set(r)
    assert r["vgg16/fid"] > 0 and 0 <= r["vgg16/precision"] <= 1
    # the cache entry is keyed by the vgg16 file's hash
    assert any(p.name.startswith("mnist-test-n60-vgg16-") for p in tmp_path.iterdir())
