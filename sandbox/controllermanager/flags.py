"""Command-line flags of the emulated kube-controller-manager / kube-scheduler.

Accepts every flag in Go's pflag forms (``--name=value``, ``--name value``, a bare boolean ``--name``),
keeps the ones it uses and ignores the rest (they configure parts a sandbox does not emulate), so any
manifest kubeadm generates, extraArgs included, starts the component.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import timedelta

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_UNIT_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600}
_BOOLEAN = frozenset({"leader-elect", "use-service-account-credentials", "allocate-node-cidrs", "v"})


def parse_args(argv: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    i = 0
    while i < len(argv):
        arg = argv[i]
        i += 1
        if not arg.startswith("-"):
            continue
        name, eq, value = arg.lstrip("-").partition("=")
        if not eq:
            nxt = argv[i] if i < len(argv) else None
            if name not in _BOOLEAN and nxt is not None and not nxt.startswith("--"):
                value, i = nxt, i + 1
            else:
                value = "true"
        out[name] = value
    return out


def parse_duration(text: str) -> timedelta:
    """Go's time.ParseDuration for the forms flags use (``8760h0m0s``, ``30m``, ``1.5h``)."""
    pos, seconds = 0, 0.0
    for match in _DURATION.finditer(text):
        if match.start() != pos:
            break
        seconds += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        pos = match.end()
    if not text or pos != len(text):
        raise ValueError(f"invalid duration {text!r}")
    return timedelta(seconds=seconds)


@dataclass
class Flags:
    values: dict[str, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, argv: list[str]) -> Flags:
        return cls(parse_args(argv))

    def get(self, name: str, default: str = "") -> str:
        return self.values.get(name, default)

    def boolean(self, name: str, default: bool = False) -> bool:
        value = self.values.get(name)
        return default if value is None else value.lower() in ("true", "1", "t")

    def port(self, default: int) -> int:
        return int(self.get("secure-port", str(default)))

    def bind_address(self) -> str:
        return self.get("bind-address", "0.0.0.0") or "0.0.0.0"

    def controllers(self) -> list[str]:
        return [c.strip() for c in self.get("controllers", "*").split(",") if c.strip()]


# Controllers a real kube-controller-manager leaves off unless --controllers names them.
DISABLED_BY_DEFAULT = frozenset({"bootstrapsigner", "tokencleaner"})


def enabled(name: str, controllers: list[str]) -> bool:
    """IsControllerEnabled: named wins, ``-name`` disables, ``*`` means every default-on one."""
    if name in controllers:
        return True
    if f"-{name}" in controllers:
        return False
    return "*" in controllers and name not in DISABLED_BY_DEFAULT
