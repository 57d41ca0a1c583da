"""cluster.yaml, read as a file: valid for Ray's schema, locked down, stores outside the head, no code
sync, dependencies pinned to what pyproject.toml asks, and the fake-cluster twin in agreement with it.
Fast (no server); the launch itself is test_cluster_launch.py."""

from __future__ import annotations

import configparser
import json
import re
import shlex
import subprocess
import tomllib

import pytest
import yaml

import fake_cluster as fc

DOCS = fc.REPO / "docs" / "cluster.md"
TEXT = fc.CLUSTER_YAML.read_text()
DUMMY = {name: f"dummy-{name.lower()}" for name in fc.placeholders(TEXT)}
PG_PARAM = "/gan-refine-search/pg-password"
MLFLOW_PARAM = "/gan-refine-search/mlflow-password"
MLFLOW_USER = "admin"
PRIVATE_IP = "10.0.1.23"  # what HEAD_PRIVATE_IP stands for on a real head, in the checks below


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


def _mlflow_command(config) -> str:
    (cmd,) = [c for c in _commands(config) if "mlflow server" in c]
    return cmd


def _ray_start(config, key: str) -> str:
    (cmd,) = [c for c in config[key] if "ray start" in c]
    return cmd


def _mlflow_server_args(cmd: str) -> dict[str, str | None]:
    """The options of the `mlflow server` invocation in ``cmd``, as the shell passes them."""
    tokens = shlex.split(cmd[cmd.index("mlflow server"):].split(" > ", 1)[0])[2:]
    args: dict[str, str | None] = {}
    while tokens:
        flag = tokens.pop(0)
        assert flag.startswith("--"), (flag, cmd)
        args[flag] = tokens.pop(0) if tokens and not tokens[0].startswith("--") else None
    return args


def _ssm_reads(cmd: str) -> dict[str, str]:
    """Shell variable -> the SSM parameter assigned to it, each read stopping the command on failure."""
    reads = re.findall(r"\b([A-Z][A-Z0-9_]*)=\"\$\(python -c \"import boto3; print\(boto3\.client\('ssm', "
                       r"region_name='[^']+'\)\.get_parameter\(Name='([^']+)', WithDecryption=True\)"
                       r"\['Parameter'\]\['Value'\]\)\"\)\" \|\| exit 1;", cmd)
    assert len(reads) == cmd.count("get_parameter("), f"an SSM read not of the form `VAR=\"$(...)\" || exit 1;`: {cmd}"
    assert len(dict(reads)) == len(reads), cmd
    return dict(reads)


def _statements(cmd: str) -> list[str]:
    """``cmd`` split at the `;` outside quotes and command substitutions."""
    out, current, quote, depth = [], "", None, 0
    for i, ch in enumerate(cmd):
        if quote == "'":
            quote = None if ch == "'" else quote
        elif ch == "'" and quote is None:
            quote = "'"
        elif ch == '"' and depth == 0:
            quote = None if quote == '"' else '"'
        elif ch == "(" and (depth or cmd[i - 1:i] == "$"):
            depth += 1
        elif ch == ")" and depth:
            depth -= 1
        elif ch == ";" and quote is None and depth == 0:
            out.append(current.strip())
            current = ""
            continue
        current += ch
    return [s for s in out + [current.strip()] if s]


def _exports(cmd: str) -> dict[str, str | None]:
    """What the command's `export` statements export: name -> value given there (None: its earlier value)."""
    out: dict[str, str | None] = {}
    for statement in _statements(cmd):
        if statement.startswith("export "):
            for token in shlex.split(statement)[1:]:
                name, eq, value = token.partition("=")
                out[name] = value if eq else None
    return out


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


