"""Fixtures of the search tests: the environment of CLI runs and a real `mlflow server`."""

from __future__ import annotations

import os

import pytest

from loopback_cluster import start_mlflow_server, stop_process_group


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
    root = tmp_path_factory.mktemp("mlflow-server")
    proc, uri = start_mlflow_server(root, search_env)
    try:
        yield {"uri": uri, "root": root}
    finally:
        stop_process_group(proc)
