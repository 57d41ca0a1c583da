"""The refiner's one frozen, typed config, validated once at construction.

Which fields a method reads (the others keep their defaults and are not consulted):
- DOT methods (target, latent, latent-image, embedded-target, embedded-latent): steps, lr,
  optimizer, norm, delta, k_eff, k_eff_pairs, k_eff_repeats, clip_images; the embedded ones take
  any k_eff but "gradient" (K_EFF_FOR_EMBEDDED); the latent ones also
  projection (normal prior only; a uniform prior is always clipped to [-1, 1]); the embedded
  ones also embedding.
- ddls: steps, ddls_step_size, ddls_noise_scale, clip_images.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Mapping

from gan_models.config import known_fields

# name -> what the refiner moves and what its transport cost compares (documentation + validation;
# the step rules live in refinement.dot / refinement.ddls).
METHODS: dict[str, str] = {
    "target": "image x, cost ||x - y + delta|| (Tanaka Alg. 1)",
    "latent": "latent z, cost ||z - z_y + delta|| (Tanaka Alg. 2)",
    "latent-image": "latent z, cost ||G(z) - G(z_y) + delta|| (the course reports' latent DOT)",
    "embedded-target": "image x, cost ||E(x) - E(y) + delta||",
    "embedded-latent": "latent z, cost ||E(G(z)) - E(G(z_y)) + delta||",
    "ddls": "latent z, Langevin on ||z||^2/2 - d(G(z)) (Che et al. 2020)",
}
OPTIMIZERS = ("sgd", "adam")
NORMS = ("l2", "squared-l2")
K_EFF_CHOICES = ("estimate", "mean-of-max", "one", "gradient")
K_EFF_FOR_EMBEDDED = ("estimate", "mean-of-max", "one")  # no gradient of D in an embedding space
PROJECTIONS = ("exact", "tanaka", "none")


class RefineConfigError(ValueError):
    """A refinement config value or key is invalid; the message names it and the valid choices."""


def _choice(name: str, value: Any, valid) -> None:
    if value not in valid:
        raise RefineConfigError(f"unknown {name} {value!r}; valid choices: {', '.join(valid)}")


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


@dataclass(frozen=True)
class RefineConfig:
    method: str = "latent"
    steps: int = 20  # 0 is allowed in the library: the identity (inputs returned exactly)
    lr: float = 0.01  # DOT step size epsilon
    optimizer: str = "adam"  # Adam uses beta = (0, 0.9) as Tanaka
    norm: str = "l2"
    delta: float = 0.001  # added to every coordinate of the cost's difference (keeps ||.|| differentiable at 0)
    k_eff: str = "estimate"
    k_eff_pairs: int = 100  # sample pairs per maximum (Tanaka: 100); "gradient": generated points and interpolates
    k_eff_repeats: int = 10  # maxima averaged by "mean-of-max"
    projection: str = "exact"
    clip_images: bool = True  # clip refined images to the data range [-1, 1]
    embedding: str = "classifier-alt"  # feature space E of the embedded methods; never the scoring one
    ddls_step_size: float = 0.01  # Langevin epsilon
    ddls_noise_scale: float = 1.0  # multiplies sqrt(epsilon) * n; 0 gives plain gradient descent on E(z)

    def __post_init__(self) -> None:
        _choice("method", self.method, METHODS)
        _choice("optimizer", self.optimizer, OPTIMIZERS)
        _choice("norm", self.norm, NORMS)
        _choice("k_eff", self.k_eff, K_EFF_CHOICES)
        _choice("projection", self.projection, PROJECTIONS)
        if not _int(self.steps) or self.steps < 0:
            raise RefineConfigError(f"steps must be an integer >= 0, got {self.steps!r}")
        for name in ("k_eff_pairs", "k_eff_repeats"):
            v = getattr(self, name)
            if not _int(v) or v <= 0:
                raise RefineConfigError(f"{name} must be a positive integer, got {v!r}")
        for name in ("lr", "ddls_step_size"):
            v = getattr(self, name)
            if not _finite(v) or v <= 0:
                raise RefineConfigError(f"{name} must be a positive number, got {v!r}")
        for name in ("delta", "ddls_noise_scale"):
            v = getattr(self, name)
            if not _finite(v) or v < 0:
                raise RefineConfigError(f"{name} must be a number >= 0, got {v!r}")
        if not isinstance(self.clip_images, bool):
            raise RefineConfigError(f"clip_images must be a bool, got {self.clip_images!r}")
        if not isinstance(self.embedding, str) or not self.embedding:
            raise RefineConfigError(f"embedding must be a feature-space name, got {self.embedding!r}")
        if self.k_eff == "gradient" and self.embedded:
            raise RefineConfigError(f"k_eff 'gradient' needs an image or latent cost space; method {self.method!r} "
                                    f"measures its cost in embedding space, where D has no gradient (D is a function "
                                    f"of x, not of E(x)); use one of {', '.join(K_EFF_FOR_EMBEDDED)}")

    @property
    def moves_latent(self) -> bool:
        """True when the refiner updates z (and returns G(z)) rather than the image itself."""
        return self.method not in ("target", "embedded-target")

    @property
    def embedded(self) -> bool:
        return self.method.startswith("embedded-")

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> "RefineConfig":
        """Build from a mapping; unknown keys are an error listing the valid ones."""
        return cls(**known_fields(cls, values, what="refine config", error=RefineConfigError))

    def replace(self, **changes: Any) -> "RefineConfig":
        return RefineConfig.from_dict({**self.to_dict(), **changes})
