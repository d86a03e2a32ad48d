"""kubeconfig documents: the table of files, the token and cluster-info shapes, clientcmd's YAML, and
reading an existing file back (tasks/kubeconfig.py)."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509

from kubeboot.config import constants as c
from kubeboot.config.loader import build_init_config
from kubeboot.tasks import kubeconfig as kc
from kubeboot.tasks import pki

V4 = "kubeadm.k8s.io/v1beta4"
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
CA_PEM = b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
B64_CA = base64.b64encode(CA_PEM).decode()


def make_ca() -> tuple[x509.Certificate, pki.PrivateKey]:
    key = pki.generate_key("ECDSA-P256")
    return pki.build_certificate(pki.CertSpec("kubernetes", is_ca=True), key.public_key(), key, None, NOW), key


def make_client(ca: tuple[x509.Certificate, pki.PrivateKey], now: datetime = NOW,
                validity: float = 3600) -> tuple[bytes, bytes]:
    key = pki.generate_key("ECDSA-P256")
    spec = pki.CertSpec("kubernetes-admin", usages=(pki.CLIENT_AUTH,), validity_seconds=validity)
    cert = pki.build_certificate(spec, key.public_key(), ca[1], ca[0], now)
    return pki.cert_to_pem(cert), pki.key_to_pem(key)


@pytest.fixture(scope="module")
def ca() -> tuple[x509.Certificate, pki.PrivateKey]:
    return make_ca()


# --- the table -------------------------------------------------------------------------------------


def test_the_table_lists_kubeadms_five_files_in_phase_order_each_once() -> None:
    assert [(f.phase, f.file_name) for f in kc.KUBECONFIG_FILES] == [
        ("admin", c.ADMIN_CONF), ("super-admin", c.SUPER_ADMIN_CONF), ("kubelet", c.KUBELET_CONF),
        ("controller-manager", c.CONTROLLER_MANAGER_CONF), ("scheduler", c.SCHEDULER_CONF)]
    assert all(f.path() == f"/etc/kubernetes/{f.file_name}" for f in kc.KUBECONFIG_FILES)


def test_only_the_kubelet_identity_depends_on_the_node_name() -> None:
    cfg = build_init_config([{"apiVersion": V4, "kind": "InitConfiguration", "nodeRegistration": {"name": "n-7"},
                              "localAPIEndpoint": {"advertiseAddress": "10.0.0.7"}}])
    assert {f.phase: kc.client_name(f, cfg) for f in kc.KUBECONFIG_FILES} == {
        "admin": "kubernetes-admin", "super-admin": "kubernetes-super-admin", "kubelet": "system:node:n-7",
        "controller-manager": "system:kube-controller-manager", "scheduler": "system:kube-scheduler"}


def test_an_ipv6_advertise_address_is_bracketed_in_every_server_url() -> None:
    cfg = build_init_config([{"apiVersion": V4, "kind": "InitConfiguration", "nodeRegistration": {"name": "cp"},
                              "localAPIEndpoint": {"advertiseAddress": "fd00::10", "bindPort": 6443}}])
    assert {kc.server_for(f, cfg) for f in kc.KUBECONFIG_FILES} == {"https://[fd00::10]:6443"}


# --- document shapes -------------------------------------------------------------------------------


def test_a_token_kubeconfig_is_kubeadm_joins_bootstrap_kubelet_conf() -> None:
    doc = kc.kubeconfig_with_token("https://lb:6443", CA_PEM, "abcdef.0123456789abcdef")
    assert kc.dump(doc) == (
        "apiVersion: v1\n"
        "clusters:\n"
        "- cluster:\n"
        f"    certificate-authority-data: {B64_CA}\n"
        "    server: https://lb:6443\n"
        "  name: kubernetes\n"
        "contexts:\n"
        "- context:\n"
        "    cluster: kubernetes\n"
        "    user: tls-bootstrap-token-user\n"
        "  name: tls-bootstrap-token-user@kubernetes\n"
        "current-context: tls-bootstrap-token-user@kubernetes\n"
        "kind: Config\n"
        "preferences: {}\n"
        "users:\n"
        "- name: tls-bootstrap-token-user\n"
        "  user:\n"
        "    token: abcdef.0123456789abcdef\n"
    )


def test_a_kubeconfig_without_user_is_the_cluster_info_shape_with_one_unnamed_cluster() -> None:
    assert kc.dump(kc.kubeconfig_without_user("https://10.0.0.10:6443", CA_PEM)) == (
        "apiVersion: v1\n"
        "clusters:\n"
        "- cluster:\n"
        f"    certificate-authority-data: {B64_CA}\n"
        "    server: https://10.0.0.10:6443\n"
        '  name: ""\n'
        "contexts: null\n"
        'current-context: ""\n'
        "kind: Config\n"
        "preferences: {}\n"
        "users: null\n"
    )


@pytest.mark.parametrize(("value", "line"), [
    pytest.param("", 'v: ""', id="empty-string-double-quoted"),
    pytest.param("true", 'v: "true"', id="bool-looking-string-quoted"),
    pytest.param("6443", 'v: "6443"', id="number-looking-string-quoted"),
    pytest.param("system:node:cp1", "v: system:node:cp1", id="colons-without-space-stay-plain"),
    pytest.param("https://[fd00::1]:6443", "v: https://[fd00::1]:6443", id="ipv6-url-stays-plain"),
])
def test_strings_are_quoted_only_where_go_yaml_quotes_them(value, line) -> None:
    assert kc.dump({"v": value}) == line + "\n"


def test_long_base64_values_are_never_folded() -> None:
    text = kc.dump(kc.kubeconfig_without_user("https://a:1", b"x" * 3000))
    assert f"certificate-authority-data: {base64.b64encode(b'x' * 3000).decode()}\n" in text


# --- reading back ----------------------------------------------------------------------------------


def test_parsing_a_written_file_gives_back_its_cluster_and_user() -> None:
    doc = kc.kubeconfig_with_certs("https://lb:6443", "prod", "kubernetes-admin", CA_PEM, b"KEY", b"CERT")
    parsed = kc.parse(kc.dump(doc))
    assert parsed == kc.Kubeconfig(
        current_context="kubernetes-admin@prod", cluster_name="prod", server="https://lb:6443",
        ca_data=CA_PEM, ca_file="", user_name="kubernetes-admin", client_cert_data=b"CERT",
        client_key_data=b"KEY", token="")


@pytest.mark.parametrize(("text", "message"), [
    pytest.param("- a\n", "not a kubeconfig document", id="a-list"),
    pytest.param("a: [\n", "not YAML", id="broken-yaml"),
    pytest.param("current-context: x\ncontexts: []\n", "failed to find CurrentContext in Contexts",
                 id="current-context-missing"),
    pytest.param("current-context: x\ncontexts: [{name: x, context: {cluster: k}}]\nclusters: []\n",
                 "failed to find the given CurrentContext Cluster in Clusters", id="cluster-missing"),
    pytest.param("current-context: x\ncontexts: [{name: x, context: {cluster: k}}]\n"
                 "clusters: [{name: k, cluster: {certificate-authority-data: '!!'}}]\n",
                 "certificate-authority-data is not valid base64", id="bad-base64"),
])
def test_parsing_rejects_what_clientcmd_and_kubeadm_reject(text, message) -> None:
    with pytest.raises(kc.KubeconfigError, match=message):
        kc.parse(text)


def test_ca_comparison_ignores_surrounding_whitespace_like_kubeadm() -> None:
    assert kc.same_ca(b"\n" + CA_PEM + b"\n\n", CA_PEM)
    assert not kc.same_ca(CA_PEM.replace(b"MIIB", b"MIIC"), CA_PEM)


def parsed_with(cert: bytes, key: bytes, token: str = "") -> kc.Kubeconfig:
    return kc.Kubeconfig("u@k", "k", "https://a:1", CA_PEM, "", "u", cert, key, token)


def test_a_fresh_client_certificate_signed_by_the_ca_has_no_problem(ca) -> None:
    assert kc.credential_problem(parsed_with(*make_client(ca)), ca[0], NOW) is None


def test_a_token_user_is_trusted_like_kubeadm_trusts_it(ca) -> None:
    assert kc.credential_problem(parsed_with(b"", b"", token="abc.def"), ca[0], NOW) is None


@pytest.mark.parametrize(("case", "problem"), [
    pytest.param("other-ca", "its client certificate is not signed by the cluster CA", id="signed-by-another-ca"),
    pytest.param("expired", "its client certificate is not valid now", id="expired"),
    pytest.param("not-yet-valid", "its client certificate is not valid now", id="not-yet-valid"),
    pytest.param("key-mismatch", "its client key does not match its client certificate", id="key-of-another-cert"),
    pytest.param("garbage", "its client certificate is not a PEM certificate", id="not-a-certificate"),
])
def test_an_unusable_client_certificate_is_reported_with_the_reason(ca, case, problem) -> None:
    cert, key = make_client(ca)
    if case == "other-ca":
        cert, key = make_client(make_ca())
    elif case == "expired":
        cert, key = make_client(ca, now=NOW - timedelta(days=2))
    elif case == "not-yet-valid":
        cert, key = make_client(ca, now=NOW + timedelta(days=2))
    elif case == "key-mismatch":
        key = make_client(ca)[1]
    elif case == "garbage":
        cert = b"not a certificate"
    found = kc.credential_problem(parsed_with(cert, key), ca[0], NOW)
    assert found is not None and found.startswith(problem)
