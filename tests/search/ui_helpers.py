"""Helpers for the UI tests: web servers on loopback, and Debian's Chromium driven by Playwright.

The browser is the system's (``apt-get install chromium``), never one Playwright downloads: Playwright's
Python package brings its driver only, and ``launch_persistent_context(executable_path=CHROMIUM)`` runs
Chromium headless on a fresh profile folder with the flags below.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import struct
import subprocess
import sys
from pathlib import Path

from loopback_cluster import (  # stop_process_group: re-exported to the tests
    free_port,
    start_http_server,
)

BIN = Path(sys.executable).parent  # the venv's console scripts: mlflow, optuna-dashboard
CHROMIUM = "/usr/bin/chromium"  # Debian's package
# headless on a machine with no display and no outside network: without the background-networking
# flags Chromium keeps calling home (updates, safe browsing, sync) and floods the closed network
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-dev-shm-usage"]
# no usage pings from the servers, and no background job runner: `mlflow server` otherwise starts
# seven huey consumer processes for GenAI jobs (scorers, trace analysis) that a training study never uses
QUIET_ENV = {"MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true", "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}


def browser_unavailable() -> str | None:
    """None when a browser test can run here, else why not (the test's skip reason)."""
    if importlib.util.find_spec("playwright") is None:
        return "Playwright is not installed (pip install -e '.[test]')"
    if not os.access(CHROMIUM, os.X_OK):
        return f"Debian's Chromium is not installed at {CHROMIUM} (apt-get install chromium; .ci/run does it as root)"
    return None


def start_server(argv: list[str], *, ready_url: str, log: Path, env: dict[str, str], cwd: Path,
                 timeout: float = 180) -> subprocess.Popen:
    """A UI server started quiet (no telemetry, no GenAI job runners) once ``ready_url`` answers 200."""
    return start_http_server(argv, ready_url=ready_url, log=log, env={**env, **QUIET_ENV}, cwd=cwd, timeout=timeout)


def profile_pids(profile: Path) -> list[int]:
    """Processes whose command line names this (unique, fresh) Chromium profile folder."""
    needle = str(profile).encode()
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                if needle in (entry / "cmdline").read_bytes():
                    out.append(int(entry.name))
            except OSError:
                continue
    return out


def kill_pids(pids: list[int]) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def launch_chromium(playwright, profile: Path):
    """Debian's Chromium, headless, on the fresh profile folder ``profile``: a persistent context."""
    return playwright.chromium.launch_persistent_context(
        str(profile), executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS,
        viewport={"width": 1400, "height": 900}, chromium_sandbox=False)


def png_size(path: Path) -> tuple[int, int]:
    """(width, height) from a PNG file's IHDR chunk."""
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return struct.unpack(">II", head[16:24])


def start_dashboard(storage: str, root: Path, env: dict[str, str]) -> tuple[subprocess.Popen, str]:
    """`optuna-dashboard STORAGE --host 127.0.0.1 --port FREE` (docs/ui.md); returns (process, base URL)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = start_server([str(BIN / "optuna-dashboard"), storage, "--host", "127.0.0.1", "--port", str(port)],
                        ready_url=url + "/api/meta", log=root / f"optuna-dashboard-{port}.log", env=env, cwd=root)
    return proc, url


def dashboard_study(url: str, name: str) -> tuple[dict, dict]:
    """The study's entry in optuna-dashboard's GET /api/studies, and its GET /api/studies/<id> detail
    (the routes of optuna_dashboard/_app.py; trials serialized by its _serializer.py)."""
    import requests

    listed = requests.get(f"{url}/api/studies", timeout=30)
    listed.raise_for_status()
    (summary,) = [s for s in listed.json()["study_summaries"] if s["study_name"] == name]
    detail = requests.get(f"{url}/api/studies/{summary['study_id']}", timeout=30)
    detail.raise_for_status()
    return summary, detail.json()
