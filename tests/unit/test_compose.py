"""compose.yaml, the central side of a deployment: valid against the compose-spec schema, one Redis with
persistence, users and TLS, a control worker, an authenticated Flower; no secret in an environment value."""

from __future__ import annotations

import json
import re
from importlib import resources
from pathlib import Path

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "compose.yaml"
# Secret values must come from files: a variable whose name says it holds one must be a *_FILE path.
SECRET_NAME = re.compile(r"KEY|PASSWORD|AUTH|TOKEN|URL$")


@pytest.fixture(scope="module")
def doc() -> dict[str, object]:
    return yaml.safe_load(COMPOSE.read_text())


@pytest.fixture(scope="module")
def services(doc) -> dict[str, dict[str, object]]:
    return doc["services"]


def compose_schema() -> dict[str, object]:
    """The compose-spec JSON schema as check-jsonschema vendors it (with its licence, beside it)."""
    vendor = resources.files("check_jsonschema.builtin_schemas.vendor")
    assert vendor.joinpath("licenses/LICENSE.compose-spec").is_file()
    return json.loads(vendor.joinpath("compose-spec.json").read_text())


def test_compose_file_is_valid_against_the_compose_spec_schema(doc) -> None:
    jsonschema.validate(doc, compose_schema())


def test_the_schema_check_catches_a_broken_compose_file(doc) -> None:
    broken = json.loads(json.dumps(doc))
    broken["services"]["redis"]["restart"] = ["always"]  # a list where the spec wants a string
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, compose_schema())


def test_the_central_side_is_redis_control_and_flower_and_no_node_worker(services) -> None:
    assert set(services) == {"redis", "control", "flower"}
    assert services["control"]["command"][:3] == ["kubeboot", "worker", "control"]
    for svc in services.values():
        assert "worker node" not in " ".join(map(str, svc.get("command", [])))


def test_redis_persists_requires_tls_with_client_certificates_and_loads_its_users(services) -> None:
    cmd = services["redis"]["command"]
    flags = dict(zip(cmd[1::2], cmd[2::2], strict=False))
    assert flags["--appendonly"] == "yes"
    assert flags["--port"] == "0"  # no clear-text listener at all
    assert flags["--tls-port"] == "6380" and flags["--tls-auth-clients"] == "yes"
    assert flags["--aclfile"] == "/run/secrets/redis_acl"
    assert "depends_on" not in services["redis"]


def test_every_secret_is_a_file_never_an_environment_value(services) -> None:
    for name, svc in services.items():
        for var, value in (svc.get("environment") or {}).items():
            if SECRET_NAME.search(var.removesuffix("_FILE")) and not var.endswith(("_FILE", "_DIR")):
                pytest.fail(f"service {name}: {var} holds a secret in the environment ({value!r})")
            if var.endswith("_FILE"):
                assert str(value).startswith("/run/secrets/"), (name, var)


def test_only_the_control_worker_holds_the_master_key_and_flower_authenticates(services) -> None:
    assert services["control"]["environment"]["KUBEBOOT_SECRET_KEY_FILE"] == "/run/secrets/master_key"
    assert "master_key" not in services["flower"]["secrets"]
    assert not any("SECRET_KEY" in v for v in services["flower"]["environment"])
    assert services["flower"]["environment"]["KUBEBOOT_FLOWER_BASIC_AUTH_FILE"] == "/run/secrets/flower_auth"
    assert services["flower"]["ports"] == ["127.0.0.1:5555:5555"]


def test_every_client_talks_tls_with_its_own_user_and_certificate(services) -> None:
    for name in ("control", "flower"):
        env = services[name]["environment"]
        assert env["KUBEBOOT_REDIS_URL_FILE"] == f"/run/secrets/{name}_redis_url"
        assert env["KUBEBOOT_REDIS_TLS_CERT_FILE"] == f"/run/secrets/{name}_tls_cert"
        assert env["KUBEBOOT_REDIS_TLS_CA_FILE"] == "/run/secrets/tls_ca"


def test_the_image_build_context_leaves_out_keys_state_and_the_demo() -> None:
    ignored = (ROOT / ".dockerignore").read_text().split()
    for pattern in (".kubeboot", ".venv", ".git", "**/*.key", "**/*.pem", "**/*.acl", "**/*.url"):
        assert pattern in ignored


def test_a_worker_app_can_forward_a_chain_to_any_node_queue_but_to_nothing_else() -> None:
    from kubeboot.config.settings import Settings
    from kubeboot.workers.celery_app import make_app

    app = make_app("redis://127.0.0.1:1/0", Settings())
    assert app.amqp.queues["node.sb1-cp1"].name == "node.sb1-cp1"
    for name in ("celery", "node.", "node.Bad_Name", "other"):
        with pytest.raises(KeyError):
            app.amqp.queues[name]
