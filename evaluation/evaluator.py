"""The Evaluator: real statistics computed once (and cached on disk), then one feature extraction
per generated set feeding every requested metric in every requested feature space.

Result keys (a flat dict): for the first feature space ``fid``, ``precision``, ``recall``,
``density``, ``coverage``; for every other space the same under ``<space>/<metric>``;
``class_coverage`` and ``class_kl`` from the evaluator's predictions; and the metadata
``evaluator``, ``evaluator_sha256``, ``n_fake``, ``n_real``. Only requested groups are computed.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from gan_models import load_images, to_float
from gan_models.data import SPLITS, check_dataset_name
from gan_models.registry import check_choice, check_choices
from gan_models.trainer import check_device  # one device check for every package

from .cache import cache_key, cache_path, load_entry, resolve_cache_dir, save_entry
from .classifier import NUM_CLASSES, ClassifierInfo, LeNet, load_classifier
from .features import FEATURE_SPACES, PixelFeatures, VGG16Features, check_feature_space, load_vgg16
from .metrics import (
    K_DENSITY_COVERAGE,
    K_PRECISION_RECALL,
    MAX_BLOCK_ELEMENTS,
    class_histogram,
    class_metrics,
    frechet_distance,
    gaussian_stats,
    knn_radii,
    prdc,
    sqrtm_psd,
)

METRIC_GROUPS = ("fid", "prdc", "class")
PRDC_KEYS = ("precision", "recall", "density", "coverage")
# every score of a full evaluation in its first feature space, in the order tables show them
SCORE_KEYS = ("fid", *PRDC_KEYS, "class_coverage", "class_kl")
RANGE_TOLERANCE = 1e-3  # tanh outputs and float round-off stay inside; [0, 255] images do not
REAL_SUBSET = "randperm-seed0"  # n_real < split size: the first n_real of a seed-0 permutation
SCORING_SPACES = tuple(name for name, s in FEATURE_SPACES.items() if s.scoring)


@dataclass
class RealStats:
    """One feature space's real-set statistics: everything the generated side is compared with."""

    features: Tensor  # [N, F] float32, on the evaluator's device
    mu: Tensor  # [F] float64
    sigma: Tensor  # [F, F] float64
    sqrt_sigma: Tensor  # [F, F] float64, symmetric root of sigma (FID's stable form)
    radii: Tensor  # [N, 2] squared distances to the K_PRECISION_RECALL-th and K_DENSITY_COVERAGE-th real neighbour


def check_samples(samples: object) -> Tensor:
    """Validate generated images: float tensor [N, 1, 28, 28], finite, in [-1, 1]."""
    if not isinstance(samples, Tensor):
        raise ValueError(f"samples must be a torch.Tensor [N, 1, 28, 28] in [-1, 1], got {type(samples).__name__}")
    if not samples.is_floating_point():
        raise ValueError(f"samples must be float images in [-1, 1], got dtype {samples.dtype} "
                         f"(convert uint8 images with gan_models.to_float)")
    if samples.dim() != 4 or tuple(samples.shape[1:]) != (1, 28, 28):
        raise ValueError(f"samples must have shape [N, 1, 28, 28], got {list(samples.shape)}")
    if samples.shape[0] == 0:
        raise ValueError("samples is empty")
    samples = samples.detach()
    bad = int((~torch.isfinite(samples)).sum())
    if bad:
        raise ValueError(f"samples contain {bad} NaN/inf values")
    lo, hi = float(samples.min()), float(samples.max())
    if lo < -1 - RANGE_TOLERANCE or hi > 1 + RANGE_TOLERANCE:
        raise ValueError(f"samples must lie in [-1, 1], got values in [{lo:.4g}, {hi:.4g}]")
    return samples


def _space_names(features: str | Iterable[str]) -> tuple[str, ...]:
    names = tuple(n.strip() for n in features.split(",")) if isinstance(features, str) else tuple(features)
    if not names:
        raise ValueError(f"no feature space given; valid choices: {', '.join(SCORING_SPACES)}")
    for n in names:
        space = check_feature_space(n)
        if not space.scoring:
            raise ValueError(f"feature space {n!r} is an embedding for refinement only and never scores; "
                             f"valid choices: {', '.join(SCORING_SPACES)}")
    if len(set(names)) != len(names):
        raise ValueError(f"feature spaces repeated: {', '.join(names)}")
    return names


