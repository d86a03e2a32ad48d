"""show-join-command (spec 2.14): kubeadm's closing text with the join commands.

Reads: the bootstrap tokens of this run (config, else the run secrets ``bootstrap-token.<i>`` the
bootstrap-token phase stored), the run secret ``certificate-key`` (present when upload-certs ran),
``admin.conf`` from the run's secrets (server and CA: the ``sha256:`` public key pin).
Writes: the run secret ``join-command`` = the printed text, so the CLI can show it again. Printed to a
log (``ctx.show_secrets`` false: a phase run as a task), the text shows tokens as ``<id>.<redacted>``
and the certificate key as ``<redacted>``.

The commands say ``kubeadm join`` on purpose: a stock kubeadm can join a kubeboot cluster. Text as
kubeadm's initDoneTempl (cmd/phases/init/showjoincommand.go) and joinCommandTemplate (cmd/util/join.go),
trailing spaces included.
"""

from __future__ import annotations

from typing import Final

from kubeboot.config import constants as c
from kubeboot.tasks import goyaml, pki, tokens
from kubeboot.tasks.phases.bootstraptoken import admin_ca_pem
from kubeboot.tasks.phases.context import ControlContext, PermanentError

ADMIN_CONF_PATH: Final = f"{c.KUBERNETES_DIR}/{c.ADMIN_CONF}"


def join_command(host_port: str, token: str, ca_hashes: list[str], *, control_plane: bool = False,
                 certificate_key: str = "") -> str:
    """kubeadm's joinCommandTemplate, rendered."""
    text = f"kubeadm join {host_port} --token {token} \\\n\t"
    text += "".join(f"--discovery-token-ca-cert-hash {h} " for h in ca_hashes)
    if control_plane:
        text += "\\\n\t--control-plane " + (f"--certificate-key {certificate_key}" if certificate_key else "")
    return text


def init_done_text(*, control_plane_endpoint: bool, upload_certs: bool, cp_command: str, worker_command: str,
                   kubeconfig_path: str = ADMIN_CONF_PATH) -> str:
    """kubeadm's initDoneTempl, rendered (it starts with an empty line, as dedent leaves it)."""
    text = f"""
Your Kubernetes control-plane has initialized successfully!

To start using your cluster, you need to run the following as a regular user:

  mkdir -p $HOME/.kube
  sudo cp -i {kubeconfig_path} $HOME/.kube/config
  sudo chown $(id -u):$(id -g) $HOME/.kube/config

Alternatively, if you are the root user, you can run:

  export KUBECONFIG=/etc/kubernetes/admin.conf

You should now deploy a pod network to the cluster.
Run "kubectl apply -f [podnetwork].yaml" with one of the options listed at:
  https://kubernetes.io/docs/concepts/cluster-administration/addons/

"""
    if control_plane_endpoint and upload_certs:
        text += f"""You can now join any number of the control-plane node running the following command on each as root:

  {cp_command}

Please note that the certificate-key gives access to cluster sensitive data, keep it secret!
As a safeguard, uploaded-certs will be deleted in two hours; If necessary, you can use
"kubeadm init phase upload-certs --upload-certs" to reload certs afterward.

"""
    elif control_plane_endpoint:
        text += f"""You can now join any number of control-plane nodes by copying certificate authorities
and service account keys on each node and then running the following as root:

  {cp_command}

"""
    return text + f"""Then you can join any number of worker nodes by running the following on each as root:

{worker_command}
"""


def admin_server(admin_conf: bytes) -> str:
    doc = goyaml.load(admin_conf) or {}
    context = next((x.get("context") or {} for x in doc.get("contexts") or []
                    if x.get("name") == doc.get("current-context")), {})
    cluster = next((x.get("cluster") or {} for x in doc.get("clusters") or []
                    if x.get("name") == context.get("cluster")), {})
    return str(cluster.get("server") or "")


def run_show_join_command(ctx: ControlContext) -> None:
    admin = ctx.kubeconfig(c.ADMIN_CONF)
    if not admin:
        raise PermanentError(f"{c.ADMIN_CONF} is not in this run's secrets: run the kubeconfig phase first")
    host_port = admin_server(admin).replace("https://", "")
    ca_hash = pki.ca_cert_hash(pki.load_cert(admin_ca_pem(admin)))
    key = (ctx.secrets.get(c.SECRET_CERTIFICATE_KEY) or b"").decode()
    texts = []
    # kubeadm prints the whole text once per token.
    for token in tokens.resolve_tokens(ctx.cfg.init.bootstrapTokens, ctx.secrets):
        texts.append(init_done_text(
            control_plane_endpoint=bool(ctx.cfg.cluster.controlPlaneEndpoint), upload_certs=bool(key),
            cp_command=join_command(host_port, str(token), [ca_hash], control_plane=True, certificate_key=key),
            worker_command=join_command(host_port, str(token), [ca_hash])))
    text = "".join(texts)
    ctx.secrets.put(c.SECRET_JOIN_COMMAND, text.encode())
    # In a log the commands show without token secret and certificate key; the submitter reads
    # them whole from the run secret (``submit --wait``, ``status --show-join-command``).
    for line in ctx.shown(text).removesuffix("\n").split("\n"):
        ctx.out(line)
