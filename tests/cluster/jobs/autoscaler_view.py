"""What a driver on the head can learn about the node types the autoscaler may launch, before any
GPU node exists. Run as a Ray Job on a `ray up` cluster; prints one JSON line (AUTOSCALER_VIEW ...)."""

import json
import os
from pathlib import Path

import ray


def main() -> None:
    ray.init(address="auto")
    out: dict = {"cluster_resources": ray.cluster_resources()}
    from ray._private.state import state

    # 1. The cluster config the GCS holds for the autoscaler (KubeRay publishes one).
    try:
        cfg = state.get_cluster_config()
        out["gcs_cluster_config"] = None if cfg is None else [
            {"name": g.name, "resources": dict(g.resources), "max_count": g.max_count}
            for g in cfg.node_group_configs]
        out["get_max_resources_from_cluster_config"] = state.get_max_resources_from_cluster_config()
    except Exception as exc:  # noqa: BLE001
        out["gcs_cluster_config"] = f"error: {type(exc).__name__}: {exc}"
    # 2. The autoscaler v2 status (nodes, pending launches), through its SDK.
    try:
        from ray.autoscaler.v2.sdk import get_cluster_status

        status = get_cluster_status(ray.get_runtime_context().gcs_address)
        out["v2_status"] = {
            "active": [n.ray_node_type_name for n in status.active_nodes],
            "idle": [n.ray_node_type_name for n in status.idle_nodes],
            "pending_launches": [(p.ray_node_type_name, p.count) for p in status.pending_launches],
            "total_resources": status.total_resources(),
        }
    except Exception as exc:  # noqa: BLE001
        out["v2_status"] = f"error: {type(exc).__name__}: {exc}"
    # 3. The autoscaling config `ray up` wrote on the head (the driver of a Job runs on the head).
    bootstrap = Path(os.path.expanduser("~/ray_bootstrap_config.yaml"))
    if bootstrap.exists():
        cfg = json.loads(bootstrap.read_text())  # `ray up` writes it as JSON
        out["bootstrap_config_node_types"] = {
            name: {"resources": t.get("resources"), "max_workers": t.get("max_workers")}
            for name, t in cfg["available_node_types"].items()}
    else:
        out["bootstrap_config_node_types"] = None
    print("AUTOSCALER_VIEW " + json.dumps(out, default=str), flush=True)


if __name__ == "__main__":
    main()
