"""tasks.trust: task tokens, run metadata signatures, sealing to a reader, key files, the node's journal."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from kubeboot.config.errors import ConfigError
from kubeboot.config.settings import Settings
from kubeboot.tasks.state.secrets import SecretError
from kubeboot.tasks.trust import seal
from kubeboot.tasks.trust.journal import Journal
from kubeboot.tasks.trust.keys import ControlKeys, ControlPublic, NodeKey, Pins, read_node_key, write_node_key
from kubeboot.tasks.trust.tokens import SKEW, Refused, Signer, TaskToken, sign_meta, verify_meta

KEYS = ControlKeys(bytes(range(32)))
CLAIMS = {"run": "r-1", "cluster": "c1", "node": "cp1", "queue": "node.cp1", "task": "kubeboot.init.certs.ca",
          "digest": "d" * 64, "iat": 1000.0, "exp": 4600.0}


# What the worker knows of a task without the token: its message (task, run, node), its run's metadata.
EXPECTED = {k: CLAIMS[k] for k in ("task", "run", "node", "cluster", "digest")}


def test_a_token_verifies_with_the_control_public_key_for_the_task_its_message_names() -> None:
    text = TaskToken(**CLAIMS).sign(KEYS.signing)  # type: ignore[arg-type]
    assert text.startswith("kb2:node.cp1:1000.0:4600.0:") and len(text) < 120  # it carries no claim twice
    assert TaskToken.verify(text, KEYS.public.verify, now=2000.0, **EXPECTED) == TaskToken(**CLAIMS)  # type: ignore[arg-type]


@pytest.mark.parametrize(("change", "message"), [
    (lambda t: t.replace(":4600.0:", ":9600.0:"), "does not verify"),
    (lambda t: t.replace("node.cp1", "node.cp2"), "does not verify"),
    (lambda t: TaskToken(**CLAIMS).sign(ControlKeys(bytes(32)).signing), "does not verify"),  # type: ignore[arg-type]
    (lambda t: "kb1.e30.AAAA", "no valid authorisation token"),
    (lambda t: t.replace(":1000.0:", ":nan:"), "no valid authorisation token"),
    (lambda t: "", "no valid authorisation token"),
], ids=["expiry edited", "queue edited", "signed with another key", "old format", "not a time", "nothing"])
def test_a_token_that_was_changed_or_not_signed_by_the_control_side_is_refused(change, message: str) -> None:
    with pytest.raises(Refused, match=message):
        TaskToken.verify(change(TaskToken(**CLAIMS).sign(KEYS.signing)), KEYS.public.verify, now=2000.0,  # type: ignore[arg-type]
                         **EXPECTED)


@pytest.mark.parametrize("claim", ["task", "run", "node", "cluster", "digest"])
def test_a_token_does_not_verify_for_another_task_run_node_cluster_or_config(claim: str) -> None:
    text = TaskToken(**CLAIMS).sign(KEYS.signing)  # type: ignore[arg-type]
    with pytest.raises(Refused, match="not this task's token, or forged"):
        TaskToken.verify(text, KEYS.public.verify, now=2000.0, **{**EXPECTED, claim: "other"})  # type: ignore[arg-type]


def test_a_token_expires_after_its_exp_plus_the_allowed_skew() -> None:
    text = TaskToken(**CLAIMS).sign(KEYS.signing)  # type: ignore[arg-type]
    TaskToken.verify(text, KEYS.public.verify, now=4600.0 + SKEW, **EXPECTED)  # type: ignore[arg-type]
    with pytest.raises(Refused, match="expired"):
        TaskToken.verify(text, KEYS.public.verify, now=4600.0 + SKEW + 1, **EXPECTED)  # type: ignore[arg-type]


def test_the_tokens_of_one_chain_share_their_signing_time_and_expiry() -> None:
    sign = Signer(KEYS.signing, run="r-1", cluster="c1", digest="d", iat=10.0, ttl=3600)
    run = {"run": "r-1", "cluster": "c1", "digest": "d"}
    a = TaskToken.verify(sign("kubeboot.init.certs.ca", "cp1", "node.cp1"), KEYS.public.verify, now=11,
                         task="kubeboot.init.certs.ca", node="cp1", **run)
    b = TaskToken.verify(sign("kubeboot.run.finish", "", "control"), KEYS.public.verify, now=11,
                         task="kubeboot.run.finish", node="", **run)
    assert (a.iat, a.exp) == (b.iat, b.exp) == (10.0, 3610.0)


def test_run_metadata_verifies_until_a_signed_field_changes() -> None:
    fields = {"id": "r-1", "kind": "init", "cluster": "c1", "plan": '[["cp1","certs/ca"]]', "lock": "L",
              "status": "running"}
    fields["auth"] = sign_meta(fields, KEYS.signing)
    verify_meta(fields, KEYS.public.verify, "r-1")
    verify_meta({**fields, "status": "failed"}, KEYS.public.verify, "r-1")  # status is not signed
    for name, value in (("kind", "batch"), ("lock", ""), ("plan", "[]"), ("route", '{"dryRun":true}')):
        with pytest.raises(Refused, match="edited in Redis"):
            verify_meta({**fields, name: value}, KEYS.public.verify, "r-1")
    with pytest.raises(Refused, match="no metadata signature"):
        verify_meta({k: v for k, v in fields.items() if k != "auth"}, KEYS.public.verify, "r-1")


def bound(**change: str) -> bytes:
    return seal.aad(**{"run": "r-1", "cluster": "c1", "node": "cp1", "field": "admin.conf", "to": "cp1", **change})


def test_a_value_sealed_to_a_node_opens_only_with_its_key_and_only_where_it_was_bound() -> None:
    node, other = NodeKey.generate("cp1"), NodeKey.generate("w1")
    sealed = seal.seal_to(node.public, b"secret", bound(), writer="cp1")
    assert seal.writer_of(sealed) == "cp1"
    assert seal.open_box(node.private, sealed, bound(), "k") == b"secret"
    with pytest.raises(SecretError):
        seal.open_box(other.private, sealed, bound(), "k")
    for change in ({"run": "r-2"}, {"cluster": "c2"}, {"node": "w1"}, {"field": "super-admin.conf"}, {"to": "w1"}):
        with pytest.raises(SecretError):
            seal.open_box(node.private, sealed, bound(**change), "k")


def test_a_value_sealed_with_a_cluster_key_opens_only_with_that_key_and_binding() -> None:
    sealed = seal.seal_with_key(b"k" * 32, b"token", bound(to="control"))
    assert seal.open_with_key(b"k" * 32, sealed, bound(to="control"), "k") == b"token"
    with pytest.raises(SecretError):
        seal.open_with_key(b"x" * 32, sealed, bound(to="control"), "k")
    with pytest.raises(SecretError):
        seal.open_with_key(b"k" * 32, sealed, bound(cluster="c2", to="control"), "k")


def test_every_control_key_derives_from_the_master_key_and_differs_per_master() -> None:
    again = ControlKeys(bytes(range(32)))
    assert again.public.to_text() == KEYS.public.to_text() and again.wrap == KEYS.wrap
    assert ControlKeys(bytes(32)).public.to_text() != KEYS.public.to_text()
    assert ControlPublic.from_text(KEYS.public.to_text(), "x").to_text() == KEYS.public.to_text()


def test_node_key_files_are_private_and_pins_name_their_worker(tmp_path: Path) -> None:
    key = NodeKey.generate("cp1")
    write_node_key(tmp_path / "node.key", key)
    assert oct((tmp_path / "node.key").stat().st_mode & 0o777) == "0o600"
    assert read_node_key(tmp_path / "node.key").public_text() == key.public_text()
    (tmp_path / "node.key").chmod(0o644)
    with pytest.raises(ConfigError, match="readable by other users"):
        read_node_key(tmp_path / "node.key")
    pins = Pins(tmp_path / "pins")
    assert pins.put(key.public_text()) == "cp1" and pins.get("w1") is None
    (tmp_path / "pins" / "w1.pub").write_text(key.public_text())  # cp1's key filed under w1
    with pytest.raises(ConfigError, match="worker cp1's, not w1's"):
        Pins(tmp_path / "pins").get("w1")


def test_the_journal_refuses_a_dispatch_older_than_the_newest_it_ran(tmp_path: Path) -> None:
    journal = Journal(tmp_path, "cp1")
    first, second = TaskToken(**CLAIMS), TaskToken(**{**CLAIMS, "run": "r-2", "iat": 2000.0})  # type: ignore[arg-type]
    journal.admit(first)
    journal.admit(first)  # the same chain again (a redelivery, a retry)
    journal.admit(second)
    with pytest.raises(Refused, match="older than the newest dispatch this node ran for cluster c1"):
        journal.admit(first)
    journal.admit(TaskToken(**{**CLAIMS, "cluster": "c2"}))  # another cluster's dispatches are its own
    assert json.loads((tmp_path / "dispatch/cp1.json").read_text())["clusters"]["c1"]["run"] == "r-2"


def test_a_journal_kept_in_memory_sees_what_another_process_wrote(tmp_path: Path) -> None:
    """Each worker process keeps what it read while one stat shows the same file; a write by another
    process (a new file renamed in) is seen at once, and a file written within the racy window is not kept."""
    mine, other = Journal(tmp_path, "cp1"), Journal(tmp_path, "cp1")
    first, second = TaskToken(**CLAIMS), TaskToken(**{**CLAIMS, "run": "r-2", "iat": 2000.0})  # type: ignore[arg-type]
    mine.admit(first)
    assert mine._kept is None  # just written: within the racy window, not kept
    os.utime(mine.path, ns=(time.time_ns() - 10**9,) * 2)  # as if written a second ago
    mine.admit(first)
    assert mine._kept is not None and mine._kept["clusters"]["c1"]["run"] == "r-1"
    other.admit(second)  # the newer dispatch, recorded by another process of this node worker
    with pytest.raises(Refused, match="older than the newest dispatch this node ran for cluster c1"):
        mine.admit(first)


def test_secrets_may_come_from_files_but_not_from_both_places(tmp_path: Path) -> None:
    key = tmp_path / "master.key"
    key.write_text("00" * 32 + "\n")
    assert Settings.from_env({"KUBEBOOT_SECRET_KEY_FILE": str(key)}).secret_key == bytes(32)
    with pytest.raises(ConfigError, match="not both"):
        Settings.from_env({"KUBEBOOT_SECRET_KEY_FILE": str(key), "KUBEBOOT_SECRET_KEY": "00" * 32})
    with pytest.raises(ConfigError, match="cannot read"):
        Settings.from_env({"KUBEBOOT_REDIS_URL_FILE": str(tmp_path / "missing")})
    settings = Settings.from_env({"KUBEBOOT_REDIS_URL": "rediss://r:6380/0", "KUBEBOOT_REDIS_TLS_CA_FILE": "/ca.crt"})
    assert settings.redis_ssl() == {"ssl_cert_reqs": "required", "ssl_ca_certs": "/ca.crt"}
    with pytest.raises(ConfigError, match="go together"):
        Settings.from_env({"KUBEBOOT_REDIS_TLS_CERT_FILE": "/c.crt"})


def _ensure_node_public(path: str) -> str:
    from kubeboot.tasks.trust.keyring import ensure_node

    return ensure_node(Path(path), "cp1").public_text()


def test_a_node_key_made_by_several_processes_at_once_is_one_key(tmp_path: Path) -> None:
    """The node worker and a submitter (embedded setup) may both make the key first: all get the same."""
    import multiprocessing

    path = tmp_path / "keys" / "node-cp1.key"
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(6) as pool:
        publics = pool.map(_ensure_node_public, [str(path)] * 24)
    assert len(set(publics)) == 1
    assert read_node_key(path).public_text() == publics[0]
    assert [p.name for p in path.parent.iterdir()] == ["node-cp1.key"]  # no temporary file left behind
