"""The kubeconfig phase: the five files kubeadm init writes, their identities and servers, and how the
phase converges over existing, missing, foreign and user-provided files (kubeadm-spec 2.3)."""

from __future__ import annotations

import base64
import re
from datetime import UTC, datetime, timedelta

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from kubeboot.config.loader import build_init_config
from kubeboot.tasks import kubeconfig as kc
from kubeboot.tasks import pki
from kubeboot.tasks.errors import PermanentError
from kubeboot.tasks.fsutil import NodeFS
from kubeboot.tasks.phases import kubeconfig as phase
from kubeboot.tasks.phases.context import NodeContext

V4 = "kubeadm.k8s.io/v1beta4"
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
PKI = "/etc/kubernetes/pki"
PHASES = [f.phase for f in kc.KUBECONFIG_FILES]


def make_cfg(cpe: str = "", cluster_name: str = "kubernetes", alg: str = "ECDSA-P256", **cluster: object):
    init = {"apiVersion": V4, "kind": "InitConfiguration", "nodeRegistration": {"name": "cp1"},
            "localAPIEndpoint": {"advertiseAddress": "10.0.0.10", "bindPort": 6443}}
    cc = {"apiVersion": V4, "kind": "ClusterConfiguration", "clusterName": cluster_name,
          "encryptionAlgorithm": alg, **cluster}
    if cpe:
        cc["controlPlaneEndpoint"] = cpe
    return build_init_config([init, cc])


def make_ca(cn: str = "kubernetes") -> tuple[x509.Certificate, pki.PrivateKey]:
    key = pki.generate_key("ECDSA-P256")
    spec = pki.CertSpec(cn, is_ca=True, validity_seconds=10 * 365 * 86400)
    return pki.build_certificate(spec, key.public_key(), key, None, NOW - timedelta(days=1)), key


@pytest.fixture(scope="module")
def ca() -> tuple[x509.Certificate, pki.PrivateKey]:
    return make_ca()


@pytest.fixture
def fs(tmp_path, ca) -> NodeFS:
    nfs = NodeFS(tmp_path)
    nfs.write(f"{PKI}/ca.crt", pki.cert_to_pem(ca[0]))
    nfs.write(f"{PKI}/ca.key", pki.key_to_pem(ca[1]), mode=0o600)
    return nfs


def context(fs: NodeFS, cfg=None, now: datetime = NOW) -> tuple[NodeContext, list[str]]:
    lines: list[str] = []
    return NodeContext(cfg or make_cfg(), fs, out=lines.append, now=now), lines


def run_all(ctx: NodeContext) -> None:
    phase.run_kubeconfig(ctx)
    for name in PHASES:
        phase.run_kubeconfig_file(ctx, name)


def load(fs: NodeFS, file: str) -> dict:
    return yaml.safe_load(fs.read_text(f"/etc/kubernetes/{file}"))


def client_cert(doc: dict) -> x509.Certificate:
    return x509.load_pem_x509_certificate(base64.b64decode(doc["users"][0]["user"]["client-certificate-data"]))


def snapshot(fs: NodeFS) -> dict[str, tuple[bytes, int]]:
    out = {}
    for f in kc.KUBECONFIG_FILES:
        p = fs.path(f.path())
        if p.exists():
            out[f.file_name] = (p.read_bytes(), p.stat().st_mtime_ns)
    return out


# --- the table, row by row -------------------------------------------------------------------------

ROWS = [
    pytest.param("admin", "admin.conf", "kubernetes-admin", ["kubeadm:cluster-admins"], "cluster", id="admin"),
    pytest.param("super-admin", "super-admin.conf", "kubernetes-super-admin", ["system:masters"], "cluster",
                 id="super-admin"),
    pytest.param("kubelet", "kubelet.conf", "system:node:cp1", ["system:nodes"], "local", id="kubelet"),
    pytest.param("controller-manager", "controller-manager.conf", "system:kube-controller-manager", [], "local",
                 id="controller-manager"),
    pytest.param("scheduler", "scheduler.conf", "system:kube-scheduler", [], "local", id="scheduler"),
]

