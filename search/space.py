"""Search-space parameters, their narrowing by a study file, and the define-by-run sampler.

Each study declares the parameters it may ever suggest (``ParamSpec``: a categorical, a float or
an int range); its define-by-run function then asks for them by name, inside whatever conditions
the math needs (λ_GP only under wgan-gp, ...). Declaring them lets a study file be validated before
any trial runs: an unknown parameter, a choice outside the registered ones, or a range outside the
registered range is an error, never silently ignored.

A narrowing maps a parameter name to one of
- a scalar: the parameter is fixed to it (still recorded in Optuna as a one-value distribution);
- a list: a subset of a categorical's choices;
- ``{low: .., high: ..}``: a sub-range of a float or int range.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the specs and study files need no Optuna: --help and --list-studies stay fast
    import optuna


class SpaceError(ValueError):
    """A study file or narrowing is invalid; the message names the key and what is allowed."""


@dataclass(frozen=True)
class Categorical:
    choices: tuple[Any, ...]

    def describe(self) -> str:
        return "one of " + ", ".join(map(repr, self.choices))


@dataclass(frozen=True)
class FloatRange:
    low: float
    high: float
    log: bool = False

    def describe(self) -> str:
        return f"a float in [{self.low:g}, {self.high:g}]" + (" (log scale)" if self.log else "")


@dataclass(frozen=True)
class IntRange:
    low: int
    high: int
    log: bool = False

    def describe(self) -> str:
        return f"an integer in [{self.low}, {self.high}]"


ParamSpec = Categorical | FloatRange | IntRange
Narrowing = Mapping[str, ParamSpec]


def _same_choice(choice: Any, value: Any) -> bool:
    """``value`` names ``choice``: equal and of its type (True == 1 in Python, but a study file's ``1`` is no
    ``True``), except that an integer names an equal float choice (YAML reads ``0`` for ``0.0``)."""
    if isinstance(choice, float) and isinstance(value, int) and not isinstance(value, bool):
        return choice == value
    return choice == value and type(choice) is type(value)


def contains(spec: ParamSpec, value: Any) -> bool:
    """Whether ``value`` is one the spec can suggest (one of a categorical's choices, a number in range)."""
    if isinstance(spec, Categorical):
        return any(_same_choice(c, value) for c in spec.choices)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    if isinstance(spec, IntRange) and not float(value).is_integer():
        return False
    return spec.low <= value <= spec.high


def narrow(specs: Mapping[str, ParamSpec], values: Mapping[str, Any]) -> dict[str, ParamSpec]:
    """Validate a study file's ``params`` mapping against the registered specs; return narrowed specs."""
    if not isinstance(values, Mapping):
        raise SpaceError(f"'params' must be a mapping of parameter names, got {type(values).__name__}")
    unknown = sorted(set(values) - set(specs))
    if unknown:
        raise SpaceError(f"unknown parameters {', '.join(unknown)}; valid parameters: {', '.join(specs)}")
    return {name: _narrow_one(name, specs[name], value) for name, value in values.items()}


def _narrow_one(name: str, spec: ParamSpec, value: Any) -> ParamSpec:
    if isinstance(spec, Categorical):
        subset = list(value) if isinstance(value, (list, tuple)) else [value]
        if not subset:
            raise SpaceError(f"parameter {name}: empty list of choices")
        bad = [v for v in subset if not contains(spec, v)]
        if bad:
            raise SpaceError(f"parameter {name}: {', '.join(map(repr, bad))} not allowed; "
                             f"registered: {spec.describe()}")
        # the registered choices themselves (0.0 for a file's 0), in the file's order
        return Categorical(tuple(dict.fromkeys(next(c for c in spec.choices if _same_choice(c, v)) for v in subset)))
    is_int = isinstance(spec, IntRange)
    if isinstance(value, Mapping):
        keys = set(value)
        if keys != {"low", "high"}:
            raise SpaceError(f"parameter {name}: a range needs exactly the keys low and high, "
                             f"got {', '.join(sorted(keys))}")
        low, high = _number(name, value["low"], is_int), _number(name, value["high"], is_int)
    else:
        low = high = _number(name, value, is_int)
    if not (spec.low <= low <= high <= spec.high):
        raise SpaceError(f"parameter {name}: [{low}, {high}] is not inside the registered range; "
                         f"registered: {spec.describe()}")
    return IntRange(int(low), int(high), spec.log) if is_int else FloatRange(float(low), float(high), spec.log)


def _number(name: str, v: Any, is_int: bool) -> float | int:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise SpaceError(f"parameter {name}: expected a number, got {v!r}")
    if is_int and not float(v).is_integer():
        raise SpaceError(f"parameter {name}: expected an integer, got {v!r}")
    return int(v) if is_int else float(v)


class SpaceSampler:
    """Suggests the study's parameters by name through an Optuna trial, honouring the narrowing."""

    def __init__(self, trial: optuna.Trial, specs: Mapping[str, ParamSpec], narrowing: Narrowing):
        self.trial = trial
        self.specs = specs
        self.narrowing = narrowing

    def __call__(self, name: str) -> Any:
        spec = self.narrowing[name] if name in self.narrowing else self.specs[name]
        if isinstance(spec, Categorical):
            return self.trial.suggest_categorical(name, list(spec.choices))
        if isinstance(spec, IntRange):
            return self.trial.suggest_int(name, spec.low, spec.high, log=spec.log and spec.low < spec.high)
        return self.trial.suggest_float(name, spec.low, spec.high, log=spec.log and spec.low < spec.high)


# --- study files -------------------------------------------------------------------------------

STUDY_FILE_KEYS = ("study", "params")


def read_yaml(path: str | Path, what: str) -> Any:
    """A YAML file's content; SpaceError in one line when it is absent, not UTF-8 or not YAML."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise SpaceError(f"{what} not found: {path}")
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise SpaceError(f"{what} {path} is not UTF-8 text") from None
    except yaml.YAMLError as exc:
        raise SpaceError(f"{what} {path} is not valid YAML: {str(exc).splitlines()[0]}") from None


def read_study_file(path: str | Path) -> dict[str, Any]:
    """Read a study YAML file: ``{study: NAME (optional), params: {name: narrowing}}``."""
    path = Path(path)
    data = read_yaml(path, "study file")
    if not isinstance(data, dict):
        raise SpaceError(f"study file {path} must hold a mapping with keys {', '.join(STUDY_FILE_KEYS)}")
    unknown = sorted(set(data) - set(STUDY_FILE_KEYS))
    if unknown:
        raise SpaceError(f"study file {path}: unknown keys {', '.join(unknown)}; "
                         f"valid keys: {', '.join(STUDY_FILE_KEYS)}")
    return {"study": data.get("study"), "params": data.get("params") or {}}


def narrowing_to_jsonable(narrowing: Narrowing) -> dict[str, Any]:
    """The narrowing as a study-file ``params`` mapping (stored with the study so --resume reuses it)."""
    out: dict[str, Any] = {}
    for name, spec in narrowing.items():
        if isinstance(spec, Categorical):
            out[name] = list(spec.choices)
        else:
            out[name] = {"low": spec.low, "high": spec.high}
    return out
