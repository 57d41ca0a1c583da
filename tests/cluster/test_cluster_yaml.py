"""cluster.yaml, read as `ray up` reads it (a YAML parser, nothing filled in): valid for Ray's own
validation; resolved by Ray's own AWS bootstrap against the one-time setup of docs/cluster.md (in
moto), with no account's ID in the file; locked down; each node's settings read at start (region
from the instance metadata service, the rest from SSM); stores outside the head; no code sync;
dependencies pinned to what pyproject.toml asks; docs/cluster.md and the README in agreement with it;
the fake cluster's config is cluster.yaml with only its provider and node configs replaced. No Ray
cluster here; the launch itself is test_cluster_launch.py."""

from __future__ import annotations

import configparser
import copy
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib

import pytest
import yaml

import cluster_services as cs
import fake_cluster as fc

DOCS = fc.REPO / "docs" / "cluster.md"
README = fc.REPO / "README.md"
TEXT = fc.CLUSTER_YAML.read_text()
PG_PARAM = "/gan-refine-search/pg-password"
MLFLOW_PARAM = "/gan-refine-search/mlflow-password"
PG_ADDRESS_PARAM = "/gan-refine-search/pg-address"
BUCKET_PARAM = "/gan-refine-search/bucket"
MLFLOW_USER = "admin"
PRIVATE_IP = "10.0.1.23"  # what HEAD_PRIVATE_IP stands for on a real head, in the checks below
LAUNCH_TEMPLATES = {"head": "gan-refine-search-head", "gpu_worker": "gan-refine-search-worker"}
PROFILES = LAUNCH_TEMPLATES  # instance profiles of the same names
HEAD_IP = "HEAD_PRIVATE_IP=\"$(python -c 'import ray.util; print(ray.util.get_node_ip_address())')\" || exit 1;"


@pytest.fixture(scope="module")
def config() -> dict:
    """cluster.yaml as `ray up` loads it."""
    return yaml.safe_load(TEXT)


def _worker_types(config):
    return {n: t for n, t in config["available_node_types"].items() if n != config["head_node_type"]}


def _head(config):
    return config["available_node_types"][config["head_node_type"]]


def _commands(config) -> list[str]:
    keys = ("initialization_commands", "setup_commands", "head_setup_commands", "worker_setup_commands",
            "head_start_ray_commands", "worker_start_ray_commands")
    return [c for k in keys for c in config.get(k, [])]


def _start_commands(config) -> list[str]:
    """The start commands that do something on a node (not `ray stop`)."""
    return [c for c in config["head_start_ray_commands"] + config["worker_start_ray_commands"] if c != "ray stop"]


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


def _statements(cmd: str) -> list[str]:
    """``cmd`` split at the `;` outside quotes, command substitutions, subshells and braces."""
    out, current, quote, depth = [], "", None, 0
    for i, ch in enumerate(cmd):
        if quote == "'":
            quote = None if ch == "'" else quote
        elif ch == "'" and quote is None:
            quote = "'"
        elif ch == '"' and depth == 0:
            quote = None if quote == '"' else '"'
        elif ch == "(" and (depth or quote is None or cmd[i - 1:i] == "$"):
            depth += 1
        elif ch == "{" and quote is None:
            depth += 1
        elif depth and (ch == ")" or ch == "}" and quote is None):
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


SSM_READ = re.compile(r"^([A-Z][A-Z0-9_]*)=\"\$\(ssm (/gan-refine-search/[a-z-]+)\)\" \|\| exit 1$")


def _ssm_reads(cmd: str) -> dict[str, str]:
    """Shell variable -> the SSM parameter assigned to it, each read stopping the command on failure."""
    reads = [m.groups() for s in _statements(cmd) if (m := SSM_READ.match(s))]
    assert len(reads) == cmd.count("$(ssm "), f"an SSM read not of the form `VAR=\"$(ssm NAME)\" || exit 1`: {cmd}"
    assert len(dict(reads)) == len(reads), cmd
    return dict(reads)


def _preamble(cmd: str) -> list[str]:
    """The statements every start command begins with (after `ulimit`): the region, its export, `ssm`."""
    statements = [s for s in _statements(cmd) if not s.startswith("ulimit ")]
    return statements[:3]


# --- the file as `ray up` reads it -----------------------------------------------------------------


