"""cluster.yaml is a valid Ray autoscaler config (Ray's own schema and defaults) for the search."""

from __future__ import annotations

from pathlib import Path

import yaml
from ray.autoscaler._private.util import prepare_config, validate_config

CLUSTER = Path(__file__).resolve().parents[2] / "cluster.yaml"


def test_cluster_yaml_validates_against_rays_schema():
    config = prepare_config(yaml.safe_load(CLUSTER.read_text()))  # fills Ray's AWS defaults, as `ray up` does
    validate_config(config)
    types = config["available_node_types"]
    head = types[config["head_node_type"]]
    workers = [t for name, t in types.items() if name != config["head_node_type"]]
    assert config["provider"]["type"] == "aws"
    assert head["resources"]["GPU"] == 0  # the driver's node runs no trial
    assert workers and all(t["resources"]["GPU"] >= 1 for t in workers)
    assert any(t["min_workers"] >= 1 for t in workers)  # GPUs exist when --gpus-per-trial is checked
    assert "pip install -e /home/ray/gan-refine-search" in config["setup_commands"]
    assert config["file_mounts"]["/home/ray/gan-refine-search"] == "."
    text = CLUSTER.read_text().lower()
    for secret in ("aws_secret_access_key", "aws_access_key_id", "password", "token"):
        assert secret not in text
