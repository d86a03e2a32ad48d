"""What every ``kubeboot`` command module shares: exit codes, the one-line failure, output choices,
and the connection to the broker and run state.

Contract: this module imports only click at load time (the CLI's start-up stays cheap, see
``tests/unit/test_cli_imports.py``), and it imports no other ``workers.cli*`` module: the command
modules import from here, never from each other, so there is no import cycle between them.

Exit codes: 0 success, ``FAILED`` (1) a phase or run failed or was refused, ``BAD_INPUT`` (2) bad
input — with one line on stderr saying what is wrong and where.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, NoReturn

import click

if TYPE_CHECKING:
    from kubeboot.workers.services import Services

BAD_INPUT = 2
FAILED = 1
OUTPUTS = click.Choice(["text", "json"])


def fail(message: str, code: int, *, prefix: str = "error: ") -> NoReturn:
    """Print ``message`` as one line on stderr and exit with ``code``. ``prefix=""`` for lines that
    already read as kubeadm's (``error execution phase X: ...``)."""
    click.echo(f"{prefix}{message}", err=True)
    sys.exit(code)


def split_csv(values: tuple[str, ...]) -> list[str]:
    """A repeatable ``A,B`` option as one flat list (kubeadm's comma-separated flags)."""
    return [v.strip() for item in values for v in item.split(",") if v.strip()]


def services() -> Services:
    """Connect to the broker and run state; bad settings are bad input, an embedded Redis that
    cannot start is a failure."""
    from kubeboot.config.errors import ConfigError
    from kubeboot.workers.redis_server import EmbeddedRedisError
    from kubeboot.workers.services import Services

    try:
        return Services.connect()
    except ConfigError as e:
        fail(str(e), BAD_INPUT)
    except EmbeddedRedisError as e:
        fail(str(e), FAILED)


def positive_duration(ctx: click.Context, param: click.Parameter, value: str | None) -> float | None:
    """A click callback: seconds, or a Go duration (``90s``, ``10m``, ``1h30m``)."""
    from kubeboot.config.duration import parse_seconds

    if value is None:
        return None
    try:
        seconds = parse_seconds(value)
    except ValueError:
        seconds = 0.0
    if not 0 < seconds < float("inf"):
        raise click.BadParameter(f"{value!r} is not a positive duration (e.g. 90s, 10m, 1h30m)")
    return seconds
