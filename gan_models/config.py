"""The trainer's one frozen, typed config, validated once at construction.

Loss-specific knobs are conditional, as in the math: ``lambda_gp`` belongs to the loss that declares a
gradient penalty, ``clip_value`` to the one that clips weights, ``san_base`` to the one with a SAN head.
Giving one to another loss is an error, not a silently ignored value; leaving it unset picks the usual
default for its loss. What each loss needs is declared once, here (``LOSS_NEEDS``), without torch, so
that a config, the search space and ``--help`` read it; gan_models.losses pairs it with the math.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Self, cast, get_args

from .registry import check_choice

if TYPE_CHECKING:
    from .networks import NetworkConfig

# The names of the registries in data.py (DATASETS) and networks.py (ARCHITECTURES, LATENT_PRIORS), in
# their order: declared here too so that a config and the CLI's --help need no torch.
# tests/test_cli_help.py asserts they equal the registries, so the two cannot drift apart.
# Each is declared once, as the Literal type of its TrainConfig field; the runtime tuple is its arguments.
DatasetName = Literal["mnist", "fashion-mnist", "kmnist"]
LossName = Literal["bce", "wgan", "wgan-gp", "hinge", "san"]
SanBaseName = Literal["hinge", "bce"]
ArchitectureName = Literal["mlp", "dcgan"]
LatentPriorName = Literal["normal", "uniform"]
# fp32: full float32 matmuls; tf32: float32 matmuls and convolutions on TF32 tensor cores (CUDA;
# the CPU computes them in float32); bf16: autocast to bfloat16 (gan_models.precision)
PrecisionName = Literal["fp32", "tf32", "bf16"]
DATASET_NAMES: tuple[DatasetName, ...] = get_args(DatasetName)
SAN_BASE_NAMES: tuple[SanBaseName, ...] = get_args(SanBaseName)
ARCHITECTURE_NAMES: tuple[ArchitectureName, ...] = get_args(ArchitectureName)
LATENT_PRIOR_NAMES: tuple[LatentPriorName, ...] = get_args(LatentPriorName)
PRECISION_NAMES: tuple[PrecisionName, ...] = get_args(PrecisionName)

DEFAULT_LAMBDA_GP = 10.0
DEFAULT_CLIP_VALUE = 0.01


# a TrainConfig field that only some losses read -> the LossNeeds property that asks for it
LOSS_OPTIONS = {"lambda_gp": "gradient_penalty", "clip_value": "clips_weights", "san_base": "san_head"}


@dataclass(frozen=True)
class LossNeeds:
    """What a loss needs of the trainer beyond its D and G losses, each with the config field it reads:

    clips_weights: after each D step every weight of D is clipped into [-c, c] (``clip_value``);
    gradient_penalty: lambda_GP E[(||grad D(x_hat)||_2 - 1)^2] is added to the D loss (``lambda_gp``);
    san_bases: D ends in a SAN head, whose "fun" term one of these base losses trains (``san_base``;
      the first is the default) and whose "dir" term the direction loss trains.
    """

    clips_weights: bool = False
    gradient_penalty: bool = False
    san_bases: tuple[SanBaseName, ...] = ()

    @property
    def san_head(self) -> bool:
        return bool(self.san_bases)

    @property
    def options(self) -> tuple[str, ...]:
        """The TrainConfig fields this loss reads beyond ``loss`` (the search space's conditional parameters)."""
        return tuple(name for name, need in LOSS_OPTIONS.items() if getattr(self, need))


# every loss, declared once; gan_models.losses.LOSSES gives each its d_loss and g_loss
LOSS_NEEDS: dict[LossName, LossNeeds] = {
    "bce": LossNeeds(),
    "wgan": LossNeeds(clips_weights=True),
    "wgan-gp": LossNeeds(gradient_penalty=True),
    "hinge": LossNeeds(),
    "san": LossNeeds(san_bases=SAN_BASE_NAMES),  # G as WGAN; the base loss trains "fun"
}
LOSS_NAMES: tuple[LossName, ...] = get_args(LossName)
# an optional loss field -> its default where the loss reads it
OPTION_DEFAULTS: dict[str, float] = {"lambda_gp": DEFAULT_LAMBDA_GP, "clip_value": DEFAULT_CLIP_VALUE}
# field -> its valid values, for validation and for --help
FIELD_CHOICES: dict[str, tuple[str, ...]] = {
    "dataset": DATASET_NAMES, "architecture": ARCHITECTURE_NAMES, "latent_prior": LATENT_PRIOR_NAMES,
    "loss": LOSS_NAMES, "san_base": SAN_BASE_NAMES, "precision": PRECISION_NAMES,
}


def _check_loss_registry() -> None:
    """Checked once, at import: the Literal and the declarations list the same losses, and a SAN base
    is a declared loss that needs nothing of the trainer itself."""
    if tuple(LOSS_NEEDS) != LOSS_NAMES:
        raise ValueError(f"LOSS_NEEDS declares {tuple(LOSS_NEEDS)}, LossName lists {LOSS_NAMES}")
    for base in SAN_BASE_NAMES:
        if base not in LOSS_NEEDS or LOSS_NEEDS[base].options:
            raise ValueError(f"SAN base loss {base!r} must be a declared loss that needs no clipping, "
                             f"gradient penalty or SAN head itself")


_check_loss_registry()


class ConfigError(ValueError):
    """A configuration value or key is invalid; the message names it and the valid choices."""


def is_finite(v: Any) -> bool:
    """A real number (not a bool), neither NaN nor infinite."""
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _choice(name: str, value: Any, valid: tuple[str, ...]) -> None:
    check_choice(name, value, valid, ConfigError)


class FrozenConfig:
    """What every frozen dataclass config of the project shares: ``to_dict``, ``from_dict`` (an
    unknown key is an error listing the valid ones, never silently dropped) and ``replace``.
    A subclass names itself in messages (``config_name``) and its error type (``config_error``)."""

    config_name: ClassVar[str] = "config"
    config_error: ClassVar[type[Exception]] = ValueError

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(cast(Any, self))}

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> Self:
        """Build from a mapping; unknown keys are an error listing the valid ones."""
        return cls(**known_fields(cls, values, what=cls.config_name, error=cls.config_error))

    def replace(self, **changes: Any) -> Self:
        return self.from_dict({**self.to_dict(), **changes})


