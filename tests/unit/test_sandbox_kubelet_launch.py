"""The sandbox kubelet's mapping of a static Pod to a local command line: binary, paths, addresses, etcd flags."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from kubeboot.sandbox.addresses import MAX_NODES, endpoint_address, map_host, map_loopback, node_address
from kubeboot.sandbox.kubelet import launch
from kubeboot.sandbox.kubelet.probes import probe_url
from kubeboot.sandbox.kubelet.staticpods import parse_pod

ROOT = Path("/nodes/cp1")
A = "127.77.0.1"
ADV = "127.0.61.1"


def pod(command: list[str], image: str = "registry.k8s.io/etcd:3.6.8-0",
        mounts: dict[str, str] | None = None) -> dict[str, Any]:
    mounts = mounts or {}
    names = {path: f"v{i}" for i, path in enumerate(mounts)}
    return {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "kube-system"},
        "spec": {
            "containers": [{"name": "c", "image": image, "command": command,
                            "volumeMounts": [{"name": names[m], "mountPath": m} for m in mounts]}],
            "volumes": [{"name": names[m], "hostPath": {"path": h, "type": "DirectoryOrCreate"}}
                        for m, h in mounts.items()],
        },
    }


def which_none(_name: str) -> None:
    return None


def which_only(**found: str) -> launch.Which:
    return found.get


ETCD_MOUNTS = {"/var/lib/etcd": "/var/lib/etcd", "/etc/kubernetes/pki/etcd": "/etc/kubernetes/pki/etcd"}

ARG_CASES = [
    ("a path under a mount moves into the node root",
     "--cert-file=/etc/kubernetes/pki/etcd/server.crt", f"--cert-file={ROOT}/etc/kubernetes/pki/etcd/server.crt"),
    ("the mount path itself moves", "--data-dir=/var/lib/etcd", f"--data-dir={ROOT}/var/lib/etcd"),
    ("a path outside every mount stays", "--data-dir=/var/lib/etcd2", "--data-dir=/var/lib/etcd2"),
    ("a bare path argument moves", "/etc/kubernetes/pki/etcd/ca.crt", f"{ROOT}/etc/kubernetes/pki/etcd/ca.crt"),
    ("a flag without a value stays", "--client-cert-auth", "--client-cert-auth"),
    ("127.0.0.1 becomes the node address", "--listen-metrics-urls=http://127.0.0.1:2381",
     f"--listen-metrics-urls=http://{A}:2381"),
    ("localhost becomes the node address", "--master=https://localhost:6443", f"--master=https://{A}:6443"),
    ("[::1] becomes the node address", "--listen=https://[::1]:2379", f"--listen=https://{A}:2379"),
    ("a bare ::1 becomes the node address", "--bind-address=::1", f"--bind-address={A}"),
    ("another loopback address is not the host's", "--bind-address=127.0.0.10", "--bind-address=127.0.0.10"),
    ("a name containing localhost stays", "--server=https://localhost.example:6443",
     "--server=https://localhost.example:6443"),
    ("a URL list made repetitive by the mapping keeps each URL once",
     f"--listen-client-urls=https://127.0.0.1:2379,https://{A}:2379", f"--listen-client-urls=https://{A}:2379"),
    ("a URL list of distinct addresses keeps both",
     f"--listen-client-urls=https://127.0.0.1:2379,https://{ADV}:2379",
     f"--listen-client-urls=https://{A}:2379,https://{ADV}:2379"),
]


@pytest.mark.parametrize(("case", "arg", "expected"), ARG_CASES, ids=[c[0] for c in ARG_CASES])
def test_an_argument_is_mapped_through_mounts_and_addresses(case: str, arg: str, expected: str) -> None:
    p = pod(["etcd"], mounts=ETCD_MOUNTS)
    mounts = launch.mounts_of(p, p["spec"]["containers"][0])
    assert launch.map_arg(arg, mounts, ROOT, A) == expected


def test_the_longest_mount_path_wins() -> None:
    p = pod(["x"], mounts={"/etc/kubernetes": "/srv/k8s", "/etc/kubernetes/pki": "/etc/kubernetes/pki"})
    mounts = launch.mounts_of(p, p["spec"]["containers"][0])
    assert launch.map_path("/etc/kubernetes/pki/ca.crt", mounts, ROOT) == f"{ROOT}/etc/kubernetes/pki/ca.crt"
    assert launch.map_path("/etc/kubernetes/admin.conf", mounts, ROOT) == f"{ROOT}/srv/k8s/admin.conf"


ETCD_TRANSLATION = [
    ("the corrupt-check feature gate", ["--feature-gates=InitialCorruptCheck=true"],
     ["--experimental-initial-corrupt-check=true"]),
    ("the watch progress interval", ["--watch-progress-notify-interval=5s"],
     ["--experimental-watch-progress-notify-interval=5s"]),
    ("other gates stay for etcd to judge", ["--feature-gates=InitialCorruptCheck=false,Other=true"],
     ["--experimental-initial-corrupt-check=false", "--feature-gates=Other=true"]),
    ("every other flag stays", ["--snapshot-count=10000", "--name=cp1"], ["--snapshot-count=10000", "--name=cp1"]),
]


@pytest.mark.parametrize(("case", "args", "expected"), ETCD_TRANSLATION, ids=[c[0] for c in ETCD_TRANSLATION])
def test_etcd_36_flags_take_their_35_spelling(case: str, args: list[str], expected: list[str]) -> None:
    assert launch.translate_etcd_35(args)[0] == expected


def test_etcd_35_gets_the_translation_and_the_health_path_is_noted() -> None:
    p = pod(["etcd", "--feature-gates=InitialCorruptCheck=true", "--data-dir=/var/lib/etcd"], mounts=ETCD_MOUNTS)
    got = launch.plan(p, ROOT, A, which=which_only(etcd="/opt/bin/etcd"), version_of=lambda _b: (3, 5, 1))
    assert got.argv == ["/opt/bin/etcd", "--experimental-initial-corrupt-check=true", f"--data-dir={ROOT}/var/lib/etcd"]
    assert got.notes[0] == ("running etcd 3.5.1 from /opt/bin/etcd; translated --feature-gates=InitialCorruptCheck=true"
                            " to --experimental-initial-corrupt-check=true")
    assert got.etcd_legacy
    assert launch.probe_path(got, "/readyz") == "/health"
    assert launch.probe_path(got, "/livez") == "/health"
    assert launch.probe_path(got, "/metrics") == "/metrics"


def test_etcd_36_runs_the_manifest_flags_unchanged() -> None:
    p = pod(["etcd", "--feature-gates=InitialCorruptCheck=true"])
    got = launch.plan(p, ROOT, A, which=which_only(etcd="/opt/bin/etcd"), version_of=lambda _b: (3, 6, 8))
    assert got.argv == ["/opt/bin/etcd", "--feature-gates=InitialCorruptCheck=true"]
    assert launch.probe_path(got, "/readyz") == "/readyz"


BINARY_CASES = [
    ("kube-apiserver", "kubeboot.sandbox.apiserver"),
    ("kube-controller-manager", "kubeboot.sandbox.controllermanager"),
    ("kube-scheduler", "kubeboot.sandbox.scheduler"),
]


@pytest.mark.parametrize(("component", "module"), BINARY_CASES, ids=[f"{c} without a binary" for c, _ in BINARY_CASES])
def test_a_control_plane_component_without_a_binary_runs_emulated(component: str, module: str) -> None:
    image = f"registry.k8s.io/{component}:v1.35.0"
    p = pod([component, "--bind-address=127.0.0.1", "--secure-port=10257"], image=image)
    got = launch.plan(p, ROOT, A, which=which_none, python="/py")
    assert got.argv == ["/py", "-m", module, f"--bind-address={A}", "--secure-port=10257"]
    assert (got.kind, got.version) == ("emulated", "v1.35.0")
    assert got.notes == [f"running emulated {component}: no {component} binary on PATH"]


def test_a_real_apiserver_on_path_is_used_and_bound_to_the_node_address() -> None:
    p = pod(["kube-apiserver", f"--advertise-address={ADV}"], image="registry.k8s.io/kube-apiserver:v1.35.0")
    got = launch.plan(p, ROOT, A, which=which_only(**{"kube-apiserver": "/usr/bin/kube-apiserver"}))
    assert got.argv == ["/usr/bin/kube-apiserver", f"--advertise-address={ADV}", f"--bind-address={A}"]
    assert got.kind == "real"


def test_any_other_command_runs_as_written_with_the_image_tag_as_version() -> None:
    p = pod(["python3", "-m", "http.server", "--bind", "127.0.0.1", "18080"], image="sandbox.local/pyhttp:v1")
    got = launch.plan(p, ROOT, A, which=which_only(python3="/usr/bin/python3"))
    assert got.argv == ["/usr/bin/python3", "-m", "http.server", "--bind", A, "18080"]
    assert got.version == "v1"


@pytest.mark.parametrize(("image", "tag"), [
    ("registry.k8s.io/etcd:3.6.8-0", "3.6.8-0"),
    ("localhost:5000/kube-apiserver:v1.35.0", "v1.35.0"),
    ("localhost:5000/kube-apiserver", ""),
    ("registry.k8s.io/pause:3.10@sha256:abcd", "3.10"),
], ids=["registry image", "registry with a port", "no tag", "tag and digest"])
def test_the_version_is_the_image_tag(image: str, tag: str) -> None:
    assert launch.image_tag(image) == tag


def test_probes_go_to_the_node_address_and_named_ports() -> None:
    container = {"ports": [{"name": "probe-port", "containerPort": 2381}]}
    probe = {"httpGet": {"host": "127.0.0.1", "path": "/readyz", "port": "probe-port", "scheme": "HTTP"}}
    assert probe_url(probe, container, A) == f"http://{A}:2381/readyz"
    no_host = {"httpGet": {"path": "livez", "port": 6443, "scheme": "HTTPS"}}
    assert probe_url(no_host, container, A) == f"https://{A}:6443/livez"


def test_node_addresses_are_distinct_loopback_addresses() -> None:
    assert node_address(3, 7) == "127.77.3.7"
    assert len({node_address(c, n) for c in range(3) for n in range(1, 4)}) == 9
    with pytest.raises(ValueError, match="node index 0"):
        node_address(0, 0)
    # .254 of a cluster's block is its control-plane endpoint (the load balancer), never a node's.
    assert endpoint_address(3) == "127.77.3.254"
    assert endpoint_address(3) not in {node_address(3, n) for n in range(1, MAX_NODES + 1)}
    with pytest.raises(ValueError, match="node index 254"):
        node_address(0, 254)
    assert map_host("localhost", A) == A
    assert map_host(ADV, A) == ADV
    assert map_loopback("https://127.0.0.1:6443", "") == "https://127.0.0.1:6443"


def test_a_static_pod_takes_the_node_name_and_a_uid_that_changes_with_its_content(tmp_path: Path) -> None:
    content = b"apiVersion: v1\nkind: Pod\nmetadata: {name: etcd, namespace: kube-system}\n" \
              b"spec: {containers: [{name: etcd, image: 'e:1', command: [etcd]}]}\n"
    first = parse_pod(content, tmp_path / "etcd.yaml", "CP1")
    changed = parse_pod(content + b"# edited\n", tmp_path / "etcd.yaml", "CP1")
    assert first is not None and changed is not None
    assert first.name == "etcd-cp1"
    assert first.uid != changed.uid and len(first.uid) == 32
    assert first.log_dir(ROOT) == ROOT / f"var/log/pods/kube-system_etcd-cp1_{first.uid}"
    assert parse_pod(b"kind: ConfigMap\napiVersion: v1\n", tmp_path / "cm.yaml", "cp1") is None
