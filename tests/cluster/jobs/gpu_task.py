"""The fake cluster's stand-in workload: a task that asks for half a GPU, submitted as a Ray Job.

The head advertises no GPU, so the task can only run once the autoscaler has added a GPU worker.
Prints one JSON line: where the task ran and what the job saw.
"""

import importlib.util
import json
import os
import sys
import time

import ray


@ray.remote(num_gpus=0.5, num_cpus=1)
def on_a_gpu_node(hold_s: float) -> dict:
    ctx = ray.get_runtime_context()
    time.sleep(hold_s)
    return {"node_id": ctx.get_node_id(), "gpu_ids": ray.get_gpu_ids(),
            "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES")}


def main() -> None:
    hold_s = float(sys.argv[1]) if len(sys.argv) > 1 else 0.0
    ray.init(address="auto")
    head = ray.get_runtime_context().get_node_id()
    started = time.monotonic()
    where = ray.get(on_a_gpu_node.remote(hold_s))
    # The project is importable in the job: its working_dir is on the path (found, not imported:
    # importing torch is not this workload's business).
    spec = importlib.util.find_spec("search")
    project = os.path.dirname(os.path.dirname(spec.origin)) if spec and spec.origin else None
    print("GPU_TASK " + json.dumps({**where, "driver_node_id": head, "waited_s": time.monotonic() - started,
                                    "project": project, "pgpassword_set": bool(os.environ.get("PGPASSWORD")),
                                    "auth_mode": os.environ.get("RAY_AUTH_MODE")}), flush=True)


if __name__ == "__main__":
    main()
