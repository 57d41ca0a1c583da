"""The refinement methods, each declared once in ``METHODS``, and the refiner's one frozen, typed config,
validated once at construction.

A method's entry says what it moves (the image x, or the latent z with the result G(z)), the space of its
transport cost (image, latent, embedding; none for DDLS), its objective and its anchor (the fixed start
the cost compares with); the config's checks, the costs (refinement.costs), the DOT objective
(refinement.dot), the refiner registry and the search studies read the entry, never the method's name.
Which fields a method reads (``RefineMethod.reads``; the others keep their defaults and are not consulted):
- DOT methods: steps, lr, optimizer, norm, delta, k_eff, k_eff_pairs, k_eff_repeats; the ones that move
  images also clip_images; the ones that move latents also projection (normal prior only; a uniform prior
  is always clipped to [-1, 1]); the ones with an embedding cost also embedding, and any k_eff but
  "gradient" (D has no gradient in an embedding space).
- ddls (Langevin): steps, ddls_step_size, ddls_noise_scale.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, get_args

from gan_models.config import PRECISION_NAMES, FrozenConfig, PrecisionName, is_finite
from gan_models.registry import check_choice, lookup

# Each choice is declared once, as the Literal type of its field; the runtime tuple is its arguments.
# The method names, in METHODS' order (tests/refinement/test_refine_config.py asserts they are its keys)
MethodName = Literal["target", "latent", "latent-image", "embedded-target", "embedded-latent", "ddls"]
OptimizerName = Literal["sgd", "adam"]
NormName = Literal["l2", "squared-l2"]
KEffName = Literal["estimate", "mean-of-max", "one", "gradient"]
ProjectionName = Literal["exact", "tanaka", "none"]
Kind = Literal["dot", "langevin"]  # DOT (refinement.dot) or Langevin sampling (refinement.ddls)
Moves = Literal["image", "latent"]
CostSpaceName = Literal["image", "latent", "embedding"]
METHOD_NAMES: tuple[MethodName, ...] = get_args(MethodName)
OPTIMIZERS: tuple[OptimizerName, ...] = get_args(OptimizerName)
NORMS: tuple[NormName, ...] = get_args(NormName)
K_EFF_CHOICES: tuple[KEffName, ...] = get_args(KEffName)
PROJECTIONS: tuple[ProjectionName, ...] = get_args(ProjectionName)
KINDS: tuple[Kind, ...] = get_args(Kind)
MOVES: tuple[Moves, ...] = get_args(Moves)
COST_SPACE_NAMES: tuple[CostSpaceName, ...] = get_args(CostSpaceName)
# the K_eff estimators that need D's gradient in the cost's space (refinement.lipschitz)
K_EFF_NEEDS_GRADIENT: tuple[KEffName, ...] = ("gradient",)
# the refinement steps a trajectory is scored at by default (plus its last)
DEFAULT_SCORE_STEPS = (0, 1, 2, 5, 10, 20)
# the config fields every DOT method reads (besides method and steps)
_DOT_READS = ("lr", "optimizer", "norm", "delta", "k_eff", "k_eff_pairs", "k_eff_repeats")


class RefineConfigError(ValueError):
    """A refinement config value or key is invalid; the message names it and the valid choices."""


def _choice(name: str, value: Any, valid: Collection[str]) -> None:
    check_choice(name, value, valid, RefineConfigError)



def _int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


@dataclass(frozen=True)
class RefineMethod:
    """One refinement method, declared once (checked at construction).

    kind: "dot" (gradient descent on a transport cost minus D / K_eff) or "langevin" (DDLS).
    moves: "image" (x itself, from y = G(z_y)) or "latent" (z from z_y; the result is G(z)).
    cost_space: where DOT's cost c(P(v) - P(v_0) + delta) compares the moving point with its start:
      "image" (P(v) = x), "latent" (P(z) = z) or "embedding" (P(v) = E(x)); None for Langevin.
    objective: what a step descends, in the papers' notation. anchor: P(v_0), the start in the cost
      space (None without a cost). Both follow from moves and cost_space, which the code reads.
    """

    name: MethodName
    kind: Kind
    moves: Moves
    cost_space: CostSpaceName | None
    objective: str
    anchor: str | None
    reference: str = ""

    def __post_init__(self) -> None:
        _choice(f"kind of method {self.name!r}", self.kind, KINDS)
        _choice(f"moves of method {self.name!r}", self.moves, MOVES)
        if (self.kind == "dot") != (self.cost_space is not None) or (self.cost_space is None) != (self.anchor is None):
            raise RefineConfigError(f"method {self.name!r}: a DOT method has a cost space and an anchor, "
                                    f"a Langevin one neither")
        if self.cost_space is not None:
            _choice(f"cost space of method {self.name!r}", self.cost_space, COST_SPACE_NAMES)
        if self.cost_space == "latent" and self.moves != "latent":
            raise RefineConfigError(f"method {self.name!r}: a latent-space cost needs the latent to move")

    @property
    def dot(self) -> bool:
        return self.kind == "dot"

    @property
    def moves_latent(self) -> bool:
        """True when the refiner updates z (and returns G(z)) rather than the image itself."""
        return self.moves == "latent"

    @property
    def embedded(self) -> bool:
        """True when the transport cost compares features E(x) (D has no gradient there)."""
        return self.cost_space == "embedding"

    @property
    def k_eff_choices(self) -> tuple[KEffName, ...]:
        """The K_eff estimators this method can use (none for Langevin, which divides D by nothing)."""
        if not self.dot:
            return ()
        return tuple(k for k in K_EFF_CHOICES if not (self.embedded and k in K_EFF_NEEDS_GRADIENT))

    @property
    def reads(self) -> tuple[str, ...]:
        """The RefineConfig fields this method reads besides ``method`` and ``steps``."""
        if not self.dot:
            return ("ddls_step_size", "ddls_noise_scale")
        return (*_DOT_READS, "projection" if self.moves_latent else "clip_images",
                *(("embedding",) if self.embedded else ()))


def _methods(*methods: RefineMethod) -> dict[str, RefineMethod]:
    return {m.name: m for m in methods}


# name -> its declaration; the step rules live in refinement.dot / refinement.ddls
METHODS: dict[str, RefineMethod] = _methods(
    RefineMethod("target", "dot", moves="image", cost_space="image",
                 objective="H(x) = c(x - y + delta) - D(x) / K_eff", anchor="y = G(z_y)", reference="Tanaka Alg. 1"),
    RefineMethod("latent", "dot", moves="latent", cost_space="latent",
                 objective="H(z) = c(z - z_y + delta) - D(G(z)) / k_eff", anchor="z_y", reference="Tanaka Alg. 2"),
    RefineMethod("latent-image", "dot", moves="latent", cost_space="image",
                 objective="H(z) = c(G(z) - G(z_y) + delta) - D(G(z)) / K_eff", anchor="G(z_y)",
                 reference="the course reports' latent DOT"),
    RefineMethod("embedded-target", "dot", moves="image", cost_space="embedding",
                 objective="H(x) = c(E(x) - E(y) + delta) - D(x) / K_eff", anchor="E(y)"),
    RefineMethod("embedded-latent", "dot", moves="latent", cost_space="embedding",
                 objective="H(z) = c(E(G(z)) - E(G(z_y)) + delta) - D(G(z)) / K_eff", anchor="E(G(z_y))"),
    RefineMethod("ddls", "langevin", moves="latent", cost_space=None,
                 objective="Langevin on E(z) = ||z||^2/2 - d(G(z))", anchor=None, reference="Che et al. 2020"),
)


def get_method(name: str) -> RefineMethod:
    """The declaration of method ``name``; an unknown name raises RefineConfigError listing the valid ones."""
    return lookup(METHODS, name, what="method", error=RefineConfigError)


@dataclass(frozen=True)
class RefineConfig(FrozenConfig):
    config_name: ClassVar[str] = "refine config"
    config_error: ClassVar[type[Exception]] = RefineConfigError

    method: MethodName = "latent"
    steps: int = 20  # 0 is allowed in the library: the identity (inputs returned exactly)
    lr: float = 0.01  # DOT step size epsilon
    optimizer: OptimizerName = "adam"  # Adam uses beta = (0, 0.9) as Tanaka
    norm: NormName = "l2"
    delta: float = 0.001  # added to every coordinate of the cost's difference (keeps ||.|| differentiable at 0)
    k_eff: KEffName = "estimate"
    k_eff_pairs: int = 100  # sample pairs per maximum (Tanaka: 100); "gradient": generated points and interpolates
    k_eff_repeats: int = 10  # maxima averaged by "mean-of-max"
    projection: ProjectionName = "exact"
    clip_images: bool = True  # clip refined images to the data range [-1, 1]
    embedding: str = "classifier-alt"  # feature space E of the embedded methods; never the scoring one
    ddls_step_size: float = 0.01  # Langevin epsilon
    ddls_noise_scale: float = 1.0  # multiplies sqrt(epsilon) * n; 0 gives plain gradient descent on E(z)
    precision: PrecisionName = "fp32"  # of D and G's forward passes (gan_models.precision); every method

    def __post_init__(self) -> None:
        _choice("method", self.method, METHODS)
        _choice("optimizer", self.optimizer, OPTIMIZERS)
        _choice("norm", self.norm, NORMS)
        _choice("k_eff", self.k_eff, K_EFF_CHOICES)
        _choice("projection", self.projection, PROJECTIONS)
        _choice("precision", self.precision, PRECISION_NAMES)
        if not _int(self.steps) or self.steps < 0:
            raise RefineConfigError(f"steps must be an integer >= 0, got {self.steps!r}")
        for name in ("k_eff_pairs", "k_eff_repeats"):
            v = getattr(self, name)
            if not _int(v) or v <= 0:
                raise RefineConfigError(f"{name} must be a positive integer, got {v!r}")
        for name in ("lr", "ddls_step_size"):
            v = getattr(self, name)
            if not is_finite(v) or v <= 0:
                raise RefineConfigError(f"{name} must be a positive number, got {v!r}")
        for name in ("delta", "ddls_noise_scale"):
            v = getattr(self, name)
            if not is_finite(v) or v < 0:
                raise RefineConfigError(f"{name} must be a number >= 0, got {v!r}")
        if not isinstance(self.clip_images, bool):
            raise RefineConfigError(f"clip_images must be a bool, got {self.clip_images!r}")
        if not isinstance(self.embedding, str) or not self.embedding:
            raise RefineConfigError(f"embedding must be a feature-space name, got {self.embedding!r}")
        method = self.variant
        if method.dot and self.k_eff not in method.k_eff_choices:
            raise RefineConfigError(f"k_eff {self.k_eff!r} needs an image or latent cost space; method {self.method!r} "
                                    f"measures its cost in {method.cost_space} space, where D has no gradient (D is a "
                                    f"function of x, not of E(x)); use one of {', '.join(method.k_eff_choices)}")

    @property
    def variant(self) -> RefineMethod:
        """The declaration of ``method`` in METHODS."""
        return METHODS[self.method]

    @property
    def moves_latent(self) -> bool:
        """True when the refiner updates z (and returns G(z)) rather than the image itself."""
        return self.variant.moves_latent

    @property
    def embedded(self) -> bool:
        return self.variant.embedded

