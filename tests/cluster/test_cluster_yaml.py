"""cluster.yaml, read as a file: valid for Ray's schema, locked down, stores outside the head, no code
sync, dependencies pinned to what pyproject.toml asks, and the fake-cluster twin in agreement with it.
Fast (no server); the launch itself is test_cluster_launch.py."""

from __future__ import annotations

import json
import re
import tomllib

import pytest
import yaml

import fake_cluster as fc

DOCS = fc.REPO / "docs" / "cluster.md"
TEXT = fc.CLUSTER_YAML.read_text()
DUMMY = {name: f"dummy-{name.lower()}" for name in fc.placeholders(TEXT)}


@pytest.fixture(scope="module")
def config() -> dict:
    return fc.load_cluster_yaml(DUMMY)


def _worker_types(config):
    return {n: t for n, t in config["available_node_types"].items() if n != config["head_node_type"]}


def _head(config):
    return config["available_node_types"][config["head_node_type"]]


def _commands(config) -> list[str]:
    keys = ("initialization_commands", "setup_commands", "head_setup_commands", "worker_setup_commands",
            "head_start_ray_commands", "worker_start_ray_commands")
    return [c for k in keys for c in config.get(k, [])]


def test_validates_against_rays_schema(config):
    from ray.autoscaler._private.util import prepare_config, validate_config

    prepared = prepare_config(config)  # Ray's AWS defaults, as `ray up` fills them
    validate_config(prepared)
    assert prepared["provider"]["type"] == "aws"