SERVERS = [
    pytest.param("", "https://10.0.0.10:6443", id="no-controlPlaneEndpoint"),
    pytest.param("10.0.0.100", "https://10.0.0.100:6443", id="ipv4-controlPlaneEndpoint-without-port"),
    pytest.param("k8s.example.com:8443", "https://k8s.example.com:8443", id="dns-controlPlaneEndpoint-with-port"),
]


@pytest.mark.parametrize(("name", "file", "user", "orgs", "server_kind"), ROWS)
@pytest.mark.parametrize("cluster_name", ["kubernetes", "prod-eu"])
def test_each_file_names_its_user_context_and_cluster_like_kubeadm(
    fs, name, file, user, orgs, server_kind, cluster_name
) -> None:
    ctx, lines = context(fs, make_cfg(cluster_name=cluster_name))
    phase.run_kubeconfig_file(ctx, name)
    doc = load(fs, file)
    assert lines == [f'[kubeconfig] Writing "{file}" kubeconfig file']
    assert [c["name"] for c in doc["clusters"]] == [cluster_name]
    assert doc["users"][0]["name"] == user and len(doc["users"]) == 1
    assert doc["contexts"] == [{"name": f"{user}@{cluster_name}", "context": {"cluster": cluster_name, "user": user}}]
    assert doc["current-context"] == f"{user}@{cluster_name}"
    assert (doc["apiVersion"], doc["kind"], doc["preferences"]) == ("v1", "Config", {})


@pytest.mark.parametrize(("name", "file", "user", "orgs", "server_kind"), ROWS)
@pytest.mark.parametrize(("cpe", "cluster_server"), SERVERS)
def test_each_file_points_at_the_control_plane_endpoint_or_the_local_api_server(
    fs, name, file, user, orgs, server_kind, cpe, cluster_server
) -> None:
    ctx, _ = context(fs, make_cfg(cpe=cpe))
    phase.run_kubeconfig_file(ctx, name)
    expected = "https://10.0.0.10:6443" if server_kind == "local" else cluster_server
    assert load(fs, file)["clusters"][0]["cluster"]["server"] == expected


def test_kubelet_conf_points_at_the_control_plane_endpoint_when_kubelet_local_mode_is_switched_off(fs) -> None:
    cfg = make_cfg(cpe="k8s.example.com:8443", kubernetesVersion="v1.34.3",
                   featureGates={"ControlPlaneKubeletLocalMode": False})
    ctx, _ = context(fs, cfg)
    phase.run_kubeconfig_file(ctx, "kubelet")
    assert load(fs, "kubelet.conf")["clusters"][0]["cluster"]["server"] == "https://k8s.example.com:8443"