@dataclass(frozen=True)
class TrainConfig(FrozenConfig):
    config_name: ClassVar[str] = "config"
    config_error: ClassVar[type[Exception]] = ConfigError

    # data and networks
    dataset: DatasetName = "mnist"
    architecture: ArchitectureName = "mlp"
    latent_dim: int = 100
    latent_prior: LatentPriorName = "normal"
    width: float = 1.0
    spectral_norm: bool = False
    dropout: float = 0.0
    batch_norm: bool = False  # in G (the course's G has none)
    # objective
    loss: LossName = "bce"
    san_base: SanBaseName | None = None
    lambda_gp: float | None = None
    clip_value: float | None = None
    n_critic: int = 1
    # optimisation (Adam for both networks)
    lr_g: float = 2e-4
    lr_d: float = 2e-4
    beta1: float = 0.5
    beta2: float = 0.999
    batch_size: int = 64
    steps: int = 2000  # generator updates; each follows n_critic discriminator updates
    ema_decay: float = 0.0  # β of the generator's weight average (gan_models.ema); 0: off, sample from G itself
    seed: int = 0
    precision: PrecisionName = "fp32"

    def __post_init__(self) -> None:
        _choice("dataset", self.dataset, FIELD_CHOICES["dataset"])
        _choice("architecture", self.architecture, FIELD_CHOICES["architecture"])
        _choice("latent prior", self.latent_prior, FIELD_CHOICES["latent_prior"])
        _choice("loss", self.loss, FIELD_CHOICES["loss"])
        _choice("precision", self.precision, FIELD_CHOICES["precision"])
        needs = self.needs
        for name in LOSS_OPTIONS:
            if name not in needs.options and getattr(self, name) is not None:
                users = [loss for loss, n in LOSS_NEEDS.items() if name in n.options]
                raise ConfigError(f"{name} is only used by loss {' or '.join(map(repr, users))}, "
                                  f"got loss {self.loss!r}")
        for name, default in OPTION_DEFAULTS.items():
            if name in needs.options:
                self._set_positive_option(name, default)
        if needs.san_head:
            object.__setattr__(self, "san_base", self.san_base or needs.san_bases[0])
            _choice("san_base", self.san_base, needs.san_bases)
        for name in ("latent_dim", "n_critic", "batch_size", "steps"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
                raise ConfigError(f"{name} must be a positive integer, got {v!r}")
        for name in ("lr_g", "lr_d", "width"):
            v = getattr(self, name)
            if not is_finite(v) or v <= 0:
                raise ConfigError(f"{name} must be a positive number, got {v!r}")
        for name in ("beta1", "beta2", "dropout", "ema_decay"):
            v = getattr(self, name)
            if not is_finite(v) or not 0 <= v < 1:
                raise ConfigError(f"{name} must be in [0, 1), got {v!r}")
        if not isinstance(self.seed, int) or isinstance(self.seed, bool):
            raise ConfigError(f"seed must be an integer, got {self.seed!r}")

    @property
    def images_per_step(self) -> int:
        """Real images one generator step consumes: n_critic discriminator updates of batch_size each."""
        return self.batch_size * self.n_critic

    @property
    def needs(self) -> LossNeeds:
        """What this config's loss needs of the trainer (its declaration in LOSS_NEEDS)."""
        return LOSS_NEEDS[self.loss]

    def _set_positive_option(self, name: str, default: float) -> None:
        v = getattr(self, name)
        if v is None:
            object.__setattr__(self, name, default)
        elif not is_finite(v) or v <= 0:
            raise ConfigError(f"{name} must be a positive number, got {v!r}")

    @property
    def network(self) -> NetworkConfig:
        from .networks import NetworkConfig

        return NetworkConfig(
            architecture=self.architecture,
            latent_dim=self.latent_dim,
            width=self.width,
            spectral_norm=self.spectral_norm,
            dropout=self.dropout,
            batch_norm=self.batch_norm,
            san=self.needs.san_head,
        )


def known_fields(cls: type, values: Mapping[str, Any], *, what: str, error: type[Exception]) -> dict[str, Any]:
    """``values`` as keyword arguments for dataclass ``cls``; unknown keys raise ``error`` listing the valid ones."""
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(values) - set(names))
    if unknown:
        raise error(f"unknown {what} keys: {', '.join(unknown)}; valid keys: {', '.join(names)}")
    return dict(values)