def _metric_names(metrics: str | Iterable[str]) -> tuple[str, ...]:
    names = tuple(m.strip() for m in metrics.split(",")) if isinstance(metrics, str) else tuple(metrics)
    check_choices("metric group", names, METRIC_GROUPS)
    return tuple(m for m in METRIC_GROUPS if m in names)


def _positive_int(name: str, v: object) -> int:
    if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
        raise ValueError(f"{name} must be a positive integer, got {v!r}")
    return v


class Evaluator:
    """Scores generated MNIST-family samples against a fixed real set in fixed feature spaces."""

    def __init__(
        self,
        *,
        dataset: str = "mnist",
        features: str | Iterable[str] = ("classifier",),
        n_real: int = 10000,
        split: str = "test",
        data_root: str | os.PathLike | None = None,
        cache_dir: str | os.PathLike | None = None,
        metrics: str | Iterable[str] = METRIC_GROUPS,
        device: str | torch.device = "cpu",
        batch_size: int = 1000,
        vgg16_weights: str | os.PathLike | None = None,
        max_block_elements: int = MAX_BLOCK_ELEMENTS,
        evaluator_dir: str | os.PathLike | None = None,
    ):
        check_dataset_name(dataset)
        check_choice("split", split, SPLITS)
        self.dataset = dataset
        self.split = split
        self.features = _space_names(features)
        self.metrics = _metric_names(metrics)
        self.n_real = _positive_int("n_real", n_real)
        if "prdc" in self.metrics and n_real <= K_DENSITY_COVERAGE:
            raise ValueError(f"n_real must exceed {K_DENSITY_COVERAGE} for density/coverage, got {n_real}")
        if n_real < 2:
            raise ValueError(f"n_real must be at least 2, got {n_real}")
        self.batch_size = _positive_int("batch_size", batch_size)
        self.max_block_elements = _positive_int("max_block_elements", max_block_elements)
        self.device = check_device(device)
        self.data_root = data_root
        self.cache_dir = resolve_cache_dir(cache_dir)
        self.spaces = self.features if {"fid", "prdc"} & set(self.metrics) else ()
        # The classifier only when a space or the class metrics use it (pixel scores need none); its
        # identity, or "none", goes with every score. Found as evaluation.classifier says (evaluator_dir).
        self.classifier: LeNet | None = None
        self.info: ClassifierInfo | None = None
        if "class" in self.metrics or any(FEATURE_SPACES[s].backbone == "classifier" for s in self.spaces):
            self.classifier, self.info = load_classifier(dataset, "classifier", evaluator_dir=evaluator_dir,
                                                         device=self.device)
        self.vgg16: VGG16Features | None = None
        self.weights_sha256: dict[str, str] = {}
        if self.info is not None:  # loaded when a space uses it
            self.weights_sha256.update(
                {s: self.info.sha256 for s in self.spaces if FEATURE_SPACES[s].backbone == "classifier"})
        if "pixel" in self.spaces:
            self.weights_sha256["pixel"] = "none"
        if "vgg16" in self.spaces:
            self.vgg16, self.weights_sha256["vgg16"] = load_vgg16(vgg16_weights, device=self.device)
        self._real: dict[str, RealStats] = {}
        self._real_hist: np.ndarray | None = None  # predicted class shares of the real set, float64 [10]

    # -- extraction ------------------------------------------------------------------------
    @torch.no_grad()  # not inference_mode: cached real features must stay ordinary tensors
    def extract(self, images: Tensor, spaces: Iterable[str] | None = None, *, logits: bool | None = None
                ) -> tuple[dict[str, Tensor], Tensor | None]:
        """One pass over ``images`` (float [N, 1, 28, 28] in [-1, 1], or uint8 [N, 28, 28]) giving
        features [N, F] float32 on the device for each space, and the evaluator's logits [N, 10]
        when ``logits`` (default: when class metrics are requested)."""
        spaces = self.spaces if spaces is None else tuple(spaces)
        want_logits = ("class" in self.metrics) if logits is None else logits
        run_clf = want_logits or any(FEATURE_SPACES[s].backbone == "classifier" for s in spaces)
        n = images.shape[0]
        outs = {s: torch.empty(n, FEATURE_SPACES[s].dim, device=self.device) for s in spaces}
        all_logits = torch.empty(n, NUM_CLASSES, device=self.device) if want_logits else None
        pixel = PixelFeatures()
        for i in range(0, n, self.batch_size):
            x = images[i : i + self.batch_size].to(self.device)
            x = to_float(x) if x.dtype == torch.uint8 else x.to(torch.float32)
            # the classifier's outputs by name, when a space or the logits need them
            clf: dict[str, Tensor] = {}
            if run_clf:
                assert self.classifier is not None, "no classifier: neither class metrics nor a classifier space"
                clf["penultimate"], clf["logits"] = self.classifier.penultimate_and_logits(x)
            for s in spaces:
                out = FEATURE_SPACES[s].output
                if out in ("penultimate", "logits"):
                    outs[s][i : i + x.shape[0]] = clf[out]
                elif out == "pixels":
                    outs[s][i : i + x.shape[0]] = pixel(x)
                else:
                    assert self.vgg16 is not None, "no vgg16: not one of this evaluator's spaces"
                    outs[s][i : i + x.shape[0]] = self.vgg16(x)
            if all_logits is not None:
                all_logits[i : i + x.shape[0]] = clf["logits"]
        return outs, all_logits

    # -- the real side -----------------------------------------------------------------------
    def _key(self, space: str, sha: str) -> dict:
        return cache_key(dataset=self.dataset, split=self.split, n_real=self.n_real, space=space,
                         weights_sha256=sha, subset=REAL_SUBSET)

    def _real_images(self) -> Tensor:
        data = load_images(self.dataset, split=self.split, data_root=self.data_root)
        if self.n_real > len(data):
            raise ValueError(f"n_real={self.n_real} exceeds the {len(data)} images of {self.dataset}/{self.split}")
        if self.n_real == len(data):
            return data.images
        idx = torch.randperm(len(data), generator=torch.Generator().manual_seed(0))[: self.n_real]
        return data.images[idx]

    def prepare(self) -> None:
        """Load the real statistics from the disk cache, computing and caching what is missing."""
        missing = []
        for s in self.spaces:
            if s in self._real:
                continue
            entry = load_entry(cache_path(self.cache_dir, k := self._key(s, self.weights_sha256[s])), k)
            if entry is None:
                missing.append(s)
            else:
                self._real[s] = RealStats(**{f: t.to(self.device) if f in ("features", "radii") else t
                                             for f, t in entry.items()})
        need_hist = "class" in self.metrics and self._real_hist is None
        if need_hist:
            assert self.info is not None  # the class metrics load the classifier
            hist_key = self._key("class-histogram", self.info.sha256)
            entry = load_entry(cache_path(self.cache_dir, hist_key), hist_key)
            if entry is not None:
                self._real_hist = entry["hist"].numpy()
                need_hist = False
        if not missing and not need_hist:
            return
        feats, logits = self.extract(self._real_images(), missing, logits=need_hist)
        for s in missing:
            f = feats[s]
            mu, sigma = gaussian_stats(f)
            stats = RealStats(
                features=f,
                mu=torch.from_numpy(mu),
                sigma=torch.from_numpy(sigma),
                sqrt_sigma=torch.from_numpy(sqrtm_psd(sigma)),
                radii=knn_radii(f, (K_PRECISION_RECALL, K_DENSITY_COVERAGE),
                                max_block_elements=self.max_block_elements),
            )
            save_entry(cache_path(self.cache_dir, k := self._key(s, self.weights_sha256[s])), k, vars(stats))
            self._real[s] = stats
        if need_hist:
            assert logits is not None  # extracted with logits=need_hist
            self._real_hist = class_histogram(logits, NUM_CLASSES)
            save_entry(cache_path(self.cache_dir, hist_key), hist_key, {"hist": torch.from_numpy(self._real_hist)})

    def real_stats(self, space: str) -> RealStats:
        self.prepare()
        if space not in self._real:
            raise ValueError(f"feature space {space!r} is not one of this evaluator's: {', '.join(self.spaces)}")
        return self._real[space]

    # -- scoring -------------------------------------------------------------------------------
    def score(self, samples: Tensor, *, metrics: str | Iterable[str] | None = None) -> dict[str, float | int | str]:
        """Score generated samples (float [N, 1, 28, 28] in [-1, 1]); see the module docstring for keys.

        ``metrics`` restricts this call to some of the evaluator's groups (e.g. ``("fid",)`` for a
        cheap intermediate score) without a second evaluator or a second set of real statistics."""
        groups = self._groups(metrics)
        x = check_samples(samples)
        n = x.shape[0]
        if "prdc" in groups and n <= K_DENSITY_COVERAGE:
            raise ValueError(f"precision/recall/density/coverage need more than {K_DENSITY_COVERAGE} samples, got {n}")
        if "fid" in groups and n < 2:
            raise ValueError(f"FID needs at least 2 samples, got {n}")
        self.prepare()
        spaces = self.spaces if {"fid", "prdc"} & set(groups) else ()
        feats, logits = self.extract(x, spaces, logits="class" in groups)
        return self.score_features(feats, logits, metrics=groups)

    def _groups(self, metrics: str | Iterable[str] | None) -> tuple[str, ...]:
        if metrics is None:
            return self.metrics
        groups = _metric_names(metrics)
        extra = [g for g in groups if g not in self.metrics]
        if extra:
            raise ValueError(f"metric group(s) {', '.join(extra)} not prepared by this evaluator; "
                             f"valid choices: {', '.join(self.metrics)}")
        return groups

    def to(self, device: str | torch.device) -> Evaluator:
        """Move the networks and the prepared real statistics to ``device`` (in place; returns self)."""
        self.device = check_device(device)
        if self.classifier is not None:
            self.classifier = self.classifier.to(self.device)
        if self.vgg16 is not None:
            self.vgg16 = self.vgg16.to(self.device)
        for stats in self._real.values():
            stats.features, stats.radii = stats.features.to(self.device), stats.radii.to(self.device)
        return self

    def score_features(self, features: dict[str, Tensor], logits: Tensor | None, *,
                       metrics: str | Iterable[str] | None = None) -> dict[str, float | int | str]:
        """The metrics from already extracted generated features (as ``extract`` returns them)."""
        groups = self._groups(metrics)
        self.prepare()
        out: dict[str, float | int | str] = {}
        n_fake = 0  # set below: the metric groups are never empty
        for i, s in enumerate(self.spaces if {"fid", "prdc"} & set(groups) else ()):
            prefix = "" if i == 0 else f"{s}/"
            real, fake = self._real[s], features[s]
            n_fake = fake.shape[0]
            if "fid" in groups:
                mu, sigma = gaussian_stats(fake)
                out[prefix + "fid"] = frechet_distance(real.mu.numpy(), real.sigma.numpy(), mu, sigma,
                                                       sqrt_sigma1=real.sqrt_sigma.numpy())
            if "prdc" in groups:
                values = prdc(real.features, fake.to(real.features.dtype), real_radii=real.radii,
                              max_block_elements=self.max_block_elements)
                out.update({prefix + k: values[k] for k in PRDC_KEYS})
        if "class" in groups:
            if logits is None:
                raise ValueError("class metrics need the evaluator's logits; extract them with logits=True")
            assert self._real_hist is not None  # prepare() computed it for the class metrics
            out.update(class_metrics(class_histogram(logits, NUM_CLASSES), self._real_hist))
            n_fake = logits.shape[0]
        name, sha = (self.info.name, self.info.sha256) if self.info is not None else ("none", "none")
        out.update(evaluator=name, evaluator_sha256=sha, n_fake=n_fake, n_real=self.n_real)
        return out


def score(samples: Tensor, **kwargs) -> dict[str, float | int | str]:
    """Score ``samples`` with a one-off ``Evaluator(**kwargs)`` (real statistics still come from the disk cache)."""
    return Evaluator(**kwargs).score(samples)
