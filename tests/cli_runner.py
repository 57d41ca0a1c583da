"""Running a CLI's real ``main(argv)`` in the test process, as ``python -m`` would end it: fast enough for
table-driven bad-input tests (a subprocess per case costs seconds of imports)."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path

import torch


def tree(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


def run_in_process(main: Callable, argv: list[str], capfd) -> tuple[int, str, str]:
    """``main(argv)`` ended as the interpreter ends ``python -m``: (exit status, stdout, stderr). A warning
    that Python's default filters would print counts as stderr output; torch's thread count is restored."""
    threads = torch.get_num_threads()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            code = main(argv)
        except SystemExit as exc:
            code = exc.code
        finally:
            torch.set_num_threads(threads)
    out, err = capfd.readouterr()
    hidden_by_default = (DeprecationWarning, PendingDeprecationWarning, ImportWarning, ResourceWarning)
    err += "".join(warnings.formatwarning(w.message, w.category, w.filename, w.lineno, w.line)
                   for w in caught if not issubclass(w.category, hidden_by_default))
    if isinstance(code, str):  # SystemExit("error: ..."): the interpreter prints it and exits 1
        err, code = err + code + "\n", 1
    return 0 if code is None else code, out, err
