"""SQLite store URLs (Optuna's and MLflow's default stores), parsed in one place."""

from __future__ import annotations

from pathlib import Path

SQLITE_PREFIX = "sqlite:///"


def is_sqlite(url: str) -> bool:
    return url.startswith(SQLITE_PREFIX)


def sqlite_path(url: str) -> Path:
    """The database file of ``sqlite:///PATH`` (``sqlite:////abs`` and ``sqlite:///rel`` alike)."""
    return Path(url[len(SQLITE_PREFIX):])


def absolute_sqlite(url: str) -> str:
    """``sqlite:///relative.db`` -> an absolute path, so Ray workers (another cwd) open the same file."""
    if is_sqlite(url) and not url.startswith(SQLITE_PREFIX + "/"):
        return SQLITE_PREFIX + str(sqlite_path(url).resolve())
    return url


def sqlite_url(path: Path) -> str:
    return SQLITE_PREFIX + str(path.resolve())