@pytest.mark.parametrize(("name", "file", "user", "orgs", "server_kind"), ROWS)
def test_each_client_certificate_carries_the_identity_and_is_signed_by_the_cluster_ca(
    fs, ca, name, file, user, orgs, server_kind
) -> None:
    ctx, _ = context(fs)
    phase.run_kubeconfig_file(ctx, name)
    doc = load(fs, file)
    cert = client_cert(doc)
    assert [a.value for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)] == [user]
    assert [a.value for a in cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)] == orgs
    cert.verify_directly_issued_by(ca[0])
    assert list(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == [
        ExtendedKeyUsageOID.CLIENT_AUTH]
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    ca_data = base64.b64decode(doc["clusters"][0]["cluster"]["certificate-authority-data"])
    assert ca_data == fs.read_bytes(f"{PKI}/ca.crt")
    key = pki.load_key(base64.b64decode(doc["users"][0]["user"]["client-key-data"]))
    assert pki.public_key_der(key.public_key()) == pki.public_key_der(cert.public_key())


@pytest.mark.parametrize(("name", "file", "user", "orgs", "server_kind"), ROWS)
def test_each_file_is_private_to_root(fs, name, file, user, orgs, server_kind) -> None:
    ctx, _ = context(fs)
    phase.run_kubeconfig_file(ctx, name)
    assert fs.path(f"/etc/kubernetes/{file}").stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize(("period", "seconds"), [
    pytest.param(None, 8760 * 3600, id="default-one-year"),
    pytest.param("48h0m0s", 48 * 3600, id="certificateValidityPeriod-48h"),
])
def test_client_certificates_are_backdated_five_minutes_and_last_the_certificate_validity_period(
    fs, period, seconds
) -> None:
    cfg = make_cfg(**({"certificateValidityPeriod": period} if period else {}))
    ctx, _ = context(fs, cfg)
    phase.run_kubeconfig_file(ctx, "admin")
    cert = client_cert(load(fs, "admin.conf"))
    assert cert.not_valid_before_utc == NOW - timedelta(minutes=5)
    assert cert.not_valid_after_utc == NOW + timedelta(seconds=seconds)


@pytest.mark.parametrize(("alg", "key_type", "size"), [
    pytest.param("ECDSA-P256", ec.EllipticCurvePrivateKey, 256, id="ECDSA-P256"),
    pytest.param("ECDSA-P384", ec.EllipticCurvePrivateKey, 384, id="ECDSA-P384"),
    pytest.param("RSA-2048", rsa.RSAPrivateKey, 2048, id="RSA-2048-the-default"),
])
def test_client_keys_follow_the_encryption_algorithm(fs, alg, key_type, size) -> None:
    ctx, _ = context(fs, make_cfg(alg=alg))
    phase.run_kubeconfig_file(ctx, "scheduler")
    user = load(fs, "scheduler.conf")["users"][0]["user"]
    key = pki.load_key(base64.b64decode(user["client-key-data"]))
    assert isinstance(key, key_type) and key.key_size == size
    header = b"-----BEGIN RSA PRIVATE KEY-----" if size == 2048 else b"-----BEGIN EC PRIVATE KEY-----"
    assert base64.b64decode(user["client-key-data"]).startswith(header)


def test_files_are_written_in_clientcmds_layout_and_key_order(fs) -> None:
    ctx, _ = context(fs)
    phase.run_kubeconfig_file(ctx, "admin")
    text = re.sub(r"(-data: )[A-Za-z0-9+/=]+", r"\1<b64>", fs.read_text("/etc/kubernetes/admin.conf"))
    assert text == (
        "apiVersion: v1\n"
        "clusters:\n"
        "- cluster:\n"
        "    certificate-authority-data: <b64>\n"
        "    server: https://10.0.0.10:6443\n"
        "  name: kubernetes\n"
        "contexts:\n"
        "- context:\n"
        "    cluster: kubernetes\n"
        "    user: kubernetes-admin\n"
        "  name: kubernetes-admin@kubernetes\n"
        "current-context: kubernetes-admin@kubernetes\n"
        "kind: Config\n"
        "preferences: {}\n"
        "users:\n"
        "- name: kubernetes-admin\n"
        "  user:\n"
        "    client-certificate-data: <b64>\n"
        "    client-key-data: <b64>\n"
    )


def test_written_files_load_with_the_official_kubeconfig_loader_or_pass_the_structural_check(fs) -> None:
    ctx, _ = context(fs, make_cfg(cpe="k8s.example.com:8443"))
    run_all(ctx)
    try:
        from kubernetes import client, config  # type: ignore[import-not-found]
    except ImportError:
        for f in kc.KUBECONFIG_FILES:
            parsed = kc.parse(fs.read_text(f.path()))
            assert parsed.cluster_name == "kubernetes" and parsed.user_name == kc.client_name(f, ctx.cfg)
            assert parsed.server == kc.server_for(f, ctx.cfg)
            assert parsed.client_cert_data.startswith(b"-----BEGIN CERTIFICATE-----")
        return
    for f in kc.KUBECONFIG_FILES:
        conf = client.Configuration()
        config.load_kube_config(config_file=str(fs.path(f.path())), client_configuration=conf)
        assert conf.host == kc.server_for(f, ctx.cfg)


# --- convergence -----------------------------------------------------------------------------------


def test_the_parent_announces_the_kubeconfig_folder(fs) -> None:
    ctx, lines = context(fs)
    phase.run_kubeconfig(ctx)
    assert lines == ['[kubeconfig] Using kubeconfig folder "/etc/kubernetes"']


def test_a_second_run_reuses_every_file_and_changes_no_byte_and_no_mtime(fs) -> None:
    run_all(context(fs)[0])
    before = snapshot(fs)
    ctx, lines = context(fs, now=NOW + timedelta(hours=1))
    run_all(ctx)
    assert snapshot(fs) == before and len(before) == 5
    assert lines[1:] == [f'[kubeconfig] Using existing kubeconfig file: "/etc/kubernetes/{f.file_name}"'
                         for f in kc.KUBECONFIG_FILES]


def test_a_deleted_file_is_the_only_one_recreated(fs) -> None:
    run_all(context(fs)[0])
    before = snapshot(fs)
    fs.remove("/etc/kubernetes/kubelet.conf")
    ctx, lines = context(fs)
    run_all(ctx)
    after = snapshot(fs)
    assert {k: v for k, v in after.items() if k != "kubelet.conf"} == {
        k: v for k, v in before.items() if k != "kubelet.conf"}
    assert after["kubelet.conf"][0] != before["kubelet.conf"][0]
    assert '[kubeconfig] Writing "kubelet.conf" kubeconfig file' in lines
    assert sum("Writing" in line for line in lines) == 1


def test_the_parent_generates_the_missing_files_keys_ahead_and_the_children_use_them(fs) -> None:
    fs.write("/etc/kubernetes/admin.conf", "placeholder")  # present: no key generated for it
    ctx, _ = context(fs)
    phase.run_kubeconfig(ctx)
    keys = dict(ctx.scratch[phase.SCRATCH_KEYS])
    assert sorted(keys) == sorted(set(PHASES) - {"admin"})
    phase.run_kubeconfig_file(ctx, "scheduler")
    written = base64.b64decode(load(fs, "scheduler.conf")["users"][0]["user"]["client-key-data"])
    assert written == pki.key_to_pem(keys["scheduler"])
    assert "scheduler" not in ctx.scratch[phase.SCRATCH_KEYS]


def test_a_file_with_another_ca_is_an_error_and_is_left_alone(fs) -> None:
    other_cert, other_key = make_ca()
    foreign = NodeFS(fs.root / "other")
    foreign.write(f"{PKI}/ca.crt", pki.cert_to_pem(other_cert))
    foreign.write(f"{PKI}/ca.key", pki.key_to_pem(other_key))
    phase.run_kubeconfig_file(context(foreign)[0], "admin")
    fs.write("/etc/kubernetes/admin.conf", foreign.read_bytes("/etc/kubernetes/admin.conf"), mode=0o600)
    with pytest.raises(PermanentError, match=r'a kubeconfig file "/etc/kubernetes/admin.conf" exists already '
                                             r"but has got the wrong CA cert"):
        phase.run_kubeconfig_file(context(fs)[0], "admin")
    assert fs.read_bytes("/etc/kubernetes/admin.conf") == foreign.read_bytes("/etc/kubernetes/admin.conf")


def test_a_file_pointing_at_another_server_is_kept_with_a_warning(fs) -> None:
    phase.run_kubeconfig_file(context(fs, make_cfg(cpe="old.example.com:6443"))[0], "admin")
    before = snapshot(fs)
    ctx, lines = context(fs, make_cfg(cpe="new.example.com:6443"))
    phase.run_kubeconfig_file(ctx, "admin")
    assert snapshot(fs) == before
    assert lines == [
        '[kubeconfig] WARNING: a kubeconfig file "/etc/kubernetes/admin.conf" exists already but has an '
        "unexpected API Server URL: expected: https://new.example.com:6443, got: https://old.example.com:6443",
        '[kubeconfig] Using existing kubeconfig file: "/etc/kubernetes/admin.conf"',
    ]


def test_a_file_that_is_not_a_kubeconfig_is_an_error(fs) -> None:
    fs.write("/etc/kubernetes/scheduler.conf", "just: text\n", mode=0o600)
    message = "failed to load kubeconfig file /etc/kubernetes/scheduler.conf"
    with pytest.raises(PermanentError, match=re.escape(message)):
        phase.run_kubeconfig_file(context(fs)[0], "scheduler")


def test_a_ca_given_as_a_file_path_is_compared_like_embedded_data(fs) -> None:
    phase.run_kubeconfig_file(context(fs)[0], "admin")
    doc = load(fs, "admin.conf")
    cluster = doc["clusters"][0]["cluster"]
    del cluster["certificate-authority-data"]
    cluster["certificate-authority"] = f"{PKI}/ca.crt"
    fs.write("/etc/kubernetes/admin.conf", kc.dump(doc), mode=0o600)
    ctx, lines = context(fs)
    phase.run_kubeconfig_file(ctx, "admin")
    assert lines == ['[kubeconfig] Using existing kubeconfig file: "/etc/kubernetes/admin.conf"']


def test_an_expired_client_certificate_is_reissued_when_the_ca_key_is_at_hand(fs, ca) -> None:
    phase.run_kubeconfig_file(context(fs, now=NOW - timedelta(days=400))[0], "controller-manager")
    ctx, lines = context(fs)
    phase.run_kubeconfig_file(ctx, "controller-manager")
    assert lines[0].startswith('[kubeconfig] Re-issuing the client certificate of "controller-manager.conf": '
                               "its client certificate is not valid now")
    assert lines[1] == '[kubeconfig] Writing "controller-manager.conf" kubeconfig file'
    assert client_cert(load(fs, "controller-manager.conf")).not_valid_after_utc > NOW


def test_a_missing_ca_names_the_phase_that_makes_it(tmp_path) -> None:
    with pytest.raises(PermanentError, match=r"the CA files do not exist, please run `kubeboot init phase "
                                             r"certs/ca` to generate it"):
        phase.run_kubeconfig_file(context(NodeFS(tmp_path))[0], "admin")


# --- External CA mode ------------------------------------------------------------------------------


def external(fs: NodeFS) -> NodeFS:
    """All five files made with the CA, then ca.key taken away: kubeadm's External CA mode."""
    run_all(context(fs)[0])
    fs.remove(f"{PKI}/ca.key")
    return fs


def test_external_ca_mode_uses_the_user_provided_files_untouched(fs) -> None:
    external(fs)
    before = snapshot(fs)
    ctx, lines = context(fs)
    run_all(ctx)
    assert snapshot(fs) == before
    assert lines[1:] == [f"[kubeconfig] External CA mode: Using user provided {f.file_name}"
                         for f in kc.KUBECONFIG_FILES]
    assert phase.SCRATCH_KEYS not in ctx.scratch


def test_external_ca_mode_with_a_missing_file_is_an_error(fs) -> None:
    external(fs).remove("/etc/kubernetes/super-admin.conf")
    with pytest.raises(PermanentError, match=re.escape("the super-admin.conf file does not exists or it is not valid")):
        phase.run_kubeconfig_file(context(fs)[0], "super-admin")
    assert not fs.exists("/etc/kubernetes/super-admin.conf")


def test_external_ca_mode_with_an_expired_client_certificate_is_an_error(fs) -> None:
    external(fs)
    with pytest.raises(PermanentError, match=re.escape(
            "the kubelet.conf file does not exists or it is not valid: its client certificate is not valid now")):
        phase.run_kubeconfig_file(context(fs, now=NOW + timedelta(days=400))[0], "kubelet")


def test_only_admin_conf_goes_to_the_runs_secrets_super_admin_conf_stays_on_the_node(fs: NodeFS) -> None:
    ctx, _ = context(fs)
    for name in PHASES:
        phase.run_kubeconfig_file(ctx, name)
    assert ctx.secrets.get("admin.conf") == fs.read_bytes("/etc/kubernetes/admin.conf")
    assert fs.read_bytes("/etc/kubernetes/super-admin.conf")
    assert ctx.secrets.get("super-admin.conf") is None
    # wait-control-plane, its one user, runs on the node and reads it from there
    assert ctx.kubeconfig("super-admin.conf") == fs.read_bytes("/etc/kubernetes/super-admin.conf")