def test_mlflow_on_the_private_address_behind_basic_auth(config):
    """Reachable by the workers' trials, and only through a login: the basic-auth app, bound to the
    head's private address (never a wildcard), Host headers limited to that address and the loopback
    names of a port-forward."""
    from mlflow.server.security_utils import is_allowed_host_header

    cmd = _mlflow_command(config)
    args = _mlflow_server_args(cmd)
    assert args["--app-name"] == "basic-auth"
    assert args["--host"] == "$HEAD_PRIVATE_IP" and args["--port"] == "5000"
    hosts = args["--allowed-hosts"].split(",")
    assert hosts == ["$HEAD_PRIVATE_IP:5000", "localhost:*", "127.0.0.1:*"]
    assert "*" not in hosts
    for flag in ("--disable-security-middleware", "--cors-allowed-origins", "--dev", "--gunicorn-opts",
                 "--uvicorn-opts", "--static-prefix"):
        assert flag not in args, flag
    assert "0.0.0.0" not in TEXT and sum(c.count("--allowed-hosts") for c in _commands(config)) == 1
    # MLflow's own Host check, with the address filled in: the private address (what workers send),
    # a port-forward's loopback names; not another host, not a rebinding name.
    rendered = [h.replace("$HEAD_PRIVATE_IP", PRIVATE_IP) for h in hosts]
    for host, ok in ((f"{PRIVATE_IP}:5000", True), ("127.0.0.1:5000", True), ("localhost:15000", True),
                     ("10.0.1.99:5000", False), ("evil.example", False), (f"{PRIVATE_IP}.nip.io:5000", False)):
        assert is_allowed_host_header(rendered, host) is ok, host
    # the dashboard (and the Jobs API) stay on the head's loopback
    head_start = _ray_start(config, "head_start_ray_commands")
    assert "--dashboard-host=127.0.0.1" in head_start


def test_the_head_private_address_is_one_value(config):
    """Ray's node address, MLflow's bind address and the tracking URI every node gets are the same
    address, computed by one expression (the one the fake cluster replaces with 127.0.0.1)."""
    head_cmds = [c for c in config["head_start_ray_commands"] if "HEAD_PRIVATE_IP" in c]
    assert len(head_cmds) == 2  # Ray's start and MLflow's
    definitions = {fc.HEAD_IP_DEFINITION.search(c).group(0) for c in head_cmds}
    assert definitions == {"HEAD_PRIVATE_IP=\"$(python -c 'import ray.util; print(ray.util.get_node_ip_address())')\""}
    for cmd in head_cmds:
        assert fc.HEAD_IP_DEFINITION.search(cmd).end() < cmd.index("$HEAD_PRIVATE_IP")
        assert len(fc.HEAD_IP_DEFINITION.findall(cmd)) == 1
        assert f"{fc.HEAD_IP_DEFINITION.search(cmd).group(0)} || exit 1;" in cmd
    head_start = _ray_start(config, "head_start_ray_commands")
    assert '--node-ip-address="$HEAD_PRIVATE_IP"' in head_start
    assert _exports(head_start)["MLFLOW_TRACKING_URI"] == "http://$HEAD_PRIVATE_IP:5000"
    # workers: the head's address as the autoscaler gives it (the GCS address's host: Ray's node address)
    assert _exports(_ray_start(config, "worker_start_ray_commands"))["MLFLOW_TRACKING_URI"] == \
        "http://$RAY_HEAD_IP:5000"


def test_mlflow_users_in_postgresql_and_no_password_in_a_file(config, tmp_path):
    """The auth app's ini: written at start, mode 0600, users in their own PostgreSQL database, no
    password (the admin's comes from SSM through MLFLOW_AUTH_ADMIN_PASSWORD, read by MLflow)."""
    cmd = _mlflow_command(config)
    exports = _exports(cmd)
    assert exports["MLFLOW_AUTH_CONFIG_PATH"] == "$HOME/mlflow-auth.ini"
    assert _ssm_reads(cmd) == {"PGPASSWORD": PG_PARAM, "MLFLOW_AUTH_ADMIN_PASSWORD": MLFLOW_PARAM}
    assert {"PGPASSWORD", "MLFLOW_AUTH_ADMIN_PASSWORD"} <= {k for k, v in exports.items() if v is None}
    assert exports["MLFLOW_FLASK_SERVER_SECRET_KEY"] == \
        "$(python -c 'import secrets; print(secrets.token_hex(32))')"  # a fresh key, no stored secret
    (writer,) = re.findall(r'\(umask 077; printf [^()]*> "\$MLFLOW_AUTH_CONFIG_PATH"\) \|\| exit 1;', cmd)
    assert cmd.index(writer) < cmd.index("mlflow server")
    ini = tmp_path / "home" / "mlflow-auth.ini"
    ini.parent.mkdir()
    subprocess.run(["bash", "-c", f"export MLFLOW_AUTH_CONFIG_PATH={exports['MLFLOW_AUTH_CONFIG_PATH']}; {writer}"],
                   env={"HOME": str(ini.parent), "PATH": "/usr/bin:/bin"}, check=True)
    assert ini.stat().st_mode & 0o777 == 0o600
    parser = configparser.ConfigParser()
    parser.read(ini)
    # the keys mlflow.server.auth.config.read_auth_config reads
    assert dict(parser["mlflow"]) == {
        "default_permission": "READ",
        "database_uri": f"postgresql+psycopg://gan@{DUMMY['GAN_PG_ADDRESS']}/mlflow_auth",
        "admin_username": MLFLOW_USER}
    backend = exports["MLFLOW_BACKEND_STORE_URI"]
    assert backend.rsplit("/", 1)[0] == parser["mlflow"]["database_uri"].rsplit("/", 1)[0]  # same server ...
    assert backend.rsplit("/", 1)[1] != "mlflow_auth"  # ... its own database
    assert "admin_password" not in TEXT and "MLFLOW_AUTH_ADMIN_USERNAME" not in TEXT