def test_plain_yaml_with_nothing_to_fill_in(config):
    """`ray up cluster.yaml` as written: YAML, no template placeholder, no account's IDs."""
    assert config["cluster_name"] == "gan-refine-search" and config["provider"]["type"] == "aws"
    assert "${" not in TEXT and "{{" not in TEXT  # no ${VAR} to fill in, no Jinja
    assert not re.search(r"\bGAN_[A-Z_]+\b", TEXT)  # the old placeholders' names
    ids = re.findall(r"\b(?:subnet|sg|vpc|ami|lt|igw|nat|rtb|eni|eipalloc)-[0-9a-f]{8,17}\b|arn:aws:|\b\d{12}\b", TEXT)
    assert ids == []
    # what differs per deployment is named only by the product's fixed names
    for name, node_type in config["available_node_types"].items():
        nc = node_type["node_config"]
        assert nc["LaunchTemplate"] == {"LaunchTemplateName": LAUNCH_TEMPLATES[name], "Version": "$Latest"}, name
        assert nc["IamInstanceProfile"] == {"Name": PROFILES[name]}, name


def test_rays_own_validation_accepts_it(config):
    """What `ray up` does before it calls AWS: Ray's defaults for `type: aws`, then its schema."""
    from ray.autoscaler._private.util import prepare_config, validate_config

    prepared = prepare_config(copy.deepcopy(config))
    validate_config(prepared)
    assert prepared["provider"] == config["provider"]  # taken as written
    assert prepared["provider"]["region"]  # Ray's AWS provider has no other source for it
    assert prepared["available_node_types"].keys() == config["available_node_types"].keys()
    # Ray merges setup_commands into each node kind's own
    assert prepared["head_setup_commands"] == config["setup_commands"] == prepared["worker_setup_commands"]
    # and refuses what it does not know: the check is live
    broken = copy.deepcopy(config)
    broken["available_node_types"]["gpu_worker"]["resource"] = {"GPU": 1}
    with pytest.raises(Exception, match="resource"):
        validate_config(prepare_config(broken))


# --- Ray's AWS bootstrap and launch, against the one-time setup in moto ------------------------------


def _one_time_setup(region: str) -> dict[str, str]:
    """docs/cluster.md's AWS setup, with boto3 (in moto): the default VPC's public subnet for the head,
    a private subnet for the workers, the cluster's group (SSH from one CIDR, all from itself), the two
    launch templates, the two roles and instance profiles. Returns the IDs made."""
    import boto3

    ec2 = boto3.client("ec2", region_name=region)
    vpc = ec2.describe_vpcs(Filters=[{"Name": "is-default", "Values": ["true"]}])["Vpcs"][0]["VpcId"]
    public = ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [vpc]},
                                           {"Name": "default-for-az", "Values": ["true"]}])["Subnets"][0]
    private = ec2.create_subnet(VpcId=vpc, CidrBlock="172.31.128.0/20",
                                AvailabilityZone=public["AvailabilityZone"])["Subnet"]
    sg = ec2.create_security_group(GroupName="gan-refine-search", Description="gan-refine-search cluster",
                                   VpcId=vpc)["GroupId"]
    ec2.authorize_security_group_ingress(GroupId=sg, IpProtocol="tcp", FromPort=22, ToPort=22,
                                         CidrIp="203.0.113.7/32")
    ec2.authorize_security_group_ingress(GroupId=sg, IpPermissions=[{"IpProtocol": "-1",
                                                                     "UserIdGroupPairs": [{"GroupId": sg}]}])
    for name, subnet, public_ip in ((LAUNCH_TEMPLATES["head"], public["SubnetId"], True),
                                    (LAUNCH_TEMPLATES["gpu_worker"], private["SubnetId"], False)):
        ec2.create_launch_template(LaunchTemplateName=name, LaunchTemplateData={"NetworkInterfaces": [
            {"DeviceIndex": 0, "SubnetId": subnet, "Groups": [sg], "AssociatePublicIpAddress": public_ip}]})
    iam = boto3.client("iam", region_name=region)
    trust = json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}]})
    for name in PROFILES.values():
        iam.create_role(RoleName=name, AssumeRolePolicyDocument=trust)
        iam.create_instance_profile(InstanceProfileName=name)
        iam.add_role_to_instance_profile(InstanceProfileName=name, RoleName=name)
    return {"vpc": vpc, "public": public["SubnetId"], "private": private["SubnetId"], "sg": sg}


def _clear_ray_aws_caches() -> None:
    from ray.autoscaler._private.aws import config as aws_config
    from ray.autoscaler._private.aws import utils as aws_utils

    aws_utils.resource_cache.cache_clear()
    aws_utils.client_cache.cache_clear()
    aws_config._get_subnets_or_die.cache_clear()


def _dummy_aws(monkeypatch, home, **extra: str) -> None:
    """Only dummy AWS settings in this process's environment (none of the user's), and a HOME of the
    test's own (Ray writes the key pair it creates to ~/.ssh), for the test's duration."""
    for key in list(os.environ):
        if key.startswith("AWS_"):
            monkeypatch.delenv(key)
    for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "HOME": str(home),
                       **extra}.items():
        monkeypatch.setenv(key, value)


