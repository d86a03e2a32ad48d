"""``kubeboot join phase`` (in process) and ``kubeboot submit join`` (a run on the workers).

Both take what ``kubeadm join`` takes: ``ENDPOINT --token T --discovery-token-ca-cert-hash sha256:H
[--control-plane --certificate-key K] --node-name N``, or ``--config JOIN.yaml`` (with only
``--node-name``, ``--ignore-preflight-errors`` and ``--skip-phases`` beside it, as kubeadm's
ValidateMixedArguments). The flags become a v1beta4 JoinConfiguration validated like a file, so bad
input is one line and exit 2 before anything is sent or written. The token and the certificate key
end up only in that JoinConfiguration, which the run state keeps encrypted; nothing prints them.

Imports only click and ``cli_common`` at load time (see ``workers.cli``).
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

import click

from kubeboot.workers.cli_common import BAD_INPUT, FAILED, OUTPUTS, fail, services, split_csv

if TYPE_CHECKING:
    from kubeboot.config.join import JoinConfig

V4 = "kubeadm.k8s.io/v1beta4"
# Join flags that may not stand beside --config (kubeadm's isAllowedFlag allows --node-name,
# --ignore-preflight-errors, --skip-phases and the flags that are no part of the JoinConfiguration).
_NOT_WITH_CONFIG = {"endpoint", "token", "discovery_token", "tls_bootstrap_token", "ca_hashes", "unsafe_skip",
                    "discovery_file", "control_plane", "certificate_key", "apiserver_advertise_address",
                    "apiserver_bind_port", "cri_socket"}


def _join_options(fn: Any) -> Any:
    options = [
        click.argument("endpoint", required=False, metavar="[API-SERVER-ENDPOINT]"),
        click.option("--config", "config_file", type=click.Path(dir_okay=False),
                     help="JoinConfiguration file (kubeadm.k8s.io/v1beta4, or v1beta3 converted)."),
        click.option("--token", help="Token for both discovery and TLS bootstrap (<6>.<16> characters)."),
        click.option("--discovery-token", help="Token to validate cluster-info with (default --token)."),
        click.option("--tls-bootstrap-token", help="Token for the kubelet's TLS bootstrap (default --token)."),
        click.option("--discovery-token-ca-cert-hash", "ca_hashes", multiple=True, metavar="sha256:HEX",
                     help="Pin the cluster CA's public key (repeatable)."),
        click.option("--discovery-token-unsafe-skip-ca-verification", "unsafe_skip", is_flag=True,
                     help="Join without pinning the CA public key."),
        click.option("--discovery-file", help="Kubeconfig file or https URL with the cluster's server and CA."),
        click.option("--control-plane", is_flag=True, help="Create a new control plane instance on this node."),
        click.option("--certificate-key", help="Key to decrypt the kubeadm-certs Secret uploaded by init."),
        click.option("--apiserver-advertise-address", metavar="IP", help="This control plane's advertise address."),
        click.option("--apiserver-bind-port", type=int, help="This control plane's API server port."),
        click.option("--node-name", help="The node's name."),
        click.option("--cri-socket", help="CRI socket of the node."),
        click.option("--skip-phases", multiple=True, metavar="PATH[,PATH]", help="Phases to skip (kubeadm paths)."),
        click.option("--ignore-preflight-errors", multiple=True, metavar="NAME[,NAME]",
                     help="Preflight checks whose errors become warnings; 'all' ignores every check."),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def flags_document(p: dict[str, Any]) -> dict[str, Any]:
    """kubeadm's newJoinData: the flags as a v1beta4 JoinConfiguration document."""
    token = p.get("token") or ""
    discovery: dict[str, Any] = {}
    if p.get("discovery_file"):
        discovery["file"] = {"kubeConfigPath": p["discovery_file"]}
    elif p.get("endpoint"):
        discovery["bootstrapToken"] = {
            "token": p.get("discovery_token") or token, "apiServerEndpoint": p["endpoint"],
            "caCertHashes": list(p.get("ca_hashes") or []), "unsafeSkipCAVerification": bool(p.get("unsafe_skip"))}
    tls = p.get("tls_bootstrap_token") or token
    if tls:
        discovery["tlsBootstrapToken"] = tls
    nr: dict[str, Any] = {"name": p.get("node_name") or ""}
    if p.get("cri_socket"):
        nr["criSocket"] = p["cri_socket"]
    doc: dict[str, Any] = {"apiVersion": V4, "kind": "JoinConfiguration", "nodeRegistration": nr,
                           "discovery": discovery}
    if p.get("control_plane"):
        endpoint: dict[str, Any] = {"advertiseAddress": p.get("apiserver_advertise_address") or ""}
        if p.get("apiserver_bind_port"):
            endpoint["bindPort"] = p["apiserver_bind_port"]
        doc["controlPlane"] = {"localAPIEndpoint": endpoint, "certificateKey": p.get("certificate_key") or ""}
    return doc