def test_mlflow_login_from_ssm_on_every_node_and_the_database_password_on_the_head_only(config):
    """Each node reads its secrets from SSM at `ray start`, into its Ray processes' environment:
    the head (the driver) the database password and MLflow's login, a worker (the trials) MLflow's
    login only. MLflow's client sends MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD."""
    head = _ray_start(config, "head_start_ray_commands")
    worker = _ray_start(config, "worker_start_ray_commands")
    assert _ssm_reads(head) == {"PGPASSWORD": PG_PARAM, "MLFLOW_TRACKING_PASSWORD": MLFLOW_PARAM}
    assert _ssm_reads(worker) == {"MLFLOW_TRACKING_PASSWORD": MLFLOW_PARAM}
    assert "PGPASSWORD" not in worker
    for cmd, secrets in ((head, ("PGPASSWORD", "MLFLOW_TRACKING_PASSWORD")), (worker, ("MLFLOW_TRACKING_PASSWORD",))):
        exports = _exports(cmd)
        assert exports["MLFLOW_TRACKING_USERNAME"] == MLFLOW_USER
        for name in secrets:
            assert exports[name] is None  # exported by name: the value read from SSM, never written here
        statements = _statements(cmd)
        last_export = max(i for i, s in enumerate(statements) if s.startswith("export "))
        assert last_export < next(i for i, s in enumerate(statements) if s.startswith("ray start"))


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


def _grants(policy: dict) -> set[tuple[str, str]]:
    """(action, resource) pairs a policy allows."""
    out = set()
    for s in policy["Statement"]:
        assert s["Effect"] == "Allow"
        for action in [s["Action"]] if isinstance(s["Action"], str) else s["Action"]:
            for resource in [s["Resource"]] if isinstance(s["Resource"], str) else s["Resource"]:
                out.add((action, resource))
    return out


def _ssm_arn(name: str) -> str:
    return f"arn:aws:ssm:${{GAN_AWS_REGION}}:*:parameter{name}"


def test_docs_give_the_worker_policy_limited_to_the_bucket_and_the_one_parameter(config):
    policies = _policies_in_docs()
    worker = _grants(policies["worker-policy.json"])
    bucket = {"arn:aws:s3:::${GAN_BUCKET}", "arn:aws:s3:::${GAN_BUCKET}/*"}
    assert {r for _, r in worker} == bucket | {_ssm_arn(MLFLOW_PARAM)}
    assert {a for a, r in worker if r in bucket} <= {"s3:ListBucket", "s3:GetBucketLocation", "s3:GetObject",
                                                     "s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload"}
    assert {a for a, r in worker if r not in bucket} == {"ssm:GetParameter"}
    # exactly the parameters each node type's commands read
    worker_reads = {n for c in config["worker_start_ray_commands"] for n in _ssm_reads(c).values()}
    assert {r for a, r in worker if a.startswith("ssm:")} == {_ssm_arn(n) for n in worker_reads}
    head = _grants(policies["head-policy.json"])
    head_reads = {n for c in config["head_start_ray_commands"] for n in _ssm_reads(c).values()}
    assert {r for a, r in head if a.startswith("ssm:")} == {_ssm_arn(n) for n in head_reads} == \
        {_ssm_arn(PG_PARAM), _ssm_arn(MLFLOW_PARAM)}
    assert ("iam:PassRole", "arn:aws:iam::*:role/gan-refine-search-worker") in head
    assert not any("*" in a.split(":", 1)[1] and not a.startswith("ec2:Describe") for a, _ in head | worker)


