"""Sample-quality evaluation in fixed, hashed feature spaces: FID, improved precision/recall,
density/coverage and class coverage, with the real set's statistics cached on disk."""

from .cache import CACHE_ENV, resolve_cache_dir
from .classifier import (
    EVALUATOR_DIR_ENV,
    ROLES,
    ClassifierInfo,
    LeNet,
    WeightsError,
    load_classifier,
    resolve_classifier,
    resolve_evaluator_dir,
)
from .evaluator import METRIC_GROUPS, SCORING_SPACES, Evaluator, check_samples, score
from .features import FEATURE_SPACES, VGG16_WEIGHTS_ENV, FeatureSpace, feature_extractor
from .metrics import (
    CLASS_PRESENT_RATIO,
    K_DENSITY_COVERAGE,
    K_PRECISION_RECALL,
    class_histogram,
    class_metrics,
    frechet_distance,
    gaussian_stats,
    knn_radii,
    prdc,
    sqrtm_psd,
)

__all__ = [
    "EVALUATOR_DIR_ENV", "resolve_evaluator_dir",
    "CACHE_ENV", "CLASS_PRESENT_RATIO", "ClassifierInfo", "Evaluator", "FEATURE_SPACES", "FeatureSpace",
    "K_DENSITY_COVERAGE", "K_PRECISION_RECALL", "LeNet", "METRIC_GROUPS", "ROLES", "SCORING_SPACES",
    "VGG16_WEIGHTS_ENV", "WeightsError", "check_samples", "class_histogram", "class_metrics",
    "feature_extractor", "frechet_distance", "gaussian_stats", "knn_radii", "load_classifier", "prdc",
    "resolve_cache_dir", "resolve_classifier", "score", "sqrtm_psd",
]
