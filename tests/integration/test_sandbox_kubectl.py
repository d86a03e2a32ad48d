"""The real kubectl against the emulated kube-apiserver on a real etcd: what a person types at a sandbox cluster.

kubectl is the one on PATH. kubeboot's own files do not install it (no wheel of it is a test dependency): the
machine image these tests run on ships it (Debian package ``kubectl``, a dispatcher picking a client within the
version skew of the server). Missing, every test here FAILS with one line, never skips.

What is checked: ``--chunk-size`` pages a list with ``limit`` and ``continue`` and prints every object;
``get -w`` prints an object created after it started; ``kubectl create configmap`` (a typed client that
sends protobuf) gets the real server's answer for a body it does not decode, 415 UnsupportedMediaType, and
the JSON route the README gives instead (``--dry-run=client -o json | kubectl create --validate=false -f -``)
creates the object.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

pytestmark = pytest.mark.integration
ADDRESS = "127.0.54.1"
DEADLINE = 60.0  # bound of every kubectl run and wait below; never a timing assertion


@dataclass
class Server:
    root: Path
    api: Any  # conftest's EmulatedApiServer

    @property
    def core(self) -> client.CoreV1Api:
        return client.CoreV1Api(self.api.client("admin.conf"))

    def command(self, *args: str) -> list[str]:
        return [kubectl_binary(), f"--kubeconfig={self.root / 'etc/kubernetes/admin.conf'}", *args]

    @property
    def env(self) -> dict[str, str]:
        # kubectl's discovery cache goes to $HOME/.kube: the node root's, not the user's.
        return {**os.environ, "HOME": str(self.root)}

    def kubectl(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.command(*args), input=stdin, capture_output=True, text=True, timeout=DEADLINE,
                              check=False, env=self.env)


def kubectl_binary() -> str:
    found = shutil.which("kubectl")
    if found is None:
        pytest.fail("kubectl not found on PATH: these tests run the real kubectl (the machine image's "
                    "Debian package kubectl)", pytrace=False)
    return found


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, emulated_apiserver: Any, node_phases: Any) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("node")
    port = free_port()
    cfg = node_phases.pki_node(root, ADDRESS, port)
    api = emulated_apiserver.start(root, emulated_apiserver.argv(cfg, root), ADDRESS, port, root / "apiserver.log")
    node_phases.bind_cluster_admins(api.client())
    yield Server(root, api)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind((ADDRESS, 0))
        return int(s.getsockname()[1])


def namespace(server: Server, name: str, configmaps: int = 0) -> str:
    server.core.create_namespace({"metadata": {"name": name}})
    for i in range(configmaps):
        server.core.create_namespaced_config_map(name, {"metadata": {"name": f"cm{i}"}, "data": {"k": str(i)}})
    return name


def names(table: str) -> list[str]:
    """The NAME column of kubectl's table output."""
    lines = table.splitlines()
    assert lines and lines[0].startswith("NAME"), table
    return [line.split()[0] for line in lines[1:]]


def test_get_with_chunk_size_pages_with_limit_and_continue_and_prints_every_configmap(server: Server) -> None:
    ns = namespace(server, "chunked", configmaps=5)
    done = server.kubectl("get", "configmaps", "-n", ns, "--chunk-size=2", "-v=6")
    assert done.returncode == 0, done.stderr
    assert names(done.stdout) == ["cm0", "cm1", "cm2", "cm3", "cm4"]
    pages = [line for line in done.stderr.splitlines() if f"/namespaces/{ns}/configmaps?" in line]
    assert len(pages) == 3, done.stderr  # 2 + 2 + 1
    assert all("limit=2" in page and " 200 OK" in page for page in pages), pages
    assert "continue=" not in pages[0]
    assert all("continue=" in page for page in pages[1:]), pages


def test_get_watch_prints_a_configmap_created_after_it_started(server: Server) -> None:
    ns = namespace(server, "watched", configmaps=1)
    proc = subprocess.Popen(server.command("get", "configmaps", "-n", ns, "-w", "-v=6", "--request-timeout=0"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=server.env)
    out: list[str] = []
    err: list[str] = []
    for stream, lines in ((proc.stdout, out), (proc.stderr, err)):
        threading.Thread(target=lines.extend, args=(iter(stream.readline, ""),), daemon=True).start()
    try:
        wait(lambda: any("watch=true" in line and " 200 OK" in line for line in err), "kubectl's watch request", err)
        assert [line.split()[0] for line in out[1:]] == ["cm0"]  # the list it started from
        server.core.create_namespaced_config_map(ns, {"metadata": {"name": "later"}, "data": {"k": "v"}})
        wait(lambda: any(line.split()[:1] == ["later"] for line in out), "the new ConfigMap in kubectl's output", out)
        assert proc.poll() is None  # still watching
    finally:
        proc.kill()
        proc.wait(timeout=DEADLINE)


def test_kubectl_create_configmap_sends_protobuf_and_gets_415_unsupported_media_type(server: Server) -> None:
    ns = namespace(server, "typed")
    done = server.kubectl("create", "configmap", "made", "-n", ns, "--from-literal=k=v", "-v=8")
    assert done.returncode == 1
    assert "Content-Type: application/vnd.kubernetes.protobuf" in done.stderr
    assert "Response Status: 415 Unsupported Media Type" in done.stderr
    assert ("error: failed to create configmap: the body of the request was in an unknown format - accepted "
            'media types include: application/json (got "application/vnd.kubernetes.protobuf")') in done.stderr
    assert server.core.list_namespaced_config_map(ns).items == []


def test_a_body_in_another_media_type_is_415_with_the_real_servers_status_and_nothing_is_created(
        server: Server) -> None:
    ns = namespace(server, "status415")
    api = server.api.client("admin.conf")  # its urllib3 pool: TLS and admin.conf's client certificate
    resp = api.rest_client.pool_manager.request(
        "POST", f"{api.configuration.host}/api/v1/namespaces/{ns}/configmaps",
        body=b"metadata: {name: x}\n", headers={"Content-Type": "application/yaml"})
    status = json.loads(resp.data)
    assert (resp.status, status["kind"], status["status"], status["reason"], status["code"]) == (
        415, "Status", "Failure", "UnsupportedMediaType", 415)
    assert status["message"] == ("the body of the request was in an unknown format - accepted media types "
                                 'include: application/json (got "application/yaml")')
    assert server.core.list_namespaced_config_map(ns).items == []


def test_a_configmap_made_client_side_is_created_as_json_with_validation_off(server: Server) -> None:
    ns = namespace(server, "json")
    made = server.kubectl("create", "configmap", "made", "-n", ns, "--from-literal=k=v", "--dry-run=client",
                          "-o", "json")
    assert made.returncode == 0, made.stderr
    done = server.kubectl("create", "--validate=false", "-f", "-", "-v=6", stdin=made.stdout)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "configmap/made created"
    assert server.core.read_namespaced_config_map("made", ns).data == {"k": "v"}


def wait(ready: Any, what: str, seen: list[str]) -> None:
    end = time.monotonic() + DEADLINE
    while not ready():
        if time.monotonic() > end:
            pytest.fail(f"gave up waiting {DEADLINE:.0f}s for {what}:\n{''.join(seen)}")
        time.sleep(0.1)
