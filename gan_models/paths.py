"""Folders a step may create and must take back when it fails: nothing already there is touched."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path


def missing_folders(path: str | os.PathLike) -> list[Path]:
    """``path`` and its ancestors that do not exist yet, innermost first (what creating it would make)."""
    out, p = [], Path(path).resolve()
    while not p.exists() and p != p.parent:
        out.append(p)
        p = p.parent
    return out


def remove_empty_folders(folders: Iterable[Path]) -> None:
    """Remove ``folders`` (innermost first, as ``missing_folders`` lists them) while they are empty."""
    for folder in folders:
        try:
            folder.rmdir()
        except FileNotFoundError:
            continue  # never created
        except OSError:
            return  # not empty: it holds something, and so do its parents
