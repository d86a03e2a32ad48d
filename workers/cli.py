"""The ``kubeboot`` command line.

Start-up time matters (every phase of a batch may shell out to it): this module imports only click
at load time; config models, cryptography and the phases are imported inside the commands that use
them. Exit codes: 0 success, 1 a phase failed, 2 bad input (one line on stderr saying what and where).
"""

from __future__ import annotations

import click

from kubeboot.workers.cli_common import BAD_INPUT, fail, split_csv


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(package_name="kubeboot", prog_name="kubeboot")
def main() -> None:
    """kubeboot bootstraps Kubernetes clusters the way `kubeadm init` and `kubeadm join` do.

    It writes the certificates, kubeconfig files, static Pod manifests, kubelet configuration and API
    objects that kubeadm writes, phase by phase, converging on re-runs instead of failing. Runs are
    Celery workflows (submit, status, resume; Flower shows them live): one node, a whole cluster, or a
    batch of clusters. Start with `kubeboot sandbox up` to try it on simulated machines.
    """


# --- config ----------------------------------------------------------------------------------------


@main.group("config")
def config_group() -> None:
    """Print defaults or validate a kubeadm configuration file (kubeadm.k8s.io/v1beta4 or v1beta3)."""


@config_group.group("print")
def config_print() -> None:
    """Print configuration."""


@config_print.command("init-defaults")
@click.option(
    "--component-configs",
    multiple=True,
    metavar="KIND[,KIND]",
    help="Also print these component configs: KubeletConfiguration, KubeProxyConfiguration.",
)
def print_init_defaults(component_configs: tuple[str, ...]) -> None:
    """Print the default InitConfiguration and ClusterConfiguration, like `kubeadm config print init-defaults`."""
    from kubeboot.config.printing import init_defaults_yaml

    kinds = split_csv(component_configs)
    try:
        click.echo(init_defaults_yaml(component_configs=kinds), nl=False)
    except ValueError as e:
        fail(f"--component-configs: {e}", BAD_INPUT)


@config_group.command("validate")
@click.argument("file", type=click.Path(dir_okay=False))
def validate(file: str) -> None:
    """Validate FILE; print "ok" or one line naming the document, field and problem (exit 2)."""
    from kubeboot.config.errors import ConfigError
    from kubeboot.config.loader import load_init_config

    try:
        load_init_config(file)
    except ConfigError as e:
        fail(str(e), BAD_INPUT)
    click.echo("ok")


# --- init phase ------------------------------------------------------------------------------------


def _phase_tree_help() -> str:
    from kubeboot.workflows.init_tree import INIT_PHASES
    from kubeboot.workflows.phase import walk

    lines = ["\b", "PATH is `all` (every phase), `local` (preflight to kubelet-start: what a node does before",
             "its control plane answers) or one of these phases, in the order `all` runs them:"]
    for placed in walk(INIT_PHASES, "init"):
        indent = "  " * (placed.depth + 1)
        lines.append(f"{indent}{placed.phase.name:<{28 - 2 * placed.depth}} {placed.phase.help}")
    return "\n".join(lines)


class _PhaseCommand(click.Command):
    def format_epilog(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        formatter.write_paragraph()
        for line in _phase_tree_help().splitlines()[1:]:
            formatter.write(line + "\n")


@main.group("init")
def init_group() -> None:
    """Run `kubeadm init` phases on this node, in this process (no broker)."""


@init_group.command("phase", cls=_PhaseCommand)
@click.argument("path", default="all", metavar="PATH")
@click.option("--config", "config_file", type=click.Path(dir_okay=False), help="kubeadm config file.")
@click.option("--root", default="/", show_default=True, type=click.Path(file_okay=False),
              help="Node root: every kubeadm path is written under it (/etc/kubernetes -> ROOT/etc/kubernetes).")
@click.option("--node", help="Node name (overrides nodeRegistration.name).")
@click.option("--skip-phases", multiple=True, metavar="PATH[,PATH]", help="Phases to skip (kubeadm paths).")
@click.option("--ignore-preflight-errors", multiple=True, metavar="NAME[,NAME]",
              help="Preflight checks whose errors become warnings; 'all' ignores every check.")
@click.option("--patches", type=click.Path(file_okay=False),
              help="Directory of patches for static Pods and the kubelet config (overrides patches.directory).")
@click.option("--kubelet", "kubelet_driver", type=click.Choice(["none", "systemd"]), default="none",
              show_default=True, help="How kubelet-start starts the kubelet.")
@click.option("--upload-certs", is_flag=True,
              help="Upload the control-plane certificates to the kubeadm-certs Secret (for control-plane joins).")
def init_phase(
    path: str,
    config_file: str | None,
    root: str,
    node: str | None,
    skip_phases: tuple[str, ...],
    ignore_preflight_errors: tuple[str, ...],
    patches: str | None,
    kubelet_driver: str,
    upload_certs: bool,
) -> None:
    """Run init phase PATH (a phase, a sub-phase such as certs/apiserver, or `all`) on a node root."""
    from kubeboot.workers.local_run import run_init_phase

    code, message = run_init_phase(
        path=path,
        config_file=config_file,
        root=root,
        node=node,
        skip=split_csv(skip_phases),
        ignore=split_csv(ignore_preflight_errors),
        patches=patches,
        kubelet_driver=kubelet_driver,
        upload_certs=upload_certs,
    )
    if code:
        # A failed phase's line is kubeadm's own ("error execution phase X: ..."), unprefixed.
        fail(message, code, prefix="error: " if code == BAD_INPUT else "")


def _register_commands() -> None:
    # Each command module imports only click and cli_common at load time (no cycle between them).
    from kubeboot.workers.cli_batch import submit_batch, submit_cluster
    from kubeboot.workers.cli_deploy import deploy_group
    from kubeboot.workers.cli_join import join_group, submit_join
    from kubeboot.workers.cli_runs import resume, runs, status, submit_group
    from kubeboot.workers.cli_sandbox import sandbox_group
    from kubeboot.workers.cli_workers import flower, worker_group

    for sub in (submit_join, submit_cluster, submit_batch):
        submit_group.add_command(sub)
    for cmd in (submit_group, status, runs, resume, join_group, worker_group, flower, sandbox_group, deploy_group):
        main.add_command(cmd)


_register_commands()

if __name__ == "__main__":
    main()