@pytest.fixture
def mock_aws_env(monkeypatch, tmp_path):
    """moto in this process (every boto3 client of this process talks to it), Ray's AWS caches empty."""
    moto = pytest.importorskip("moto")
    _dummy_aws(monkeypatch, tmp_path)
    _clear_ray_aws_caches()
    try:
        with moto.mock_aws():
            yield
    finally:
        _clear_ray_aws_caches()


def _bootstrap_and_launch(config: dict) -> tuple[dict, dict[str, dict]]:
    """What `ray up` does on AWS with cluster.yaml: Ray's bootstrap (subnets, groups, key pair, image
    filled in), then one instance of each node type through Ray's AWS node provider, as the head and
    the autoscaler launch them. Returns the bootstrapped config and each node type's instance."""
    import boto3
    from ray.autoscaler._private.aws.config import bootstrap_aws
    from ray.autoscaler._private.aws.node_provider import AWSNodeProvider
    from ray.autoscaler._private.util import prepare_config
    from ray.autoscaler.tags import TAG_RAY_NODE_KIND, TAG_RAY_USER_NODE_TYPE

    boot = bootstrap_aws(prepare_config(copy.deepcopy(config)))
    provider = AWSNodeProvider(boot["provider"], boot["cluster_name"])
    ec2 = boto3.client("ec2", region_name=config["provider"]["region"])
    instances = {}
    for name, node_type in boot["available_node_types"].items():
        kind = "head" if name == boot["head_node_type"] else "worker"
        provider.create_node(copy.deepcopy(node_type["node_config"]),
                             {TAG_RAY_NODE_KIND: kind, TAG_RAY_USER_NODE_TYPE: name}, 1)
        (reservation,) = [r for r in ec2.describe_instances(Filters=[
            {"Name": f"tag:{TAG_RAY_USER_NODE_TYPE}", "Values": [name]}])["Reservations"]]
        (instances[name],) = reservation["Instances"]
    return boot, instances


def test_rays_aws_bootstrap_finds_the_one_time_setup_and_launches_locked_down(config, mock_aws_env):
    """`ray up` on AWS, as far as EC2 goes: each node type gets its launch template's subnet and the
    cluster's group (Ray creates no group and opens nothing), Ray's own key pair and image; a worker
    launches in the private subnet with no public IP, as a spot instance, with the worker profile;
    the head in the public subnet with one; both IMDSv2 only."""
    import boto3

    region = config["provider"]["region"]
    made = _one_time_setup(region)
    ec2 = boto3.client("ec2", region_name=region)
    groups_before = ec2.describe_security_groups()["SecurityGroups"]
    boot, instances = _bootstrap_and_launch(config)

    subnets = {"head": made["public"], "gpu_worker": made["private"]}
    for name, node_type in boot["available_node_types"].items():
        nc = node_type["node_config"]
        assert nc["SubnetIds"] == [subnets[name]] and nc["SecurityGroupIds"] == [made["sg"]], name
        assert nc["KeyName"] == f"ray-autoscaler_{region}" and nc["ImageId"].startswith("ami-"), name
    assert ec2.describe_security_groups()["SecurityGroups"] == groups_before  # no group made, no rule added
    worker, head = instances["gpu_worker"], instances["head"]
    assert worker["SubnetId"] == made["private"] and "PublicIpAddress" not in worker, worker
    assert worker["InstanceLifecycle"] == "spot"
    assert head["SubnetId"] == made["public"] and head.get("PublicIpAddress"), head
    for name, instance in instances.items():
        assert instance["IamInstanceProfile"]["Arn"].endswith(f":instance-profile/{PROFILES[name]}"), name
        assert [g["GroupId"] for g in instance["NetworkInterfaces"][0]["Groups"]] == [made["sg"]], name
        assert instance["MetadataOptions"]["HttpTokens"] == "required", name
        assert instance["InstanceType"] == config["available_node_types"][name]["node_config"]["InstanceType"]


def test_without_the_launch_templates_ray_up_stops(config, mock_aws_env):
    """Fail closed: without the one-time setup, Ray does not fall back to its defaults (any subnet,
    a group of its own that admits SSH from anywhere): it stops before launching anything."""
    import boto3

    region = config["provider"]["region"]
    with pytest.raises(Exception, match="(?i)launch ?template"):
        _bootstrap_and_launch(config)
    ec2 = boto3.client("ec2", region_name=region)
    assert ec2.describe_instances()["Reservations"] == []
    assert [g["GroupName"] for g in ec2.describe_security_groups()["SecurityGroups"]] == ["default"]


