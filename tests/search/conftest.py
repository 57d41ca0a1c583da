"""Fixtures of the search tests: the environment of CLI runs and a real `mlflow server`."""

from __future__ import annotations

import os
import subprocess
import time

import pytest

from search_helpers import PY, free_port, stop_process_group


@pytest.fixture(scope="session")
def search_env(data_root, tmp_path_factory) -> dict[str, str]:
    env = dict(os.environ)
    env["GAN_DATA_ROOT"] = str(data_root)
    env["GAN_EVAL_CACHE"] = str(tmp_path_factory.mktemp("eval-cache"))  # real statistics: computed once here
    env["PYTHONUNBUFFERED"] = "1"
    return env


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory, search_env):
    """A real `mlflow server` on 127.0.0.1 and a free port, for the duration of the module."""
    import requests

    root = tmp_path_factory.mktemp("mlflow-server")
    port = free_port()
    log = open(root / "server.log", "w")
    proc = subprocess.Popen(
        [PY, "-m", "mlflow", "server", "--backend-store-uri", f"sqlite:///{root / 'server.db'}",
         "--artifacts-destination", str(root / "artifacts"), "--host", "127.0.0.1", "--port", str(port),
         "--workers", "1"],
        stdout=log, stderr=subprocess.STDOUT, env=search_env, cwd=root, start_new_session=True)
    uri = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    try:
        while True:
            try:
                if requests.get(uri + "/health", timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"mlflow server did not start: {(root / 'server.log').read_text()[-2000:]}")
            time.sleep(1)
        yield {"uri": uri, "root": root}
    finally:
        stop_process_group(proc)
        log.close()


