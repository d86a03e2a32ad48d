"""Bad configurations through ``kubeboot init phase local`` (in process): exit 2, one line naming the file,
the document and the field, and nothing written under the node root — for the inputs kubeadm refuses
(no kubeadm document, a component-config value of the wrong type) and those kubeboot refuses to keep
writes inside ``--root``; and the same for a JoinConfiguration through ``kubeboot join phase``."""

from __future__ import annotations

from pathlib import Path

import pytest

from kubeboot.workers.local_run import run_init_phase

INIT = """\
apiVersion: kubeadm.k8s.io/v1beta4
kind: InitConfiguration
nodeRegistration: {name: cp1}
localAPIEndpoint: {advertiseAddress: 10.0.0.10}
"""
CLUSTER = "---\napiVersion: kubeadm.k8s.io/v1beta4\nkind: ClusterConfiguration\nencryptionAlgorithm: ECDSA-P256\n"
KUBELET = "---\napiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\n"
PROXY = "---\napiVersion: kubeproxy.config.k8s.io/v1alpha1\nkind: KubeProxyConfiguration\n"

BAD = [
    ("an empty file", "", "no InitConfiguration or ClusterConfiguration kind was found in the YAML file"),
    ("only a KubeletConfiguration", KUBELET.removeprefix("---\n") + "maxPods: 10\n",
     "no InitConfiguration or ClusterConfiguration kind was found in the YAML file"),
    ("maxPods: lots", INIT + CLUSTER + KUBELET + "maxPods: lots\n",
     "KubeletConfiguration: maxPods: json: cannot unmarshal string into Go struct field "
     "KubeletConfiguration.maxPods of type int32"),
    ("a kube-proxy mode that is a list", INIT + CLUSTER + PROXY + "mode: [ipvs]\n",
     "KubeProxyConfiguration: mode: json: cannot unmarshal array into Go struct field"),
    ("certificatesDir with '..'", INIT + CLUSTER + "certificatesDir: /etc/kubernetes/../../../../tmp/pki\n",
     "ClusterConfiguration: certificatesDir: '/etc/kubernetes/../../../../tmp/pki' must not contain '..'"),
    ("etcd dataDir with '..'", INIT + CLUSTER + "etcd: {local: {dataDir: /var/lib/../../../../tmp/etcd}}\n",
     "ClusterConfiguration: etcd.local.dataDir: '/var/lib/../../../../tmp/etcd' must not contain '..'"),
    ("patches directory with '..'", INIT + "patches: {directory: /etc/kubeadm/../../patches}\n" + CLUSTER,
     "InitConfiguration: patches.directory: '/etc/kubeadm/../../patches' must not contain '..'"),
    ("a CRI socket of another scheme", INIT.replace("{name: cp1}", "{name: cp1, criSocket: 'tcp://10.0.0.1:2375'}")
     + CLUSTER, 'InitConfiguration: nodeRegistration.criSocket: Invalid value: "tcp://10.0.0.1:2375": only URL '
     'scheme "unix" is supported, got "tcp"'),
    ("a node name with an underscore", INIT.replace("{name: cp1}", "{name: cp_1}") + CLUSTER,
     'InitConfiguration: nodeRegistration.name: Invalid value: "cp_1": a lowercase RFC 1123 subdomain'),
    ("a negative bindPort", INIT.replace("10.0.0.10}", "10.0.0.10, bindPort: -1}") + CLUSTER,
     "InitConfiguration: localAPIEndpoint.bindPort: Input should be greater than or equal to 0"),
]


@pytest.mark.parametrize(("text", "fragment"), [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_configuration_is_exit_2_one_line_and_nothing_written(tmp_path: Path, text: str, fragment: str) -> None:
    config, root = tmp_path / "kubeadm.yaml", tmp_path / "root"
    config.write_text(text)
    root.mkdir()
    lines: list[str] = []
    code, message = run_init_phase(path="local", config_file=str(config), root=str(root), skip=["preflight"],
                                   out=lines.append)
    assert code == 2
    assert message.startswith(f"{config}: ") and fragment in message
    assert "\n" not in message
    assert list(root.iterdir()) == [] and lines == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kubeadm.yaml", "root"]


# --- the same for a JoinConfiguration, through `kubeboot join phase` -------------------------------------

JOIN = """\
apiVersion: kubeadm.k8s.io/v1beta4
kind: JoinConfiguration
nodeRegistration: {name: w1}
discovery:
  bootstrapToken: {token: abcdef.0123456789abcdef, apiServerEndpoint: "10.0.0.10:6443", unsafeSkipCAVerification: true}
"""

BAD_JOIN = [
    ("caCertPath with '..'", JOIN + "caCertPath: /etc/kubernetes/../../../../tmp/ca.crt\n",
     "JoinConfiguration: caCertPath: '/etc/kubernetes/../../../../tmp/ca.crt' must not contain '..'"),
    ("patches directory with '..'", JOIN + "patches: {directory: /etc/kubeadm/../../patches}\n",
     "JoinConfiguration: patches.directory: '/etc/kubeadm/../../patches' must not contain '..'"),
    ("a CRI socket of another scheme", JOIN.replace("{name: w1}", "{name: w1, criSocket: 'tcp://10.0.0.1:2375'}"),
     'JoinConfiguration: nodeRegistration.criSocket: Invalid value: "tcp://10.0.0.1:2375": only URL scheme "unix" '
     'is supported, got "tcp"'),
]


@pytest.mark.parametrize(("text", "fragment"), [b[1:] for b in BAD_JOIN], ids=[b[0] for b in BAD_JOIN])
def test_bad_join_configuration_is_exit_2_one_line_and_nothing_written(tmp_path: Path, text: str,
                                                                       fragment: str) -> None:
    from click.testing import CliRunner

    from kubeboot.workers.cli import main

    config, root = tmp_path / "join.yaml", tmp_path / "root"
    config.write_text(text)
    root.mkdir()
    result = CliRunner().invoke(main, ["join", "phase", "all", "--config", str(config), "--root", str(root)])
    assert result.exit_code == 2, result.output
    assert fragment in result.output and result.output.startswith(f"error: {config}: ")
    assert result.output.count("\n") == 1
    assert list(root.iterdir()) == []