@pytest.mark.slow  # ~30 s: some thirty aws CLI calls
def test_the_docs_one_time_setup_runs_as_written(config, tmp_path, monkeypatch):
    """docs/cluster.md's one-time setup, its bash blocks run as written with the aws CLI against a
    moto server; then Ray's bootstrap and launch on cluster.yaml find everything they need, and the
    SSM parameters the nodes read are there."""
    import boto3

    if shutil.which("aws") is None:
        pytest.skip("the aws CLI is not installed (pip install awscli)")
    pytest.importorskip("moto.server", reason="moto[server] is not installed (pip install 'moto[server]')")
    docs = DOCS.read_text()
    once = docs[docs.index("## Once: the AWS side"):docs.index("## Every time")]
    script = "set -euo pipefail\n" + "\n".join(_bash_blocks(once))
    moto = cs.start_moto_s3()
    try:
        _dummy_aws(monkeypatch, tmp_path, AWS_ENDPOINT_URL=moto.endpoint)
        done = subprocess.run(["bash", "-c", script], env=dict(os.environ), cwd=tmp_path, capture_output=True,
                              text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
        _clear_ray_aws_caches()
        try:
            _, instances = _bootstrap_and_launch(config)
        finally:
            _clear_ray_aws_caches()
        assert "PublicIpAddress" not in instances["gpu_worker"] and instances["head"].get("PublicIpAddress")
        assert instances["gpu_worker"]["SubnetId"] != instances["head"]["SubnetId"]
        ssm = boto3.client("ssm", region_name=config["provider"]["region"])
        params = {p["Name"]: p["Type"] for p in ssm.describe_parameters()["Parameters"]}
        assert params == {PG_PARAM: "SecureString", MLFLOW_PARAM: "SecureString", PG_ADDRESS_PARAM: "String",
                          BUCKET_PARAM: "String"}
    finally:
        moto.stop()


# --- what the nodes run -----------------------------------------------------------------------------


def test_gpu_workers_start_from_zero(config):
    assert _head(config)["resources"]["GPU"] == 0  # no trial on the driver's node
    workers = _worker_types(config)
    assert workers and all(t["resources"]["GPU"] >= 1 for t in workers.values())
    assert all(t.get("min_workers", 0) == 0 for t in workers.values())  # nothing paid for before trials ask


def test_every_start_command_reads_its_region_from_the_metadata_service_first(config):
    """Each node asks IMDS for its own region (nothing in the file names it for them), exports it for
    everything it runs, and defines `ssm`, the same way on every node, before any other statement."""
    preambles = {tuple(_preamble(c)) for c in _start_commands(config)}
    assert len(preambles) == 1
    region, export, ssm = preambles.pop()
    assert re.fullmatch(r'AWS_DEFAULT_REGION="\$\(python -c \'[^\']*IMDSRegionProvider[^\']*\'\)" \|\| exit 1',
                        region), region
    assert export == "export AWS_DEFAULT_REGION"
    assert ssm.startswith("ssm() { python -c ") and "get_parameter(Name=sys.argv[1], WithDecryption=True)" in ssm
    assert "region_name" not in TEXT  # no region given to a client: the exported one


def test_a_node_reads_its_region_and_settings_at_start(config, moto_s3_server):
    """The statements every start command reads with, run as written against moto's SSM and an IMDSv2
    stand-in: the region from the metadata service (with a token), each parameter's value; a command
    stops (exit 1) when the metadata service gives no region or a parameter is missing."""
    import boto3

    region = "eu-north-1"
    imds = cs.start_instance_metadata(region)
    try:
        ssm = boto3.client("ssm", endpoint_url=moto_s3_server.endpoint, region_name=region,
                           aws_access_key_id="testing", aws_secret_access_key="testing")
        values = {PG_PARAM: "pg s3cret'\"$x", MLFLOW_PARAM: "ml-s3cret", PG_ADDRESS_PARAM: "db.internal:5432",
                  BUCKET_PARAM: "a-bucket"}
        for name, value in values.items():
            ssm.put_parameter(Name=name, Value=value, Type="SecureString", Overwrite=True)
        node_env = {"PATH": f"{fc.Path(fc.PY).parent}:/usr/bin:/bin", **cs.node_aws_env(moto_s3_server, imds)}
        for cmd in _start_commands(config):
            reads = _ssm_reads(cmd)
            reading = [s for s in _statements(cmd) if s in _preamble(cmd) or SSM_READ.match(s)]
            show = 'printf "%s\\n" "$AWS_DEFAULT_REGION"' + "".join(f' "${v}"' for v in reads)
            done = subprocess.run(["bash", "-c", "; ".join(reading + [show])], env=node_env, capture_output=True,
                                  text=True, timeout=120)
            assert done.returncode == 0, done.stderr
            assert done.stdout.splitlines() == [region, *(values[p] for p in reads.values())], cmd
        reads = [r for r in imds.requests if r[0] == "GET"]
        assert reads and all(with_token for _, _, with_token in reads)  # IMDSv2
        # no region from the metadata service, or a parameter missing: the command stops
        cmd = _ray_start(config, "worker_start_ray_commands")
        reading = [s for s in _statements(cmd) if s in _preamble(cmd) or SSM_READ.match(s)] + ["echo started"]
        for env in ({**node_env, "AWS_EC2_METADATA_SERVICE_ENDPOINT": "http://127.0.0.1:9/"},
                    {**node_env, "AWS_EC2_METADATA_DISABLED": "true"}):
            done = subprocess.run(["bash", "-c", "; ".join(reading)], env=env, capture_output=True, text=True,
                                  timeout=120)
            assert done.returncode == 1 and "started" not in done.stdout, done.stderr
        ssm.delete_parameter(Name=MLFLOW_PARAM)
        done = subprocess.run(["bash", "-c", "; ".join(reading)], env=node_env, capture_output=True, text=True,
                              timeout=120)
        assert done.returncode == 1 and "started" not in done.stdout and "ParameterNotFound" in done.stderr
    finally:
        imds.stop()


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
    address, computed by one expression, Ray's own choice of the node's address."""
    head_cmds = [c for c in config["head_start_ray_commands"] if "HEAD_PRIVATE_IP" in c]
    assert len(head_cmds) == 2  # Ray's start and MLflow's
    for cmd in head_cmds:
        assert cmd.count("HEAD_PRIVATE_IP=") == 1 and HEAD_IP in cmd
        assert cmd.index(HEAD_IP) + len(HEAD_IP) < cmd.index("$HEAD_PRIVATE_IP")
    head_start = _ray_start(config, "head_start_ray_commands")
    assert '--node-ip-address="$HEAD_PRIVATE_IP"' in head_start
    assert _exports(head_start)["MLFLOW_TRACKING_URI"] == "http://$HEAD_PRIVATE_IP:5000"
    # workers: the head's address as the autoscaler gives it (the GCS address's host: Ray's node address)
    assert _exports(_ray_start(config, "worker_start_ray_commands"))["MLFLOW_TRACKING_URI"] == \
        "http://$RAY_HEAD_IP:5000"


def test_mlflow_users_in_postgresql_and_no_password_in_a_file(config, tmp_path):
    """The auth app's ini: written at start, mode 0600, users in their own PostgreSQL database (its
    address from SSM), no password (the admin's comes from SSM through MLFLOW_AUTH_ADMIN_PASSWORD)."""
    cmd = _mlflow_command(config)
    exports = _exports(cmd)
    assert exports["MLFLOW_AUTH_CONFIG_PATH"] == "$HOME/mlflow-auth.ini"
    assert _ssm_reads(cmd) == {"PG_ADDRESS": PG_ADDRESS_PARAM, "BUCKET": BUCKET_PARAM, "PGPASSWORD": PG_PARAM,
                               "MLFLOW_AUTH_ADMIN_PASSWORD": MLFLOW_PARAM}
    assert {"PGPASSWORD", "MLFLOW_AUTH_ADMIN_PASSWORD"} <= {k for k, v in exports.items() if v is None}
    assert exports["MLFLOW_FLASK_SERVER_SECRET_KEY"] == \
        "$(python -c 'import secrets; print(secrets.token_hex(32))')"  # a fresh key, no stored secret
    (writer,) = [s for s in _statements(cmd) if s.startswith("(umask 077; printf ")]
    assert writer.endswith('> "$MLFLOW_AUTH_CONFIG_PATH") || exit 1')
    assert cmd.index(writer) < cmd.index("mlflow server")
    ini = tmp_path / "home" / "mlflow-auth.ini"
    ini.parent.mkdir()
    subprocess.run(["bash", "-c", f"export MLFLOW_AUTH_CONFIG_PATH={exports['MLFLOW_AUTH_CONFIG_PATH']}; {writer}"],
                   env={"HOME": str(ini.parent), "PATH": "/usr/bin:/bin", "PG_ADDRESS": "db.internal:5432"},
                   check=True)
    assert ini.stat().st_mode & 0o777 == 0o600
    parser = configparser.ConfigParser()
    parser.read(ini)
    # the keys mlflow.server.auth.config.read_auth_config reads
    assert dict(parser["mlflow"]) == {
        "default_permission": "READ",
        "database_uri": "postgresql+psycopg://gan@db.internal:5432/mlflow_auth",
        "admin_username": MLFLOW_USER}
    backend = exports["MLFLOW_BACKEND_STORE_URI"]
    assert backend == "postgresql+psycopg://gan@$PG_ADDRESS/mlflow"  # the same server ...
    assert parser["mlflow"]["database_uri"].rsplit("/", 1)[1] == "mlflow_auth"  # ... its own database
    assert "admin_password" not in TEXT and "MLFLOW_AUTH_ADMIN_USERNAME" not in TEXT


def test_the_head_creates_the_databases_it_needs(config, postgres_server):
    """The MLflow command's database step, run as written twice on an empty PostgreSQL server: the
    databases of the stores (Optuna's, MLflow's runs, MLflow's users) exist after it, and a second
    start changes nothing. It runs before `mlflow server` and stops the command when it fails."""
    cmd = _mlflow_command(config)
    (create,) = [s for s in _statements(cmd) if "CREATE DATABASE" in s]
    assert create.endswith(' "postgresql://gan@$PG_ADDRESS/postgres" || exit 1')
    assert cmd.index(create) < cmd.index("mlflow server")
    wanted = set(re.findall(r'"(\w+)"', re.search(r"for d in \(([^)]*)\)", create).group(1)))
    assert wanted == {"optuna", "mlflow", "mlflow_auth"}  # Optuna's (the driver's --storage), MLflow's two
    assert set(re.findall(r"postgresql\+psycopg://gan@\$PG_ADDRESS/(\w+)", cmd)) <= wanted
    with postgres_server.connect() as conn:
        for name in wanted:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
    env = {"PATH": f"{fc.Path(fc.PY).parent}:/usr/bin:/bin", "PGPASSWORD": postgres_server.password,
           "PG_ADDRESS": f"{postgres_server.host}:{postgres_server.port}"}
    assert postgres_server.user == "gan"  # cluster.yaml's user
    for _ in range(2):
        done = subprocess.run(["bash", "-c", create], env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        with postgres_server.connect() as conn:
            assert wanted <= {r[0] for r in conn.execute("SELECT datname FROM pg_database")}
    done = subprocess.run(["bash", "-c", create], env={**env, "PGPASSWORD": "wrong"}, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 1


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
    """Every `ray start` exports the RAY_AUTH_MODE value that Ray itself reads as token mode (asked of
    the installed Ray, in a fresh process, next to a value it does not read so)."""
    starts = [c for c in config["head_start_ray_commands"] + config["worker_start_ray_commands"] if "ray start" in c]
    assert len(starts) == 2
    modes = set()
    for cmd in starts:
        assert cmd.index("export RAY_AUTH_MODE=") < cmd.index("ray start")
        modes.add(_exports(cmd)["RAY_AUTH_MODE"])
    assert len(modes) == 1, modes  # the same on every node
    (mode,) = modes
    probe = ("from ray._raylet import AuthenticationMode, get_authentication_mode; "
             "print(get_authentication_mode() == AuthenticationMode.TOKEN)")
    seen = {}
    for value in (mode, "disabled"):
        done = subprocess.run([sys.executable, "-c", probe], env={"PATH": "/usr/bin:/bin", "RAY_AUTH_MODE": value},
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        seen[value] = done.stdout.strip()
    assert seen == {mode: "True", "disabled": "False"}
    # the token reaches every node at Ray's default path, from the user's own token file
    assert config["file_mounts"] == {"~/.ray/auth_token": "~/.ray/auth_token"}


def test_network_and_iam_locked_down(config):
    """No network or IAM resource of Ray's own making: the subnets and the group come from the setup's
    launch templates (Ray's default group would admit SSH from 0.0.0.0/0), each node type has its own
    instance profile, IMDSv2 only, workers on spot. What the templates hold is checked in moto above
    and against docs/cluster.md below."""
    provider = config["provider"]
    assert provider["use_internal_ips"] is True and provider.get("use_external_head_ip") is True
    assert "security_group" not in provider and "key_pair" not in provider
    for name, node_type in config["available_node_types"].items():
        nc = node_type["node_config"]
        assert not {"SubnetId", "SubnetIds", "SecurityGroupIds", "NetworkInterfaces", "KeyName"} & set(nc), name
        assert nc["MetadataOptions"]["HttpTokens"] == "required", name
    head_profile = _head(config)["node_config"]["IamInstanceProfile"]
    for name, node_type in _worker_types(config).items():
        nc = node_type["node_config"]
        assert nc["IamInstanceProfile"] != head_profile, name
        assert nc["LaunchTemplate"] != _head(config)["node_config"]["LaunchTemplate"], name
        assert nc["InstanceMarketOptions"]["MarketType"] == "spot", name


def test_the_study_state_lives_outside_the_head(config):
    mlflow = _mlflow_command(config)
    exports = _exports(mlflow)
    assert exports["MLFLOW_BACKEND_STORE_URI"].startswith("postgresql+psycopg://gan@$PG_ADDRESS/")
    assert exports["MLFLOW_ARTIFACTS_DESTINATION"] == "s3://$BUCKET/gan-refine-search/mlflow"
    assert "sqlite" not in TEXT and "/home/ray/runs" not in TEXT and "mlartifacts" not in TEXT
    # the password comes from the environment of the processes, never a URI or a file
    assert re.search(r"postgresql(\+psycopg)?://[^@/\s]+:[^@/\s]+@", TEXT) is None
    assert _ssm_reads(mlflow)["PGPASSWORD"] == PG_PARAM
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


# --- docs/cluster.md and the README ------------------------------------------------------------------


def _policies_in_docs() -> dict[str, dict]:
    """Each policy file docs/cluster.md writes (`cat > NAME-policy.json <<EOF`), with the setup's
    shell variables given stand-in values."""
    found = {}
    for name, body in re.findall(r"cat > ([a-z]+-policy\.json) <<EOF\n(.*?)\nEOF\n", DOCS.read_text(), flags=re.S):
        found[name] = json.loads(body.replace("$GAN_BUCKET", "BUCKET"))
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


def _ssm_arn(config, name: str) -> str:
    return f"arn:aws:ssm:{config['provider']['region']}:*:parameter{name}"


def test_docs_give_the_worker_policy_limited_to_the_bucket_and_the_one_parameter(config):
    policies = _policies_in_docs()
    assert set(policies) == {"worker-policy.json", "head-policy.json"}
    worker = _grants(policies["worker-policy.json"])
    bucket = {"arn:aws:s3:::BUCKET", "arn:aws:s3:::BUCKET/*"}
    assert {r for _, r in worker} == bucket | {_ssm_arn(config, MLFLOW_PARAM)}
    assert {a for a, r in worker if r in bucket} <= {"s3:ListBucket", "s3:GetBucketLocation", "s3:GetObject",
                                                     "s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload"}
    assert {a for a, r in worker if r not in bucket} == {"ssm:GetParameter"}
    # exactly the parameters each node type's commands read
    worker_reads = {n for c in config["worker_start_ray_commands"] for n in _ssm_reads(c).values()}
    assert {r for a, r in worker if a.startswith("ssm:")} == {_ssm_arn(config, n) for n in worker_reads}
    head = _grants(policies["head-policy.json"])
    head_reads = {n for c in config["head_start_ray_commands"] for n in _ssm_reads(c).values()}
    assert {r for a, r in head if a.startswith("ssm:")} == {_ssm_arn(config, n) for n in head_reads} == \
        {_ssm_arn(config, n) for n in (PG_PARAM, MLFLOW_PARAM, PG_ADDRESS_PARAM, BUCKET_PARAM)}
    assert ("iam:PassRole", f"arn:aws:iam::*:role/{PROFILES['gpu_worker']}") in head
    assert not any("*" in a.split(":", 1)[1] and not a.startswith("ec2:Describe") for a, _ in head | worker)


def test_docs_security_group_admits_ssh_from_the_cidr_and_nothing_else_from_outside():
    """SSH from $SSH_CIDR; everything else (Ray's ports, MLflow's 5000) from the cluster's own group;
    the database's group admits 5432 from the cluster's group only."""
    docs = DOCS.read_text().replace("\\\n", " ")
    rules = re.findall(r"aws ec2 authorize-security-group-ingress ([^\n]*)", docs)
    assert rules
    from_outside = [r for r in rules if "--cidr" in r]
    assert len(from_outside) == 1 and re.search(r'--group-id "\$SG_ID" --protocol tcp --port 22 --cidr "\$SSH_CIDR"$',
                                                from_outside[0])
    inside = [r for r in rules if r not in from_outside]
    assert inside and all(r.endswith('--source-group "$SG_ID"') for r in inside)
    assert '--group-name gan-refine-search --description' in docs


def test_docs_launch_templates_are_the_ones_cluster_yaml_names(config):
    """The one-time setup makes each launch template cluster.yaml names: one network interface in the
    cluster's group, a public IP for the head's, none for the workers' (in the private subnet)."""
    docs = DOCS.read_text().replace("\\\n", " ")
    made = dict(re.findall(r"aws ec2 create-launch-template --launch-template-name (\S+) +--launch-template-data +"
                           r"\"NetworkInterfaces=\[\{([^}]*)\}\]\"", docs))
    assert set(made) == set(LAUNCH_TEMPLATES.values())
    for name, node_type in config["available_node_types"].items():
        fields = dict(f.split("=", 1) for f in made[node_type["node_config"]["LaunchTemplate"]["LaunchTemplateName"]]
                      .replace("[$SG_ID]", "$SG_ID").split(","))
        assert fields["DeviceIndex"] == "0" and fields["Groups"] == "$SG_ID", name
        public = name == config["head_node_type"]
        assert fields["AssociatePublicIpAddress"] == ("true" if public else "false"), name
        assert fields["SubnetId"] == ("$HEAD_SUBNET_ID" if public else "$WORKER_SUBNET_ID"), name
    # the setup's region is cluster.yaml's, and so is every later aws command's
    region = config["provider"]["region"]
    assert f"\nexport AWS_DEFAULT_REGION={region} " in docs
    later = docs[docs.index("## Every time"):]
    calls = [c for block in _bash_blocks(later) for c in re.findall(r"\baws \S+ \S+", block)]
    assert calls and all(c == f"aws --region {region}" for c in calls), calls
    # the SSM parameters the setup puts are exactly those the nodes read
    put = set(re.findall(r"aws ssm put-parameter --name (\S+)", docs))
    reads = {n for c in _start_commands(config) for n in _ssm_reads(c).values()}
    assert put == reads == {PG_PARAM, MLFLOW_PARAM, PG_ADDRESS_PARAM, BUCKET_PARAM}


def _bash_blocks(text: str) -> list[str]:
    return re.findall(r"```bash\n(.*?)```", text, flags=re.S)


def test_docs_and_readme_launch_with_ray_up_cluster_yaml_as_written():
    """After the one-time setup, the first command is `ray up cluster.yaml`: no copy of the file, no
    rendering step, anywhere."""
    docs = DOCS.read_text()
    every_time = docs[docs.index("## Every time"):]
    first = _bash_blocks(every_time)[0].splitlines()[0]
    assert re.match(r"ray up cluster\.yaml( --yes)?\s+#", first), first
    before = docs[:docs.index("## Every time")]
    commands = [line.strip() for block in _bash_blocks(before) for line in block.splitlines()]
    assert not [c for c in commands if c.startswith("ray ")]  # nothing before it but the setup
    readme = README.read_text()
    assert "ray up cluster.yaml" in readme
    for text in (docs, readme, TEXT):
        for rendering in ("gan-cluster.yaml", "envsubst", "re.sub(", "sed -i"):
            assert rendering not in text, rendering
    for block in _bash_blocks(every_time) + _bash_blocks(readme):
        for line in block.splitlines():
            if line.startswith("ray ") and "cluster" in line.split("#")[0] and ".yaml" in line:
                assert " cluster.yaml" in line, line  # every `ray` command on the cluster takes the file itself


# --- the fake cluster's config ------------------------------------------------------------------------


def test_the_fake_cluster_config_is_cluster_yaml_with_provider_and_node_configs_replaced(config, tmp_path):
    """test_cluster_launch.py's config: cluster.yaml as Ray fills it for `type: aws` (its own
    fillout_defaults), only `provider` and each node type's `node_config` replaced; Ray accepts it."""
    from ray.autoscaler._private.util import fillout_defaults, prepare_config, validate_config

    fake = fc.fake_config(config, state_dir=tmp_path, node_env={"X": "1"})
    expected = fillout_defaults(copy.deepcopy(config))
    assert fake.keys() == expected.keys()
    for key in expected:
        if key not in ("provider", "available_node_types"):
            assert fake[key] == expected[key], key
    assert fake["available_node_types"].keys() == config["available_node_types"].keys()
    for name, node_type in config["available_node_types"].items():
        twin = fake["available_node_types"][name]
        assert twin["node_config"] == {}, name
        assert {k: v for k, v in twin.items() if k != "node_config"} == \
            {k: v for k, v in node_type.items() if k != "node_config"}, name
    for key in ("setup_commands", "head_start_ray_commands", "worker_start_ray_commands", "file_mounts", "docker"):
        assert fake[key] == config[key], key  # as written
    assert fake["provider"]["type"] == "external" and fake["provider"]["module"] == fc.PROVIDER_MODULE
    assert fake["provider"]["gcs_address"] == f"{fc.FAKE_NODE_IP}:{fc.head_start_port(config)}"
    assert fake["provider"]["node_env"] == {"X": "1"}
    assert config["provider"]["type"] == "aws"  # the loaded file is untouched
    validate_config(prepare_config(fake))  # what `ray up` does for an external provider
    # a fake worker's raylet drops what only the head's `ray start` set
    assert fc.head_only_names(fake["head_start_ray_commands"]) >= {"PGPASSWORD", "MLFLOW_TRACKING_PASSWORD"}