def load_join(p: dict[str, Any]) -> JoinConfig:
    """The validated JoinConfig of these options; exits 2 with one line on bad input."""
    from kubeboot.config.errors import ConfigError
    from kubeboot.config.join import build_join_config, load_join_config

    try:
        if p.get("config_file"):
            mixed = sorted(k.replace("_", "-") for k, v in p.items() if v and k in _NOT_WITH_CONFIG)
            if mixed:
                fail(f"can not mix '--config' with arguments {mixed}", BAD_INPUT)
            join = load_join_config(p["config_file"])
            if p.get("node_name"):
                join.join.nodeRegistration.name = p["node_name"]
        else:
            # kubeadm only warns and drops these flags; a flag silently ignored is a mistake kubeboot refuses.
            cp_flags = (p.get("certificate_key"), p.get("apiserver_advertise_address"), p.get("apiserver_bind_port"))
            if not p.get("control_plane") and any(v is not None and v != "" for v in cp_flags):
                fail("--control-plane is also required when passing control-plane related flags such as "
                     "[certificate-key, apiserver-advertise-address, apiserver-bind-port]", BAD_INPUT)
            join = build_join_config([flags_document(p)], "<flags>")
        nr = join.join.nodeRegistration
        ignored = sorted({*nr.ignorePreflightErrors, *split_csv(p.get("ignore_preflight_errors") or ())})
        nr.ignorePreflightErrors = ignored  # kubeadm keeps the union in the configuration
        if "all" in {i.lower() for i in ignored} and len(ignored) > 1:
            fail(f"--ignore-preflight-errors: don't specify individual checks if 'all' is used (got "
                 f"{', '.join(ignored)})", BAD_INPUT)
        if not nr.name:
            fail("--node-name or .nodeRegistration.name in the config file is a required value", BAD_INPUT)
        return join
    except ConfigError as e:
        fail(str(e), BAD_INPUT)
    except ValueError as e:  # a value pydantic refused on assignment (--node-name)
        fail(f"--node-name: {e}", BAD_INPUT)


# --- join phase ------------------------------------------------------------------------------------


def _tree_help() -> str:
    from kubeboot.workflows.join_tree import JOIN_PHASES
    from kubeboot.workflows.phase import walk

    lines = ["PATH is `all` or one of these phases, in the order `all` runs them:"]
    for placed in walk(JOIN_PHASES, "join"):
        if not placed.phase.extra.get("hidden"):
            lines.append(f"{'  ' * (placed.depth + 1)}{placed.phase.name:<{28 - 2 * placed.depth}} "
                         f"{placed.phase.help}")
    return "\n".join(lines)


