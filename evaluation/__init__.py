"""Sample-quality evaluation in fixed, hashed feature spaces: FID, improved precision/recall,
density/coverage and class coverage, with the real set's statistics cached on disk.

The names below are imported from their submodules on first use (PEP 562), so importing the package
does not import torch (the CLIs' ``--help``). ``evaluation.score`` is the scoring function until the
``evaluation.score`` CLI module is imported; that module is callable as the same function.
"""

from __future__ import annotations

from gan_models.lazy import lazy_exports

# public name -> the submodule that defines it
_EXPORTS: dict[str, str] = {
    **dict.fromkeys(("CACHE_ENV", "resolve_cache_dir"), "cache"),
    **dict.fromkeys(("EVALUATOR_DIR_ENV", "ROLES", "ClassifierInfo", "LeNet", "WeightsError", "load_classifier",
                     "resolve_classifier", "resolve_evaluator_dir"), "classifier"),
    **dict.fromkeys(("METRIC_GROUPS", "SCORE_KEYS", "SCORING_SPACES", "Evaluator", "check_samples", "score"),
                    "evaluator"),
    **dict.fromkeys(("FEATURE_SPACES", "VGG16_WEIGHTS_ENV", "FeatureSpace", "feature_extractor"), "features"),
    **dict.fromkeys(("CLASS_PRESENT_RATIO", "K_DENSITY_COVERAGE", "K_PRECISION_RECALL", "class_histogram",
                     "class_metrics", "frechet_distance", "gaussian_stats", "knn_radii", "prdc", "sqrtm_psd"),
                    "metrics"),
}

__all__ = [
    "EVALUATOR_DIR_ENV", "resolve_evaluator_dir",
    "CACHE_ENV", "CLASS_PRESENT_RATIO", "ClassifierInfo", "Evaluator", "FEATURE_SPACES", "FeatureSpace",
    "K_DENSITY_COVERAGE", "K_PRECISION_RECALL", "LeNet", "METRIC_GROUPS", "ROLES", "SCORE_KEYS", "SCORING_SPACES",
    "VGG16_WEIGHTS_ENV", "WeightsError", "check_samples", "class_histogram", "class_metrics",
    "feature_extractor", "frechet_distance", "gaussian_stats", "knn_radii", "load_classifier", "prdc",
    "resolve_cache_dir", "resolve_classifier", "score", "sqrtm_psd",
]


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, __all__)
