"""Lazy package exports (PEP 562): a package's public names are imported on first use, so that
``python -m package.cli --help`` does not pay for torch, Optuna, Ray or MLflow."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Iterable, Mapping
from typing import Any


def lazy_exports(package: str, exports: Mapping[str, str],
                 public: Iterable[str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``__getattr__`` and ``__dir__`` for ``package``: ``exports`` maps a public name to the
    submodule defining it (``"module:attr"`` for a name exported under another one); a name is
    imported once, then cached in the package's namespace."""
    public = tuple(public)

    def __getattr__(name: str) -> Any:
        try:
            module = exports[name]
        except KeyError:
            raise AttributeError(f"module {package!r} has no attribute {name!r}") from None
        module, _, attr = module.partition(":")
        value = getattr(importlib.import_module(f"{package}.{module}"), attr or name)
        vars(sys.modules[package])[name] = value  # later look-ups skip __getattr__
        return value

    def __dir__() -> list[str]:
        return sorted({*vars(sys.modules[package]), *public})

    return __getattr__, __dir__
