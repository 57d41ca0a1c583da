"""One lookup for every registry keyed by name (losses, methods, studies, feature spaces, ...).

An unknown name reads the same everywhere, so a user learns one message and a test one pattern:

    unknown <what> <name>; valid choices: a, b, c

Torch-free, so configs and ``--help`` can use it without importing the heavy packages.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from typing import Any, TypeVar

V = TypeVar("V")


def unknown_choice(what: str, value: Any, valid: Iterable[Any]) -> str:
    """The one wording of an unknown name: ``unknown loss 'x'; valid choices: bce, wgan``."""
    return f"unknown {what} {value!r}; valid choices: {', '.join(map(str, valid))}"


def lookup(registry: Mapping[str, V], name: Any, *, what: str, error: type[Exception] = ValueError) -> V:
    """``registry[name]``; an unknown (or unhashable) name raises ``error`` naming it and the valid choices."""
    try:
        return registry[name]
    except (KeyError, TypeError):
        raise error(unknown_choice(what, name, registry)) from None


def check_choice(what: str, value: Any, valid: Collection[Any], error: type[Exception] = ValueError) -> None:
    """``value`` is one of ``valid``, else ``error`` naming it and the valid choices."""
    if value not in valid:
        raise error(unknown_choice(what, value, valid))


def check_choices(what: str, values: Collection[Any], valid: Collection[Any],
                  error: type[Exception] = ValueError) -> None:
    """Every one of ``values`` (at least one) is in ``valid``, else ``error`` naming the bad ones:
    ``unknown metric group(s) 'x', 'y'; valid choices: ...`` (``(none)`` for an empty list)."""
    bad = [v for v in values if v not in valid]
    if bad or not values:
        raise error(f"unknown {what}(s) {', '.join(map(repr, bad)) or '(none)'}; "
                    f"valid choices: {', '.join(map(str, valid))}")