class _PhaseCommand(click.Command):
    def format_epilog(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        formatter.write_paragraph()
        for line in _tree_help().splitlines():
            formatter.write(line + "\n")


@click.group("join")
def join_group() -> None:
    """Run `kubeadm join` phases on this node, in this process (no broker)."""


@join_group.command("phase", cls=_PhaseCommand)
@click.argument("path", default="all", metavar="PATH")
@_join_options
@click.option("--root", default="/", show_default=True, type=click.Path(file_okay=False),
              help="Node root: every kubeadm path is written under it.")
@click.option("--kubelet", "kubelet_driver", type=click.Choice(["none", "systemd"]), default="none",
              show_default=True, help="How kubelet-start starts the kubelet.")
def join_phase(**p: Any) -> None:
    """Run join phase PATH (`all`, a phase, or a sub-phase such as control-plane-prepare/certs) here."""
    from kubeboot.workers.join_local_run import run_join_phase

    join = load_join(p)
    code, message = run_join_phase(join, path=p["path"], root=p["root"], skip=split_csv(p["skip_phases"]),
                                   kubelet_driver=p["kubelet_driver"])
    if code:
        fail(message, code, prefix="error: " if code == BAD_INPUT else "")


# --- submit join -----------------------------------------------------------------------------------


@click.command("join")
@_join_options
@click.option("--cluster", help="With an endpoint or --config: the run's label in `kubeboot runs` (default: the "
              "discovery endpoint). Alone with --node-name: join the node to this cluster with the token, keys and "
              "CA pin its `submit cluster` run holds.")
@click.option("--dry-run", is_flag=True, help="Change nothing: node files go to a temporary root (on the control "
              "worker, queue dry-run), API calls are printed or faked, discovery reads a made-up cluster-info.")
@click.option("--wait", is_flag=True, help="Follow the run live until it ends; exit 1 if it failed.")
@click.option("--timeout", default=None, metavar="DURATION", help="With --wait: give up following after this "
              "long (a Go duration, 10m0s); exit 1 if the run is still going.")
@click.option("-o", "--output", type=OUTPUTS, default="text", show_default=True)
def submit_join(**p: Any) -> None:
    """Join node --node-name to a cluster, as `kubeadm join` does (its worker: node.<node name>)."""
    from kubeboot.workflows.join_runs import plan_join
    from kubeboot.workflows.join_runs import submit_join as submit
    from kubeboot.workflows.runs import RunRefusedError
    from kubeboot.workflows.selection import UnknownPhaseError

    if _cluster_mode(p):
        _submit_added_node(p)
        return
    join = load_join(p)
    if p.get("dry_run"):
        join.join.dryRun = True
    timeout = _timeout(p.get("timeout"))
    skip = split_csv(p["skip_phases"])
    try:
        plan_join(join, "all", skip)
    except UnknownPhaseError as e:
        fail(str(e), BAD_INPUT)
    svc = services()
    try:
        sub = submit(svc.app(), svc.store, join, skip=skip, cluster=p.get("cluster"))
    except RunRefusedError as e:
        fail(str(e), FAILED)
    except ValueError as e:  # a --cluster label the run store refuses
        fail(f"--cluster: {e}", BAD_INPUT)
    role = "control-plane node" if join.is_control_plane else "node"
    if p["output"] == "text":
        click.echo(f"[submit] run {sub.run.id}: join of {role} {join.node_name} to {sub.run.cluster} "
                   f"(queues {', '.join(sub.queues)})")
        click.echo(f"[submit] follow it: kubeboot status {sub.run.id} --watch    Flower: {svc.flower_url(sub.run.id)}")
    if p["wait"] or p["output"] == "json":
        _follow(svc, sub.run.id, p["wait"], p["output"], timeout)


_DISCOVERY = ("endpoint", "config_file", "token", "discovery_token", "tls_bootstrap_token", "ca_hashes",
              "unsafe_skip", "discovery_file", "certificate_key")


def _cluster_mode(p: dict[str, Any]) -> bool:
    """``--cluster NAME --node-name N`` with nothing saying how to discover the cluster."""
    return bool(p.get("cluster")) and not any(p.get(k) for k in _DISCOVERY)


def _submit_added_node(p: dict[str, Any]) -> None:
    from pydantic import ValidationError

    from kubeboot.config.cluster import NodeSpec
    from kubeboot.workers.parent_commands import engine, show
    from kubeboot.workflows.cluster_runs import ClusterRefusedError, submit_added_node

    if not p.get("node_name"):
        fail("--node-name is required with --cluster (the node to add to the cluster)", BAD_INPUT)
    role = "control-plane" if p.get("control_plane") else "worker"
    if role == "control-plane" and not p.get("apiserver_advertise_address"):
        fail("--apiserver-advertise-address is required to add a control-plane node with --cluster", BAD_INPUT)
    try:
        node = NodeSpec(name=p["node_name"], address=p.get("apiserver_advertise_address") or "", role=role,
                        ignorePreflightErrors=split_csv(p.get("ignore_preflight_errors") or ()))
    except ValidationError as e:
        fail(f"--node-name / --apiserver-advertise-address: {e.errors()[0]['msg']}", BAD_INPUT)
    svc = services()
    try:
        run = submit_added_node(engine(svc), p["cluster"], node, dry_run=bool(p.get("dry_run")))
    except ClusterRefusedError as e:
        fail(str(e), FAILED)
    if p["output"] == "text":
        click.echo(f"[submit] cluster run {run.id}: join of {role} node {node.name} to cluster {p['cluster']} "
                   f"with its cluster run's token and keys (queue node.{node.worker})")
        click.echo(f"[submit] follow it: kubeboot status {run.id} --watch    Flower: {svc.flower_url(run.id)}")
    if p["wait"] or p["output"] == "json":
        show(svc, run.id, p["wait"], p["output"], _timeout(p.get("timeout")))


def _timeout(text: str | None) -> float | None:
    if not text:
        return None
    from kubeboot.config.duration import parse_seconds

    try:
        seconds = parse_seconds(text)
    except ValueError as e:
        fail(f"--timeout: {e}", BAD_INPUT)
    if not 0 < seconds < float("inf"):
        fail(f"--timeout: {text!r} must be a positive duration", BAD_INPUT)
    return seconds


def _follow(svc: Any, run_id: str, wait: bool, output: str, timeout: float | None) -> None:
    import time

    from kubeboot.workers.progress import render_table, status_json, watch

    status = svc.store.run_status(run_id)
    if wait:
        deadline = None if timeout is None else time.monotonic() + timeout
        status = watch(svc.store, run_id, click.echo if output == "text" else (lambda _: None), deadline=deadline)
    run = svc.store.get_run(run_id)
    phases = svc.store.phase_records(run_id)
    flower = svc.flower_url(run_id)
    click.echo(status_json(run, phases, flower) if output == "json" else render_table(run, phases, flower))
    if status == "failed" or (wait and status not in ("succeeded", "failed")):
        sys.exit(FAILED)
    done = {r.path for r in phases if r.status == "succeeded"}
    # kubeadm's closing text says the kubelet bootstrapped: not when kubelet-wait-bootstrap was skipped.
    if wait and output == "text" and status == "succeeded" and "kubelet-wait-bootstrap" in done:
        from kubeboot.workers.join_local_run import done_message

        click.echo(done_message(control_plane="control-plane-join/mark-control-plane" in done))
