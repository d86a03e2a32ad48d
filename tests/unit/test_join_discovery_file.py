"""`--discovery-file` across machines: the kubeconfig is read where the join is built (the submitter), carried
in the run's documents, and the node's rebuild and discovery never look at the path again."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from kubeboot.config.errors import ConfigError
from kubeboot.config.join import build_join_config
from kubeboot.config.join_discovery import API, KIND, NO_CLUSTER, run_documents
from kubeboot.config.settings import Settings
from kubeboot.tasks import kubeconfig as kc
from kubeboot.tasks.fsutil import NodeFS
from kubeboot.tasks.phases import joincluster
from kubeboot.tasks.phases.joincontext import JoinNodeContext
from kubeboot.tasks.runtime import WorkerRuntime

V4 = "kubeadm.k8s.io/v1beta4"
TOKEN = "abcdef.0123456789abcdef"
SERVER = "https://10.0.0.1:6443"
CA = b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"


def discovery_kubeconfig(server: str = SERVER) -> str:
    return kc.dump(kc.kubeconfig_without_user(server, CA))


def file_doc(path: str) -> dict[str, Any]:
    return {"apiVersion": V4, "kind": "JoinConfiguration", "nodeRegistration": {"name": "w1"},
            "discovery": {"file": {"kubeConfigPath": path}, "tlsBootstrapToken": TOKEN}}


@pytest.fixture
def discovery_file(tmp_path: Path) -> Path:
    path = tmp_path / "discovery.conf"
    path.write_text(discovery_kubeconfig())
    return path


def test_the_file_is_read_when_the_join_is_built_and_its_run_carries_the_text(discovery_file: Path) -> None:
    cfg = build_join_config([file_doc(str(discovery_file))])
    assert cfg.discovery_kubeconfig == discovery_kubeconfig()
    docs = run_documents(cfg)
    assert docs[1] == {"apiVersion": API, "kind": KIND, "kubeConfigPath": str(discovery_file),
                       "kubeConfig": discovery_kubeconfig()}


def test_the_runs_rebuild_takes_the_carried_text_and_never_looks_at_the_path(discovery_file: Path) -> None:
    docs = run_documents(build_join_config([file_doc(str(discovery_file))]))
    discovery_file.write_text("changed on the submitter afterwards")
    rebuilt = build_join_config(copy.deepcopy(docs), "run r-1", run=True)
    assert rebuilt.discovery_kubeconfig == discovery_kubeconfig()
    discovery_file.unlink()  # as on another machine: the path does not exist there
    assert build_join_config(copy.deepcopy(docs), "run r-1", run=True).discovery_kubeconfig == discovery_kubeconfig()


def test_a_run_with_a_local_discovery_file_but_no_copy_is_refused(discovery_file: Path) -> None:
    with pytest.raises(ConfigError, match="the run carries no copy of the discovery file") as err:
        build_join_config([file_doc(str(discovery_file))], "run r-1", run=True)
    assert err.value.field == "discovery.file.kubeConfigPath"


def test_a_discovery_file_document_in_a_users_file_is_an_unknown_kind(discovery_file: Path) -> None:
    carried = {"apiVersion": API, "kind": KIND, "kubeConfigPath": "/x", "kubeConfig": "clusters: []"}
    with pytest.raises(ConfigError, match="unknown kind 'DiscoveryFile'"):
        build_join_config([file_doc(str(discovery_file)), carried], "join.yaml")


def test_an_https_discovery_url_is_left_to_the_node() -> None:
    cfg = build_join_config([file_doc("https://example.test/discovery.conf")])
    assert cfg.discovery_kubeconfig is None
    assert len(run_documents(cfg)) == 1
    assert build_join_config(run_documents(cfg), "run r-1", run=True).discovery_kubeconfig is None


@pytest.mark.parametrize(("content", "fragment"), [
    (None, "cannot read the discovery file: Is a directory"),
    ("clusters: [\n", "the discovery file is not a kubeconfig"),
    ("apiVersion: v1\nkind: Config\nclusters: []\n", NO_CLUSTER),
], ids=["a directory", "not YAML", "no cluster"])
def test_an_unusable_discovery_file_is_one_line_naming_it(tmp_path: Path, content: str | None, fragment: str) -> None:
    path = tmp_path / "discovery.conf"
    if content is None:
        path.mkdir()
    else:
        path.write_text(content)
    with pytest.raises(ConfigError) as err:
        build_join_config([file_doc(str(path))], "<flags>")
    text = str(err.value)
    assert text.startswith(f'<flags>: JoinConfiguration: discovery.file.kubeConfigPath: "{path}": ')
    assert fragment in text and "\n" not in text


def test_the_node_workers_config_comes_from_the_run_not_its_filesystem(discovery_file: Path) -> None:
    docs = run_documents(build_join_config([file_doc(str(discovery_file))]))
    discovery_file.unlink()

    class Store:
        def run_config(self, run_id: str) -> list[dict[str, Any]]:
            assert run_id == "r-1"
            return copy.deepcopy(docs)

    rt = WorkerRuntime(role="node", redis_url="redis://127.0.0.1:1/0", settings=Settings())
    rt.__dict__["store"] = Store()  # the cached property, as a worker would have it
    assert rt.join_config("r-1").discovery_kubeconfig == discovery_kubeconfig()


def test_discovery_starts_from_the_carried_kubeconfig(tmp_path: Path, discovery_file: Path) -> None:
    join = build_join_config(run_documents(build_join_config([file_doc(str(discovery_file))])), "run r-1", run=True)
    discovery_file.unlink()
    asked: list[tuple[str, bytes | None]] = []

    def fetch(endpoint: str, ca: bytes | None) -> dict[str, Any]:
        asked.append((endpoint, ca))
        return {"data": {"kubeconfig": discovery_kubeconfig("https://10.0.0.9:6443")}}

    ctx = JoinNodeContext(join.provisional_init_config(), NodeFS(tmp_path / "node"), join=join, fetch=fetch)
    info = joincluster.discover(ctx)
    assert asked == [("10.0.0.1:6443", CA)]  # cluster-info read again with the file's CA, at its server
    assert info.server == "https://10.0.0.9:6443"


def test_a_missing_discovery_file_flag_is_exit_2_and_one_line(tmp_path: Path) -> None:
    from kubeboot.workers.cli import main

    missing = tmp_path / "nowhere.conf"
    result = CliRunner().invoke(main, ["join", "phase", "preflight", "--discovery-file", str(missing), "--token",
                                       TOKEN, "--node-name", "w1", "--root", str(tmp_path / "root")])
    assert result.exit_code == 2, result.output
    assert f'"{missing}": not a valid HTTPS URL or a file on disk' in result.output
    assert result.output.count("\n") == 1
