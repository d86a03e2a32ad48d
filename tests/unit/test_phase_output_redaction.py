"""The phases that print secrets (bootstrap-token, upload-certs, show-join-command) print them whole on a
person's terminal, as kubeadm does, and redacted when their output is a worker's log; the run secrets
keep them whole either way (the submitter reads the join command from there)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from kubeboot.config.loader import build_init_config
from kubeboot.config.resolved import InitConfig
from kubeboot.tasks import kubeconfig as kcfg
from kubeboot.tasks import pki
from kubeboot.tasks.fsutil import NodeFS
from kubeboot.tasks.phases import bootstraptoken, showjoin, uploadcerts
from kubeboot.tasks.phases.context import ControlContext, NodeContext
from kubeboot.tasks.tokens import parse_token

V4 = "kubeadm.k8s.io/v1beta4"
TOKENS = ["q7x2kd.m4v9t1z8r3p6w0yb", "abcdef.0123456789abcdef"]
KEY = "3f1c2a9be0d4475c8a61f0e2b9d3c7a45e6f8091b2c3d4e5f60718293a4b5c6d"


def config(tokens: list[str], **init: object) -> InitConfig:
    return build_init_config([
        {"apiVersion": V4, "kind": "InitConfiguration", "nodeRegistration": {"name": "cp1"},
         "bootstrapTokens": [{"token": t} for t in tokens], **init},
        {"apiVersion": V4, "kind": "ClusterConfiguration", "controlPlaneEndpoint": "cp.example.test:6443"}])


def control(tokens: list[str], *, show: bool) -> tuple[ControlContext, list[str]]:
    lines: list[str] = []
    return ControlContext(config(tokens), "cp1", out=lines.append, show_secrets=show), lines


@pytest.mark.parametrize(("tokens", "shown", "logged"), [
    pytest.param(TOKENS[:1], f"[bootstrap-token] Using token: {TOKENS[0]}",
                 "[bootstrap-token] Using token: q7x2kd.<redacted>", id="one token"),
    pytest.param(TOKENS, f"[bootstrap-token] Using tokens: [{TOKENS[0]} {TOKENS[1]}]",
                 "[bootstrap-token] Using tokens: [q7x2kd.<redacted> abcdef.<redacted>]", id="two tokens"),
])
def test_bootstrap_token_shows_the_token_ids_only_in_a_log(tokens: list[str], shown: str, logged: str) -> None:
    found = [parse_token(t) for t in tokens]
    for show, expected in ((True, shown), (False, logged)):
        ctx, lines = control(tokens, show=show)
        bootstraptoken.print_tokens(ctx, found)
        assert lines == [expected]


def test_upload_certs_shows_no_certificate_key_in_a_log(tmp_path: Path) -> None:
    cfg = config(TOKENS[:1], dryRun=True, certificateKey=KEY)
    for show, key_line in ((True, KEY), (False, "<redacted>")):
        lines: list[str] = []
        uploadcerts.run_upload_certs(NodeContext(cfg, NodeFS(tmp_path), out=lines.append, show_secrets=show))
        assert lines[-1] == f"[upload-certs] Using certificate key:\n{key_line}"


def admin_conf() -> bytes:
    key = pki.generate_key("ECDSA-P256")
    cert = pki.build_certificate(pki.CertSpec("kubernetes", is_ca=True, validity_seconds=3600), key.public_key(),
                                 key, None, datetime.now(UTC))
    doc = kcfg.kubeconfig_with_certs("https://cp.example.test:6443", "kubernetes", "kubernetes-admin",
                                     pki.cert_to_pem(cert), b"KEY", b"CERT")
    return kcfg.dump(doc).encode()


def test_show_join_command_logs_the_commands_redacted_and_keeps_them_whole_in_the_run_secret() -> None:
    ctx, lines = control(TOKENS[:1], show=False)
    ctx.secrets.put("admin.conf", admin_conf())
    ctx.secrets.put("certificate-key", KEY.encode())
    showjoin.run_show_join_command(ctx)
    printed = "\n".join(lines)
    assert "kubeadm join cp.example.test:6443 --token q7x2kd.<redacted> \\" in lines
    assert "\t--control-plane --certificate-key <redacted>" in lines
    assert TOKENS[0].split(".")[1] not in printed and KEY not in printed
    kept = (ctx.secrets.get("join-command") or b"").decode()
    assert f"--token {TOKENS[0]} " in kept and f"--certificate-key {KEY}" in kept
    # Nothing but the secrets differs: the log shows kubeadm's text, line for line.
    assert printed == kept.removesuffix("\n").replace(TOKENS[0], "q7x2kd.<redacted>").replace(KEY, "<redacted>")


def test_show_join_command_on_a_terminal_prints_kubeadms_text_whole() -> None:
    ctx, lines = control(TOKENS[:1], show=True)
    ctx.secrets.put("admin.conf", admin_conf())
    showjoin.run_show_join_command(ctx)
    assert "\n".join(lines) == (ctx.secrets.get("join-command") or b"").decode().removesuffix("\n")
    assert f"kubeadm join cp.example.test:6443 --token {TOKENS[0]} \\" in lines
