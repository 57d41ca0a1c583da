"""Running a CLI's real ``main(argv)`` in the test process, as ``python -m`` would end it: fast enough for
table-driven bad-input tests (a subprocess per case costs seconds of imports)."""

from __future__ import annotations

import subprocess
import sys
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


def run_bad_input(module: str, main: Callable, argv: list[str], folder: Path, expected: str, *, in_subprocess: bool,
                  monkeypatch, capfd) -> None:
    """The bad-input contract, run in ``folder``: a non-zero exit, nothing on stdout, exactly one stderr
    line, ``error: ...`` containing ``expected``, and the folder's tree as it was. ``in_subprocess``
    runs ``python -m module`` for real (one case per CLI proves the console end to end); otherwise its
    ``main`` runs in this process."""
    before = tree(folder)
    if in_subprocess:
        proc = subprocess.run([sys.executable, "-m", module, *argv], cwd=folder, capture_output=True, text=True,
                              timeout=300)
        code, out, err = proc.returncode, proc.stdout, proc.stderr
    else:
        monkeypatch.chdir(folder)
        code, out, err = run_in_process(main, argv, capfd)
    lines = err.splitlines()
    assert code != 0 and out == ""
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert expected in lines[0]
    assert tree(folder) == before  # no output folder, no config, no temp files