def test_docs_security_group_admits_ssh_from_the_cidr_and_nothing_else_from_outside():
    """SSH from $SSH_CIDR; everything else (Ray's ports, MLflow's 5000) from the cluster's own group."""
    docs = DOCS.read_text().replace("\\\n", " ")
    rules = re.findall(r"aws ec2 authorize-security-group-ingress ([^\n]*)", docs)
    assert rules
    from_outside = [r for r in rules if "--cidr" in r]
    assert len(from_outside) == 1 and re.search(r'--protocol tcp --port 22 --cidr "\$SSH_CIDR"$', from_outside[0])
    cluster_rules = [r for r in rules if '--group-id "$GAN_SECURITY_GROUP_ID"' in r and r not in from_outside]
    assert cluster_rules and all(r.endswith('--source-group "$GAN_SECURITY_GROUP_ID"') for r in cluster_rules)
    assert "0.0.0.0/0" not in docs.replace("admits SSH from 0.0.0.0/0", "")


def test_the_study_state_lives_outside_the_head(config):
    mlflow = next(c for c in config["head_start_ray_commands"] if "mlflow server" in c)
    assert 'MLFLOW_BACKEND_STORE_URI="postgresql+psycopg://' in mlflow
    assert 'MLFLOW_ARTIFACTS_DESTINATION="s3://' in mlflow
    assert "sqlite" not in TEXT and "/home/ray/runs" not in TEXT and "mlartifacts" not in TEXT
    # the password comes from the environment of the processes, never a URI or a file
    assert re.search(r"postgresql\+psycopg://[^@/\s]+:[^@/\s]+@", TEXT) is None
    assert "PGPASSWORD=" in mlflow and "get_parameter" in mlflow
    assert "--default-artifact-root" not in mlflow and "--no-serve-artifacts" not in mlflow  # the proxy


def test_no_code_sync_and_no_secrets(config):
    assert "mlflow[auth]==" in " ".join(config["setup_commands"])  # the basic-auth app needs Flask-WTF
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
    import ray
    from packaging.requirements import Requirement

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
    # start commands: the same, ports and the head's private address (127.0.0.1) aside
    for key in ("head_start_ray_commands", "worker_start_ray_commands"):
        assert len(fake[key]) == len(config[key])
        for original, local in zip(config[key], fake[key], strict=True):
            assert local == fc.localize_start_commands([original], ports, head=False)[0]
            definition = fc.HEAD_IP_DEFINITION.search(original)
            replaceable = set(definition.group(0).split()) if definition else set()
            changed = set(original.split()) - set(local.split())
            assert all(tok in replaceable or re.search(r"\b(5000|6379|8076)\b", tok) for tok in changed), changed
            if definition:
                assert f"HEAD_PRIVATE_IP={fc.FAKE_HEAD_IP} || exit 1;" in local
    mlflow = _mlflow_command(fake)
    assert _mlflow_server_args(mlflow)["--host"] == "$HEAD_PRIVATE_IP"  # the same bind, to 127.0.0.1 here
    assert _mlflow_server_args(mlflow)["--allowed-hosts"] == \
        f"$HEAD_PRIVATE_IP:{ports['mlflow']},localhost:*,127.0.0.1:*"
    # a fake worker's raylet drops what only the head's `ray start` set
    assert fc.head_only_names(fake["head_start_ray_commands"]) >= {"PGPASSWORD", "MLFLOW_TRACKING_PASSWORD"}
    # and Ray accepts it (what `ray up` does for an external provider)
    from ray.autoscaler._private.util import prepare_config, validate_config

    validate_config(prepare_config(fake))
