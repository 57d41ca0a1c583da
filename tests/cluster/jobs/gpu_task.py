"""The fake cluster's stand-in workload: a task that asks for half a GPU, submitted as a Ray Job.

The head advertises no GPU, so the task can only run once the autoscaler has added a GPU worker.
Prints one JSON line: where the task ran and what the job saw (the driver's and the task's MLflow
login and AWS region included: each node's start command reads them at start, from SSM and from the
instance metadata service).
"""

import hashlib
import importlib.util
import json
import os
import sys
import time

import ray


def mlflow_login(expected_sha256: str | None) -> dict:
    """MLflow's address and login in this process's environment (the password compared with the
    expected one's SHA-256, never shown)."""
    password = os.environ.get("MLFLOW_TRACKING_PASSWORD")
    return {"uri": os.environ.get("MLFLOW_TRACKING_URI"), "user": os.environ.get("MLFLOW_TRACKING_USERNAME"),
            "password_matches": bool(password) and (
                expected_sha256 is None or hashlib.sha256(password.encode()).hexdigest() == expected_sha256)}


@ray.remote(num_gpus=0.5, num_cpus=1)
def on_a_gpu_node(hold_s: float, expected_sha256: str | None) -> dict:
    ctx = ray.get_runtime_context()
    time.sleep(hold_s)
    return {"node_id": ctx.get_node_id(), "gpu_ids": ray.get_gpu_ids(),
            "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
            "task_mlflow": mlflow_login(expected_sha256), "task_pgpassword_set": bool(os.environ.get("PGPASSWORD")),
            "task_region": os.environ.get("AWS_DEFAULT_REGION")}


def main() -> None:
    hold_s = float(sys.argv[1]) if len(sys.argv) > 1 else 0.0
    expected_sha256 = sys.argv[2] if len(sys.argv) > 2 else None  # of MLflow's password, if known
    ray.init(address="auto")
    head = ray.get_runtime_context().get_node_id()
    started = time.monotonic()
    where = ray.get(on_a_gpu_node.remote(hold_s, expected_sha256))
    # The project is importable in the job: its working_dir is on the path (found, not imported:
    # importing torch is not this workload's business).
    spec = importlib.util.find_spec("search")
    project = os.path.dirname(os.path.dirname(spec.origin)) if spec and spec.origin else None
    print("GPU_TASK " + json.dumps({**where, "driver_node_id": head, "waited_s": time.monotonic() - started,
                                    "project": project, "pgpassword_set": bool(os.environ.get("PGPASSWORD")),
                                    "auth_mode": os.environ.get("RAY_AUTH_MODE"),
                                    "driver_mlflow": mlflow_login(expected_sha256),
                                    "driver_region": os.environ.get("AWS_DEFAULT_REGION")}), flush=True)


if __name__ == "__main__":
    main()
