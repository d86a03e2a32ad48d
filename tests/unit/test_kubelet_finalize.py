"""kubelet-finalize/enable-client-cert-rotation: kubelet.conf pointed at the kubelet's rotatable PEM exactly
as kubeadm's clientcmd rewrite leaves it, the kubelet restarted once, and nothing done twice
(kubeadm-spec 2.12; kubeadm cmd/phases/init/kubeletfinalize.go)."""

from __future__ import annotations

import base64
import re
from collections.abc import Callable
from pathlib import Path

import pytest

from kubeboot.config.loader import build_init_config
from kubeboot.config.resolved import InitConfig
from kubeboot.tasks import kubeconfig as kc
from kubeboot.tasks.errors import PermanentError
from kubeboot.tasks.fsutil import NodeFS
from kubeboot.tasks.phases import kubeletfinalize as phase
from kubeboot.tasks.phases.context import MemorySecrets, NodeContext

V4 = "kubeadm.k8s.io/v1beta4"
CONF = "/etc/kubernetes/kubelet.conf"
PEM = "/var/lib/kubelet/pki/kubelet-client-current.pem"
CA = b"-----BEGIN CERTIFICATE-----\nCA\n-----END CERTIFICATE-----\n"
LINE = '[kubelet-finalize] Updating "/etc/kubernetes/kubelet.conf" to point to a rotatable kubelet client ' \
       "certificate and key"


class RecordingKubelet:
    """Stands in for the node's kubelet service: counts restarts, may fail one."""

    def __init__(self, fail_first: bool = False) -> None:
        self.restarts = 0
        self._fail = fail_first

    @property
    def healthz_url(self) -> str:
        return "http://127.0.0.1:10248/healthz"

    def stop(self, out: Callable[[str], None]) -> None:
        pass

    def start(self, out: Callable[[str], None]) -> None:
        pass

    def restart(self, out: Callable[[str], None]) -> None:
        if self._fail:
            self._fail = False
            raise RuntimeError("worker killed during the restart")
        self.restarts += 1

    def is_active(self) -> bool:
        return True


def make_cfg(**registration: object) -> InitConfig:
    return build_init_config([
        {"apiVersion": V4, "kind": "InitConfiguration", "nodeRegistration": {"name": "cp1", **registration},
         "localAPIEndpoint": {"advertiseAddress": "10.0.0.10"}},
        {"apiVersion": V4, "kind": "ClusterConfiguration"}])


def kubelet_conf() -> str:
    """kubelet.conf as kubeboot's kubeconfig phase writes it: embedded certificate and key."""
    doc = kc.kubeconfig_with_certs("https://10.0.0.10:6443", "kubernetes", "system:node:cp1", CA,
                                   b"KEY PEM", b"CERT PEM")
    return kc.dump(doc)


EXPECTED = f"""\
apiVersion: v1
clusters:
- cluster:
    certificate-authority-data: {base64.b64encode(CA).decode()}
    server: https://10.0.0.10:6443
  name: kubernetes
contexts:
- context:
    cluster: kubernetes
    user: system:node:cp1
  name: system:node:cp1@kubernetes
current-context: system:node:cp1@kubernetes
kind: Config
preferences: {{}}
users:
- name: system:node:cp1
  user:
    client-certificate: {PEM}
    client-key: {PEM}
"""


@pytest.fixture
def fs(tmp_path: Path) -> NodeFS:
    nfs = NodeFS(tmp_path)
    nfs.write(CONF, kubelet_conf(), mode=0o600)
    nfs.write(PEM, b"CERT AND KEY", mode=0o600)
    return nfs


def run(fs: NodeFS, cfg: InitConfig | None = None, kubelet: RecordingKubelet | None = None,
        secrets: MemorySecrets | None = None) -> list[str]:
    lines: list[str] = []
    ctx = NodeContext(cfg or make_cfg(), fs, out=lines.append, kubelet=kubelet,
                      secrets=secrets or MemorySecrets())
    phase.run_kubelet_finalize(ctx)
    return lines


def test_kubelet_conf_points_at_the_pem_exactly_as_kubeadm_rewrites_it(fs: NodeFS) -> None:
    kubelet = RecordingKubelet()
    assert run(fs, kubelet=kubelet) == [LINE]
    assert fs.read_text(CONF) == EXPECTED
    assert fs.path(CONF).stat().st_mode & 0o777 == 0o600
    assert kubelet.restarts == 1


