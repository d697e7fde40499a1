"""cluster.yaml: valid for Ray's cluster launcher, GPU workers, project shipped, secure.

Offline: the config is filled with defaults as `ray up` does (``prepare_config``) and
checked with Ray's own ``validate_config``; the provider bootstrap that calls AWS is not
run.
"""

from __future__ import annotations

import copy
import ipaddress
import os
import re
import stat
import subprocess
from pathlib import Path

import pytest
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config

ROOT = Path(__file__).resolve().parents[1]
CLUSTER_YAML = ROOT / "cluster.yaml"
TOKEN_SCRIPT = ROOT / "scripts" / "make_ray_token.sh"
RAY_PORTS = (6379, 8265, 10001)  # GCS, dashboard / Jobs API, Ray client


@pytest.fixture(scope="module")
def raw() -> dict:
    return yaml.safe_load(CLUSTER_YAML.read_text())


@pytest.fixture(scope="module")
def config(raw) -> dict:
    """The config as `ray up` sees it before the provider bootstrap."""
    return prepare_config(copy.deepcopy(raw))


def _commands(config: dict, *keys: str) -> list[str]:
    return [c for k in keys for c in config.get(k) or []]


def _remote_project_path(config: dict) -> str:
    roots = [
        remote for remote, local in config["file_mounts"].items() if os.path.normpath(local) == "."
    ]
    assert roots, "file_mounts must map a remote folder to the repo root '.'"
    return roots[0]


def test_validates_with_rays_own_checks(config):
    validate_config(config)  # raises on a schema error
    assert config["provider"]["type"] == "aws"
    assert config["head_node_type"] in config["available_node_types"]
    assert not config.get("docker"), "the setup below assumes no container"


def test_head_is_cpu_and_a_worker_type_autoscales_with_gpus(config):
    types = config["available_node_types"]
    head = types[config["head_node_type"]]
    assert head["resources"].get("GPU", 0) == 0
    gpu_types = {
        name: t
        for name, t in types.items()
        if name != config["head_node_type"] and t["resources"].get("GPU", 0) >= 1
    }
    assert gpu_types, "at least one worker node type must declare GPU resources"
    for t in gpu_types.values():
        assert t["min_workers"] == 0 < t["max_workers"] <= config["max_workers"]
        assert t["resources"].get("CPU", 0) >= 1
        assert t["node_config"]["InstanceType"]


def test_project_is_synced_and_installed_on_every_node(config):
    remote = _remote_project_path(config)
    assert {".venv", ".git", "runs"} <= set(config["rsync_exclude"])
    # merge_setup_commands puts setup_commands ahead of head/worker setup commands.
    for key in ("head_setup_commands", "worker_setup_commands"):
        installs = [
            c
            for c in config[key]
            if "pip install" in c and re.search(rf"-e\s+{re.escape(remote)}/?(\s|$)", c)
        ]
        assert installs, f"{key}: no `pip install -e {remote}`"
    # Drivers started by `ray submit` run in a login shell: same Python, project folder.
    bashrc = " ".join(c for c in config["setup_commands"] if "~/.bashrc" in c)
    assert "venv/bin/activate" in bashrc and "cd ~/dlpipe" in bashrc
    assert remote.rstrip("/").endswith("/dlpipe")


def test_gpu_workers_get_gpu_tensorflow_and_head_gets_boto3(config):
    worker_only = config["worker_setup_commands"][len(config["setup_commands"]) :]
    assert any("tensorflow[and-cuda]" in c for c in worker_only)
    assert not any("tensorflow[and-cuda]" in c for c in config["head_setup_commands"])
    assert any("boto3" in c for c in config["head_setup_commands"])
    assert not any(
        "|| true" in c and "pip install" in c
        for c in _commands(config, "head_setup_commands", "worker_setup_commands")
    ), "install failures must stop the setup"


def test_token_auth_on_every_node(config):
    mounts = config["file_mounts"]
    token_remote = [
        r
        for r, local in mounts.items()
        if local == "~/.ray/auth_token" and r.endswith("/.ray/auth_token")
    ]
    assert token_remote, "the locally made token must be shipped via file_mounts"
    for key in ("head_start_ray_commands", "worker_start_ray_commands"):
        start = [c for c in config[key] if "ray start" in c]
        assert start, key
        for c in start:
            assert re.search(r"RAY_AUTH_MODE=token\b", c), f"{key}: {c}"
            assert "RAY_AUTH_TOKEN_PATH=$HOME/.ray/auth_token" in c
            assert c.index("RAY_AUTH_MODE") < c.index("ray start")
    assert any("RAY_AUTH_MODE=token" in c for c in config["setup_commands"]), (
        "drivers on the nodes (ray submit) need token mode too"
    )


def test_ray_ports_stay_private(config, raw):
    heads = [c for c in config["head_start_ray_commands"] if "ray start" in c]
    assert heads and all("--dashboard-host=127.0.0.1" in c for c in heads)
    text = CLUSTER_YAML.read_text()
    assert "0.0.0.0" not in re.sub(r"#.*", "", text)
    for c in _commands(config, "head_start_ray_commands", "worker_start_ray_commands"):
        assert "--ray-client-server-port" not in c and "--dashboard-port" not in c

    rules = config["provider"]["security_group"]["IpPermissions"]
    assert rules
    for rule in rules:
        cidrs = [r["CidrIp"] for r in rule.get("IpRanges", [])]
        cidrs += [r["CidrIpv6"] for r in rule.get("Ipv6Ranges", [])]
        lo, hi = rule.get("FromPort", -1), rule.get("ToPort", -1)
        everything = rule.get("IpProtocol") == "-1" or (lo, hi) == (-1, -1)
        for cidr in cidrs:
            net = ipaddress.ip_network(cidr, strict=False)
            assert net.prefixlen > 0, f"{cidr} opens {lo}-{hi} to the world"
            assert not everything, "all-ports rules only via intra-cluster group pairs"
            assert not any(lo <= port <= hi for port in RAY_PORTS), (lo, hi, cidr)
        if cidrs:  # only SSH comes from outside addresses
            assert (lo, hi) == (22, 22) and rule["IpProtocol"] == "tcp"
    assert any(r.get("FromPort") == 22 for r in rules), "SSH ingress must be set explicitly"


def test_no_credentials_or_token_in_yaml():
    text = CLUSTER_YAML.read_text()
    lowered = text.lower()
    for needle in (
        "aws_secret_access_key",
        "aws_access_key_id",
        "aws_session_token",
        "ray_auth_token=",
    ):
        assert needle not in lowered, needle
    assert not re.search(r"\bAKIA[0-9A-Z]{16}\b", text), "an AWS access key id"
    assert not re.search(r"\b[0-9a-f]{32,}\b", text), "a literal token-like hex string"


def test_token_script_makes_a_private_token(tmp_path):
    env = {**os.environ, "HOME": str(tmp_path)}

    def run(*a):
        return subprocess.run(
            ["bash", str(TOKEN_SCRIPT), *a], env=env, check=True, capture_output=True, text=True
        )

    out = run()
    token = tmp_path / ".ray" / "auth_token"
    value = token.read_text()
    assert re.fullmatch(r"[0-9a-f]{64}", value)
    assert value not in out.stdout + out.stderr, "the token must never be printed"
    assert stat.S_IMODE(token.stat().st_mode) == 0o600
    assert stat.S_IMODE(token.parent.stat().st_mode) == 0o700
    run()
    assert token.read_text() == value, "rerunning keeps the token"
    run("--rotate")
    assert token.read_text() != value and stat.S_IMODE(token.stat().st_mode) == 0o600
