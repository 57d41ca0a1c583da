"""What the project's command lines share: their name, one-line errors, and flags made from a config.

A frozen config dataclass is the CLI's schema: ``add_config_flags`` turns each field into a flag
(``lr_g`` -> ``--lr-g``; a bool -> ``--x/--no-x``; a choice lists its values in --help) whose parser
default is None, so ``config_from_flags`` can tell a given flag from an absent one and the config's own
defaults and checks apply. Torch-free: every ``--help`` stays fast.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from collections.abc import Mapping
from typing import Any, NoReturn, TypeVar, cast

from .config import FrozenConfig

C = TypeVar("C", bound=FrozenConfig)

# a field's annotation as a string (PEP 563) -> the type argparse converts its flag with
_ARG_TYPES = {"int": int, "float": float, "str": str}


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


def flag_name(field: str) -> str:
    """``lr_g`` -> ``--lr-g``."""
    return "--" + field.replace("_", "-")


def bool_fields(config_cls: type[FrozenConfig]) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(cast(Any, config_cls)) if str(f.type) == "bool")


def _arg_type(annotation: object) -> type:
    """'float | None' -> float (the config modules' annotations are strings, PEP 563)."""
    return _ARG_TYPES[str(annotation).split("|")[0].strip()]


def add_config_flags(parser: argparse.ArgumentParser, config_cls: type[FrozenConfig],
                     choices: Mapping[str, tuple[str, ...]]) -> None:
    """One flag per field of ``config_cls``; ``choices`` (field -> valid values) are listed in --help."""
    for f in dataclasses.fields(cast(Any, config_cls)):
        default = f"default {f.default}"
        if str(f.type) == "bool":
            parser.add_argument(flag_name(f.name), action=argparse.BooleanOptionalAction, default=None, help=default)
            continue
        extra = f"; one of {', '.join(choices[f.name])}" if f.name in choices else ""
        arg_type = str if f.name in choices else _arg_type(f.type)  # a choice's type is a Literal of str
        parser.add_argument(flag_name(f.name), type=arg_type, default=None, metavar=f.name.upper(),
                            help=default + extra)


def given_config_flags(args: argparse.Namespace, config_cls: type[FrozenConfig]) -> dict[str, Any]:
    """The config fields whose flag was given on the command line."""
    names = (f.name for f in dataclasses.fields(cast(Any, config_cls)))
    return {n: getattr(args, n) for n in names if getattr(args, n) is not None}


def config_from_flags(args: argparse.Namespace, config_cls: type[C]) -> C:
    """The config from its given flags; absent ones take the config's defaults, and its checks apply."""
    return config_cls.from_dict(given_config_flags(args, config_cls))


def error_line(exc: BaseException) -> str:
    """An exception as the one ``error:`` line a CLI ends with."""
    text = str(exc).strip()
    return f"error: {text.splitlines()[0] if text else type(exc).__name__}"
