"""The search's one error type for the CLI, and how an exception becomes one line.

Every check that refuses a study (bad input, an unusable store, a full disk) ends as ``SearchError``
with a one-line message; ``python -m search.run`` prints it as ``error: ...`` and exits non-zero.
"""

from __future__ import annotations

import errno

DISK_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)
# what a store reports when its disk is full, where no OSError survives (SQLite through SQLAlchemy, pyarrow)
DISK_FULL_TEXTS = ("no space left on device", "database or disk is full", "disk quota exceeded")


class SearchError(RuntimeError):
    """Bad input or an unusable environment; the message is one line for the CLI."""


class DiskFull(SearchError):
    """A trial or the driver could not write: the study stopped, its records kept for --resume."""


def one_line(exc: BaseException) -> str:
    """The first line of an exception's message, or its type's name when it has none."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def causes(exc: BaseException) -> list[BaseException]:
    """``exc`` and the exceptions it was raised from or during, outermost first."""
    out: list[BaseException] = []
    seen: BaseException | None = exc
    while seen is not None and seen not in out:
        out.append(seen)
        seen = seen.__cause__ or seen.__context__
    return out


def is_disk_full(exc: BaseException | str) -> bool:
    """Whether an exception (or a failure's text) says a disk or quota is full, anywhere in its chain."""
    if isinstance(exc, str):
        return any(t in exc.lower() for t in DISK_FULL_TEXTS)
    for e in causes(exc):
        if isinstance(e, OSError) and e.errno in DISK_FULL_ERRNOS:
            return True
        if any(t in str(e).lower() for t in DISK_FULL_TEXTS):
            return True
    return False
