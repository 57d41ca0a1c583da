"""The trainer's one frozen, typed config, validated once at construction.

Loss-specific knobs are conditional, as in the math: ``lambda_gp`` belongs to wgan-gp alone,
``clip_value`` to wgan alone, ``san_base`` to san alone. Giving one to another loss is an error,
not a silently ignored value; leaving it unset picks the usual default for its loss.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import sys
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Literal, NoReturn, Self, cast, get_args

if TYPE_CHECKING:
    from .networks import NetworkConfig

# The names of the registries in data.py (DATASETS), losses.py (LOSSES, SAN_BASES) and networks.py
# (ARCHITECTURES, LATENT_PRIORS), in their order: declared here too so that a config and the CLI's --help
# need no torch. tests/test_cli_help.py asserts they equal the registries, so the two cannot drift apart.
# Each is declared once, as the Literal type of its TrainConfig field; the runtime tuple is its arguments.
DatasetName = Literal["mnist", "fashion-mnist", "kmnist"]
LossName = Literal["bce", "wgan", "wgan-gp", "hinge", "san"]
SanBaseName = Literal["hinge", "bce"]
ArchitectureName = Literal["mlp", "dcgan"]
LatentPriorName = Literal["normal", "uniform"]
DATASET_NAMES: tuple[DatasetName, ...] = get_args(DatasetName)
LOSS_NAMES: tuple[LossName, ...] = get_args(LossName)
SAN_BASE_NAMES: tuple[SanBaseName, ...] = get_args(SanBaseName)
ARCHITECTURE_NAMES: tuple[ArchitectureName, ...] = get_args(ArchitectureName)
LATENT_PRIOR_NAMES: tuple[LatentPriorName, ...] = get_args(LatentPriorName)
# field -> its valid values, for validation and for --help
FIELD_CHOICES: dict[str, tuple[str, ...]] = {
    "dataset": DATASET_NAMES, "architecture": ARCHITECTURE_NAMES, "latent_prior": LATENT_PRIOR_NAMES,
    "loss": LOSS_NAMES, "san_base": SAN_BASE_NAMES,
}

DEFAULT_LAMBDA_GP = 10.0
DEFAULT_CLIP_VALUE = 0.01


class ConfigError(ValueError):
    """A configuration value or key is invalid; the message names it and the valid choices."""


def check_choice(name: str, value: Any, valid: Collection[str], error: type[Exception] = ValueError) -> None:
    """``value`` is one of ``valid``, else ``error`` naming it and the valid choices (one wording everywhere)."""
    if value not in valid:
        raise error(f"unknown {name} {value!r}; valid choices: {', '.join(map(str, valid))}")


def is_finite(v: Any) -> bool:
    """A real number (not a bool), neither NaN nor infinite."""
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _choice(name: str, value: Any, valid: Collection[str]) -> None:
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
    batch_norm: bool = False
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
    seed: int = 0

    def __post_init__(self) -> None:
        _choice("dataset", self.dataset, FIELD_CHOICES["dataset"])
        _choice("architecture", self.architecture, FIELD_CHOICES["architecture"])
        _choice("latent prior", self.latent_prior, FIELD_CHOICES["latent_prior"])
        _choice("loss", self.loss, FIELD_CHOICES["loss"])
        self._check_conditional("lambda_gp", "wgan-gp", DEFAULT_LAMBDA_GP)
        self._check_conditional("clip_value", "wgan", DEFAULT_CLIP_VALUE)
        if self.loss == "san":
            object.__setattr__(self, "san_base", self.san_base or "hinge")
            _choice("san_base", self.san_base, FIELD_CHOICES["san_base"])
        elif self.san_base is not None:
            raise ConfigError(f"san_base is only used by loss 'san', got loss {self.loss!r}")
        for name in ("latent_dim", "n_critic", "batch_size", "steps"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
                raise ConfigError(f"{name} must be a positive integer, got {v!r}")
        for name in ("lr_g", "lr_d", "width"):
            v = getattr(self, name)
            if not _finite(v) or v <= 0:
                raise ConfigError(f"{name} must be a positive number, got {v!r}")
        for name in ("beta1", "beta2", "dropout"):
            v = getattr(self, name)
            if not _finite(v) or not 0 <= v < 1:
                raise ConfigError(f"{name} must be in [0, 1), got {v!r}")
        if not isinstance(self.seed, int) or isinstance(self.seed, bool):
            raise ConfigError(f"seed must be an integer, got {self.seed!r}")

    def _check_conditional(self, name: str, owner: str, default: float) -> None:
        v = getattr(self, name)
        if self.loss != owner:
            if v is not None:
                raise ConfigError(f"{name} is only used by loss {owner!r}, got loss {self.loss!r}")
            return
        if v is None:
            object.__setattr__(self, name, default)
        elif not _finite(v) or v <= 0:
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
            san=self.loss == "san",
        )



def known_fields(cls: type, values: Mapping[str, Any], *, what: str, error: type[Exception]) -> dict[str, Any]:
    """``values`` as keyword arguments for dataclass ``cls``; unknown keys raise ``error`` listing the valid ones."""
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(values) - set(names))
    if unknown:
        raise error(f"unknown {what} keys: {', '.join(unknown)}; valid keys: {', '.join(names)}")
    return dict(values)


_finite = is_finite


def cli_prog(module: str) -> str:
    """A CLI's name as it was invoked, for its usage line and messages: ``python -m MODULE`` when run
    with ``-m``, else the basename of ``sys.argv[0]`` (a console script: gan-train, gan-score, ...).
    Called in-process (a test, ``python -c``, another program's ``main(argv)``) it says ``python -m MODULE``."""
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    if spec is not None and spec.name == module:
        return f"python -m {module}"
    argv0 = sys.argv[0] if sys.argv else ""
    name = os.path.basename(argv0)
    if spec is not None or not name or argv0 == "-c" or name.endswith(".py"):  # python -m/-c/some script
        return f"python -m {module}"
    return name


class OneLineArgumentParser(argparse.ArgumentParser):
    """argparse whose own errors (unknown option, bad number, missing argument) end like every other
    bad input of the project's CLIs: one ``error: ...`` line on stderr and exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")
