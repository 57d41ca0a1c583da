"""save_result and refine() scored through the real evaluation package."""

import json

import pandas as pd
import pytest
import torch

from refinement import RefineConfig, refine, save_result


@pytest.fixture(scope="module")
def evaluator(data_root, tmp_path_factory):
    from evaluation import Evaluator

    return Evaluator(features=("classifier",), n_real=300, data_root=data_root,
                     cache_dir=tmp_path_factory.mktemp("refine-eval-cache"))


def test_scored_with_the_real_evaluator_and_saved(small_gan, evaluator, tmp_path):
    g, d = small_gan
    cfg = RefineConfig(method="latent", steps=3, lr=0.05)
    result = refine(g, d, cfg, latent_dim=8, latent_prior="normal", n=40, seed=1, evaluator=evaluator,
                    score_steps=(0, 1, 3), batch_size=16)
    t = result.trajectory
    assert list(t["step"]) == [0, 1, 3]
    for col in ("fid", "precision", "recall", "density", "coverage", "class_coverage", "class_kl", "k_eff",
                "evaluator_sha256"):
        assert col in t.columns
    assert bool((t["fid"] > 0).all()) and bool(t["precision"].between(0, 1).all())
    assert result.best_step == int(t.loc[t["fid"].idxmin(), "step"])
    # step 0 scores exactly the unrefined samples
    z = torch.randn(40, 8, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert t["fid"].iloc[0] == pytest.approx(evaluator.score(g(z))["fid"], rel=1e-9)

    paths = save_result(result, tmp_path / "out")
    assert {p.name for p in paths.values()} == {"samples.pt", "samples.png", "frontier.parquet", "frontier.png",
                                                 "precision_recall.png", "strip.png", "result.json"}
    saved = torch.load(paths["samples"], weights_only=True)
    assert torch.equal(saved["images"], result.samples) and saved["k_eff"] == result.k_eff
    assert saved["config"] == cfg.to_dict()
    back = pd.read_parquet(paths["frontier"])
    pd.testing.assert_frame_equal(back, t)
    summary = json.loads(paths["summary"].read_text())
    assert summary["best_step"] == result.best_step and summary["scored_steps"] == [0, 1, 3]
    for key in ("frontier_png", "precision_recall_png", "strip_png", "samples_png"):
        assert paths[key].stat().st_size > 1000


def test_embedded_methods_use_the_alt_classifier(small_gan):
    from evaluation import feature_extractor

    g, d = small_gan
    cfg = RefineConfig(method="embedded-latent", steps=2, k_eff="estimate", k_eff_pairs=10)
    auto = refine(g, d, cfg, latent_dim=8, latent_prior="normal", n=6)  # loads classifier-alt itself
    given = refine(g, d, cfg, latent_dim=8, latent_prior="normal", n=6, embedder=feature_extractor("classifier-alt"))
    other = refine(g, d, cfg, latent_dim=8, latent_prior="normal", n=6, embedder=feature_extractor("classifier"))
    assert auto.k_eff == given.k_eff and torch.equal(auto.samples, given.samples)
    assert auto.k_eff != other.k_eff


def test_unscored_result_saves_without_the_precision_recall_plot(small_gan, tmp_path):
    g, d = small_gan
    result = refine(g, d, RefineConfig(method="ddls", steps=2), latent_dim=8, latent_prior="normal", n=5)
    paths = save_result(result, tmp_path)
    assert "precision_recall_png" not in paths and paths["frontier_png"].is_file()
    assert json.loads(paths["summary"].read_text())["k_eff"] is None  # DDLS has no K_eff