def test_a_second_run_rewrites_nothing_and_does_not_restart_the_kubelet(fs: NodeFS) -> None:
    kubelet, secrets = RecordingKubelet(), MemorySecrets()
    run(fs, kubelet=kubelet, secrets=secrets)
    mtime = fs.path(CONF).stat().st_mtime_ns
    assert run(fs, kubelet=kubelet, secrets=secrets) == [LINE]
    assert fs.path(CONF).stat().st_mtime_ns == mtime
    assert kubelet.restarts == 1


def test_a_file_already_pointing_at_the_pem_in_a_new_run_is_left_alone(fs: NodeFS) -> None:
    fs.write(CONF, EXPECTED, mode=0o600)
    mtime = fs.path(CONF).stat().st_mtime_ns
    kubelet = RecordingKubelet()
    run(fs, kubelet=kubelet)
    assert (fs.path(CONF).stat().st_mtime_ns, kubelet.restarts) == (mtime, 0)


def test_an_attempt_killed_between_rewrite_and_restart_restarts_the_kubelet_on_retry(fs: NodeFS) -> None:
    kubelet, secrets = RecordingKubelet(fail_first=True), MemorySecrets()
    with pytest.raises(RuntimeError):
        run(fs, kubelet=kubelet, secrets=secrets)
    assert fs.read_text(CONF) == EXPECTED
    run(fs, kubelet=kubelet, secrets=secrets)
    assert kubelet.restarts == 1
    run(fs, kubelet=kubelet, secrets=secrets)
    assert kubelet.restarts == 1


def test_without_the_pem_rotation_is_off_and_nothing_happens(fs: NodeFS) -> None:
    fs.remove(PEM)
    before = fs.read_text(CONF)
    kubelet = RecordingKubelet()
    assert run(fs, kubelet=kubelet) == []
    assert (fs.read_text(CONF), kubelet.restarts) == (before, 0)


def test_a_cert_dir_among_the_kubelet_extra_args_is_where_the_pem_is_looked_for(fs: NodeFS) -> None:
    fs.remove(PEM)
    fs.write("/srv/kubelet-pki/kubelet-client-current.pem", b"CERT AND KEY")
    cfg = make_cfg(kubeletExtraArgs=[{"name": "cert-dir", "value": "/srv/kubelet-pki"}])
    assert run(fs, cfg) == [LINE]
    assert fs.read_text(CONF) == EXPECTED.replace(PEM, "/srv/kubelet-pki/kubelet-client-current.pem")


def test_dry_run_prints_the_line_and_changes_nothing(fs: NodeFS) -> None:
    before = fs.read_text(CONF)
    cfg = build_init_config([
        {"apiVersion": V4, "kind": "InitConfiguration", "dryRun": True, "nodeRegistration": {"name": "cp1"}},
        {"apiVersion": V4, "kind": "ClusterConfiguration"}])
    kubelet = RecordingKubelet()
    assert run(fs, cfg, kubelet) == [LINE]
    assert (fs.read_text(CONF), kubelet.restarts) == (before, 0)


@pytest.mark.parametrize("edit, message", [
    pytest.param(lambda t: t.replace("current-context: system:node:cp1@kubernetes", 'current-context: ""'),
                 'the file "/etc/kubernetes/kubelet.conf" does not have current context set', id="no current context"),
    pytest.param(lambda t: t.replace("current-context: system:node:cp1@kubernetes", "current-context: other"),
                 '"other" set as current-context, but not found in context list', id="unknown current context"),
    pytest.param(lambda t: t.replace("- name: system:node:cp1\n", "- name: someone-else\n"),
                 'does not contain authentication for user "cp1"', id="user entry missing"),
])
def test_a_corrupted_kubelet_conf_is_reported_with_kubeadms_message(
        fs: NodeFS, edit: Callable[[str], str], message: str) -> None:
    fs.write(CONF, edit(kubelet_conf()), mode=0o600)
    with pytest.raises(PermanentError, match=re.escape(message)):
        run(fs)


def test_a_missing_kubelet_conf_is_a_permanent_error(fs: NodeFS) -> None:
    fs.remove(CONF)
    with pytest.raises(PermanentError, match=re.escape('could not load "/etc/kubernetes/kubelet.conf"')):
        run(fs)
