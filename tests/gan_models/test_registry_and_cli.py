"""The one registry lookup (one wording for an unknown name) and the one config-to-flags helper."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import ClassVar, Literal

import pytest

from gan_models.cli import add_config_flags, config_from_flags
from gan_models.config import FrozenConfig
from gan_models.registry import check_choice, check_choices, lookup


def test_lookup_returns_the_entry_or_names_the_valid_choices():
    assert lookup({"a": 1, "b": 2}, "b", what="letter") == 2
    with pytest.raises(KeyError, match=r"^\"unknown letter 'c'; valid choices: a, b\"$"):
        lookup({"a": 1, "b": 2}, "c", what="letter", error=KeyError)
    with pytest.raises(ValueError, match=r"unknown letter \['a'\]; valid choices: a, b"):
        lookup({"a": 1, "b": 2}, ["a"], what="letter")  # unhashable: still the one message


def test_choices_name_every_bad_value_or_none_given():
    check_choice("norm", "l2", ("l2", "squared-l2"))
    check_choices("metric group", ["fid", "prdc"], ("fid", "prdc", "class"))
    with pytest.raises(ValueError, match=r"unknown metric group\(s\) 'x', 'y'; valid choices: fid, prdc"):
        check_choices("metric group", ["x", "fid", "y"], ("fid", "prdc"))
    with pytest.raises(ValueError, match=r"unknown metric group\(s\) \(none\); valid choices: fid"):
        check_choices("metric group", [], ("fid",))


class ToyError(ValueError):
    pass


@dataclass(frozen=True)
class Toy(FrozenConfig):
    config_name: ClassVar[str] = "toy config"
    config_error: ClassVar[type[Exception]] = ToyError
    mode: Literal["fast", "exact"] = "exact"
    steps: int = 3
    rate: float | None = None
    shuffle: bool = True

    def __post_init__(self) -> None:
        check_choice("mode", self.mode, ("fast", "exact"), ToyError)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="toy")
    add_config_flags(p, Toy, {"mode": ("fast", "exact")})
    return p


def test_every_field_becomes_a_flag_and_only_given_flags_reach_the_config():
    p = _parser()
    assert config_from_flags(p.parse_args([]), Toy) == Toy()  # absent flags: the config's own defaults
    given = p.parse_args(["--mode", "fast", "--steps", "7", "--rate", "0.5", "--no-shuffle"])
    assert config_from_flags(given, Toy) == Toy(mode="fast", steps=7, rate=0.5, shuffle=False)
    assert "one of fast, exact" in p.format_help() and "--shuffle, --no-shuffle" in p.format_help()
    with pytest.raises(ToyError, match="unknown mode 'slow'; valid choices: fast, exact"):
        config_from_flags(p.parse_args(["--mode", "slow"]), Toy)  # the config validates, with its list
