"""kubeboot deploy: the node worker's systemd unit and environment file, keys as files, the Redis users,
and Flower refusing to listen beyond loopback without authentication."""

from __future__ import annotations

import configparser
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from kubeboot.workers.redis_acl import acl_text, rules, user_url


def kubeboot(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "kubeboot.workers.cli", *args], capture_output=True, text=True,
                          timeout=60, env=env, check=False)


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("KUBEBOOT_")}
    return {**base, "KUBEBOOT_STATE_DIR": str(tmp_path / "state")}


def test_the_systemd_unit_passes_systemd_analyze_verify(tmp_path: Path, env) -> None:
    unit = tmp_path / "kubeboot-node.service"
    done = kubeboot("deploy", "print-systemd-unit", "--kubeboot", sys.executable, "--out", str(unit), env=env)
    assert done.returncode == 0, done.stderr
    analyze = shutil.which("systemd-analyze")
    if analyze:  # Debian's systemd package (in the machine image); the parse below runs either way
        verified = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True, check=False)
        assert (verified.returncode, verified.stderr) == (0, ""), verified.stderr
    parsed = configparser.ConfigParser(strict=False, interpolation=None)
    parsed.optionxform = str  # type: ignore[assignment,method-assign]
    parsed.read(unit)
    service = parsed["Service"]
    assert service["ExecStart"] == f"{sys.executable} worker node --id ${{KUBEBOOT_NODE_ID}} --root / --kubelet systemd"
    assert service["EnvironmentFile"] == "/etc/kubeboot/kubeboot-node.env"
    assert (service["User"], service["Restart"], service["UMask"]) == ("root", "always", "0077")
    assert parsed["Install"]["WantedBy"] == "multi-user.target"


def test_systemd_analyze_verify_catches_a_broken_unit(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if not analyze:
        pytest.fail("systemd-analyze not found: install Debian's systemd package")
    unit = tmp_path / "broken.service"
    unit.write_text("[Service]\nExecStart=/nonexistent/kubeboot worker node\nBogus=1\n")
    verified = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True, check=False)
    assert "Bogus" in verified.stderr and "/nonexistent/kubeboot" in verified.stderr


def test_the_environment_file_names_files_for_every_secret(env) -> None:
    done = kubeboot("deploy", "print-env", "--id", "cp1", "--redis", "redis.example:6380", env=env)
    assert done.returncode == 0, done.stderr
    values = dict(line.split("=", 1) for line in done.stdout.splitlines() if line and not line.startswith("#"))
    assert values["KUBEBOOT_NODE_ID"] == "cp1"
    for secret in ("KUBEBOOT_REDIS_URL", "KUBEBOOT_SECRET_KEY", "KUBEBOOT_REDIS_TLS_KEY"):
        assert secret not in values
    assert values["KUBEBOOT_REDIS_URL_FILE"].startswith("/etc/kubeboot/")
    assert values["KUBEBOOT_NODE_KEY_FILE"] == "/etc/kubeboot/node.key"
    assert "KUBEBOOT_SECRET_KEY_FILE" not in values  # a node holds no master key


def test_node_key_register_node_and_control_public_key_make_the_pins(tmp_path: Path, env) -> None:
    key_file = tmp_path / "node" / "node.key"
    made = kubeboot("deploy", "node-key", "--id", "w1", "--out", str(key_file), env=env)
    assert made.returncode == 0, made.stderr
    assert made.stdout.startswith("kubeboot-node-pub v1 w1 ")
    assert oct(key_file.stat().st_mode & 0o777) == "0o600"
    again = kubeboot("deploy", "node-key", "--id", "w1", "--out", str(key_file), env=env)
    assert again.stdout == made.stdout  # kept, not replaced
    pinned = kubeboot("deploy", "register-node", made.stdout.strip(), env=env)
    assert pinned.returncode == 0, pinned.stderr
    assert (tmp_path / "state/keys/nodes/w1.pub").read_text() == made.stdout
    control = kubeboot("deploy", "control-public-key", env=env)
    assert control.stdout.startswith("kubeboot-control-pub v1 ")
    assert kubeboot("deploy", "control-public-key", env=env).stdout == control.stdout  # one master key


def test_a_public_key_that_is_not_one_is_refused_with_one_line(env) -> None:
    done = kubeboot("deploy", "register-node", "kubeboot-node-pub v1 w1 bm90LWEta2V5", env=env)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "not a" in done.stderr


@pytest.mark.parametrize("address", ["0.0.0.0", "10.0.0.5", "", "flower.example", "::"])
def test_flower_refuses_to_listen_beyond_loopback_without_authentication(address: str, env) -> None:
    done = kubeboot("flower", "--address", address, env=env)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1
    assert "--basic-auth" in done.stderr and f"--address {address}" in done.stderr


def test_flower_on_loopback_or_with_authentication_is_not_refused() -> None:
    from kubeboot.workers.cli_workers import is_loopback

    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("")


def test_the_acl_file_turns_default_off_and_stores_password_hashes_only() -> None:
    text = acl_text([("control", "control", "pw-control", ""), ("node-cp1", "node", "pw-node", "cp1")])
    assert text.splitlines()[0].startswith("user default off")
    assert "pw-control" not in text and "pw-node" not in text
    assert "~node.cp1 " in rules("node", "cp1") and "~node.*" not in rules("node", "cp1")
    assert "&*" not in rules("node", "cp1") and "-@all" in rules("flower")
    assert user_url("rediss://redis.example:6380", "node-cp1", "a/b") == "rediss://node-cp1:a%2Fb@redis.example:6380/0"


def test_redis_acl_writes_the_users_and_one_private_url_file_each(tmp_path: Path, env) -> None:
    out = tmp_path / "secrets"
    done = kubeboot("deploy", "redis-acl", "--dir", str(out), "--redis", "rediss://redis.example:6380",
                    "--node", "cp1", "--node", "w1", env=env)
    assert done.returncode == 0, done.stderr
    users = [line.split()[1] for line in (out / "users.acl").read_text().splitlines()]
    assert users == ["default", "control", "flower", "node-cp1", "node-w1"]
    url = (out / "node-cp1.url").read_text()
    assert url.startswith("rediss://node-cp1:") and oct((out / "node-cp1.url").stat().st_mode & 0o777) == "0o600"
    kubeboot("deploy", "redis-acl", "--dir", str(out), "--redis", "rediss://redis.example:6380", "--node", "cp1",
             env=env)
    assert (out / "node-cp1.url").read_text() == url  # passwords kept across runs