def test_placeholders_are_deployment_settings_named_in_the_docs():
    names = fc.placeholders(TEXT)
    assert names and all(n.startswith("GAN_") for n in names)
    assert set(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", TEXT)) == names
    docs = DOCS.read_text()
    for name in names:
        assert f"export {name}=" in docs, f"docs/cluster.md does not say how to set {name}"


def test_gpu_workers_start_from_zero(config):
    assert _head(config)["resources"]["GPU"] == 0  # no trial on the driver's node
    workers = _worker_types(config)
    assert workers and all(t["resources"]["GPU"] >= 1 for t in workers.values())
    assert all(t.get("min_workers", 0) == 0 for t in workers.values())  # nothing paid for before trials ask


def test_mlflow_and_dashboard_listen_on_localhost_only(config):
    commands = _commands(config)
    mlflow = [c for c in commands if "mlflow server" in c]
    assert len(mlflow) == 1 and "--host 127.0.0.1" in mlflow[0]
    assert "--allowed-hosts" not in TEXT and "0.0.0.0" not in TEXT
    assert "--disable-security-middleware" not in TEXT
    head_start = [c for c in config["head_start_ray_commands"] if "ray start --head" in c]
    assert len(head_start) == 1 and "--dashboard-host=127.0.0.1" in head_start[0]


def test_ray_token_authentication_on_every_node(config):
    from ray._raylet import AuthenticationMode

    assert AuthenticationMode.TOKEN  # the installed Ray has token authentication
    starts = [c for c in config["head_start_ray_commands"] + config["worker_start_ray_commands"] if "ray start" in c]
    assert len(starts) == 2
    for cmd in starts:
        assert cmd.index("export RAY_AUTH_MODE=token") < cmd.index("ray start")
    # the token reaches every node at Ray's default path, from the user's own token file
    assert config["file_mounts"] == {"~/.ray/auth_token": "~/.ray/auth_token"}


def test_network_and_iam_locked_down(config):
    provider = config["provider"]
    assert provider["use_internal_ips"] is True and provider.get("use_external_head_ip") is True
    assert "security_group" not in provider  # Ray's own group would admit SSH from 0.0.0.0/0
    for name, node_type in config["available_node_types"].items():
        nc = node_type["node_config"]
        assert nc["IamInstanceProfile"]["Arn"].startswith("dummy-"), name  # a profile of ours, on every type
        (iface,) = nc["NetworkInterfaces"]
        assert iface["Groups"] == [DUMMY["GAN_SECURITY_GROUP_ID"]], name  # our group: SSH from $SSH_CIDR only
        assert "SecurityGroupIds" not in nc and "SubnetIds" not in nc
    for name, node_type in _worker_types(config).items():
        nc = node_type["node_config"]
        assert nc["NetworkInterfaces"][0]["AssociatePublicIpAddress"] is False, name
        assert nc["IamInstanceProfile"] != _head(config)["node_config"]["IamInstanceProfile"], name


def _policies_in_docs() -> dict[str, dict]:
    """Each policy file docs/cluster.md names, with the first JSON block after the name."""
    docs = DOCS.read_text()
    found = {}
    for name, body in re.findall(r"`([a-z]+-policy\.json)`.*?```json\n(.*?)```", docs, flags=re.S):
        found[name] = json.loads(body)
    return found


def test_docs_give_the_worker_policy_limited_to_one_bucket_and_ssh_from_a_cidr():
    docs = DOCS.read_text()
    policies = _policies_in_docs()
    worker = policies["worker-policy.json"]
    resources = {r for s in worker["Statement"] for r in ([s["Resource"]] if isinstance(s["Resource"], str)
                                                         else s["Resource"])}
    assert resources == {"arn:aws:s3:::${GAN_BUCKET}", "arn:aws:s3:::${GAN_BUCKET}/*"}
    actions = {a for s in worker["Statement"] for a in s["Action"]}
    assert all(a.startswith("s3:") for a in actions) and "s3:*" not in actions
    head = policies["head-policy.json"]
    assert any("iam:PassRole" in s["Action"] for s in head["Statement"])
    assert any(s.get("Resource") == "arn:aws:ssm:${GAN_AWS_REGION}:*:parameter/gan-refine-search/pg-password"
               for s in head["Statement"])
    assert re.search(r"authorize-security-group-ingress [^\n]*--port 22 --cidr \"\$SSH_CIDR\"", docs)


def test_the_study_state_lives_outside_the_head(config):
    mlflow = next(c for c in config["head_start_ray_commands"] if "mlflow server" in c)
    assert 'MLFLOW_BACKEND_STORE_URI="postgresql+psycopg://' in mlflow
    assert 'MLFLOW_ARTIFACTS_DESTINATION="s3://' in mlflow
    assert "sqlite" not in TEXT and "/home/ray/runs" not in TEXT and "mlartifacts" not in TEXT
    # the password comes from the environment of the processes, never a URI or a file
    assert re.search(r"postgresql\+psycopg://[^@/\s]+:[^@/\s]+@", TEXT) is None
    assert "PGPASSWORD=" in mlflow and "get_parameter" in mlflow


def test_no_code_sync_and_no_secrets(config):
    assert set(config["file_mounts"].values()) == {"~/.ray/auth_token"}  # not the checkout, not the data
    assert "rsync_exclude" not in config and "rsync_filter" not in config
    assert "gan-refine-search:" not in yaml.safe_dump(config["file_mounts"])
    for pattern in (r"AKIA[0-9A-Z]{16}", r"aws_secret_access_key", r"aws_access_key_id", r"BEGIN [A-Z ]*PRIVATE KEY",
                    r"password\s*[:=]\s*(?!\"\$\()\S"):
        assert re.search(pattern, TEXT, flags=re.I) is None, pattern


def _pins(config) -> dict[str, str]:
    (cmd,) = [c for c in config["setup_commands"] if "pip install" in c]
    pins = {}
    for token in cmd.split():
        if "==" in token:
            name, version = token.split("==")
            pins[re.sub(r"\[.*\]", "", name).lower()] = version
    return pins


def test_setup_pins_the_projects_dependencies(config):
    from packaging.requirements import Requirement

    import ray

    pins = _pins(config)
    project = tomllib.loads((fc.REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    for spec in map(Requirement, project):
        if spec.name == "ray":  # comes with the image, which must match the client's Ray
            assert config["docker"]["image"].startswith(f"rayproject/ray:{ray.__version__}-py311"), config["docker"]
            assert spec.specifier.contains(ray.__version__)
            continue
        assert spec.name.lower() in pins, f"setup_commands do not install {spec.name}"
        assert spec.specifier.contains(pins[spec.name.lower()]), (spec, pins[spec.name.lower()])
    assert {"psycopg", "boto3"} <= set(pins)  # PostgreSQL driver (Optuna, MLflow), SSM and S3 client


def test_the_fake_cluster_config_agrees_with_cluster_yaml(config, tmp_path):
    ports = fc.free_ports()
    fake = fc.derive_test_config(config, state_dir=tmp_path, ports=ports, node_env={}, cluster_name="t")
    assert fake["provider"]["type"] == "external" and fake["provider"]["module"] == fc.PROVIDER_MODULE
    assert fake["head_node_type"] == config["head_node_type"]
    assert fake["available_node_types"].keys() == config["available_node_types"].keys()
    for name, node_type in config["available_node_types"].items():
        twin = fake["available_node_types"][name]
        assert twin["resources"] == node_type["resources"], name
        assert twin.get("min_workers") == node_type.get("min_workers"), name
        assert twin.get("max_workers") == node_type.get("max_workers"), name
    for key in ("initialization_commands", "setup_commands", "head_setup_commands", "worker_setup_commands",
                "file_mounts", "max_workers", "idle_timeout_minutes", "upscaling_speed"):
        assert fake[key] == config[key], key
    # start commands: the same, ports aside
    for key in ("head_start_ray_commands", "worker_start_ray_commands"):
        assert len(fake[key]) == len(config[key])
        for original, local in zip(config[key], fake[key]):
            assert local == fc.localize_start_commands([original], ports, head=False)[0]
            assert set(original.split()) - set(local.split()) <= {
                "--port=6379", "--object-manager-port=8076", "--address=$RAY_HEAD_IP:6379", "5000"}
    # and Ray accepts it (what `ray up` does for an external provider)
    from ray.autoscaler._private.util import prepare_config, validate_config

    validate_config(prepare_config(fake))
