"""Go ``time.Duration`` strings (``4m0s``, ``8760h``, ``500ms``) as kubeadm's config API writes them."""

from __future__ import annotations

import re

_UNIT_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")


def parse_duration(text: str) -> float:
    """Seconds in a Go duration string; ValueError if it is not one."""
    s = text.strip()
    if s in ("0", ""):
        if s == "":
            raise ValueError("empty duration")
        return 0.0
    sign = -1.0 if s.startswith("-") else 1.0
    s = s.lstrip("+-")
    pos, total = 0, 0.0
    for m in _PART.finditer(s):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _UNIT_SECONDS[m.group(2)]
        pos = m.end()
    if pos != len(s) or pos == 0:
        raise ValueError(f"{text!r} is not a duration (expected e.g. 4m0s, 8760h, 500ms)")
    return sign * total


def parse_seconds(text: str) -> float:
    """Seconds written as a number (``90``, ``1.5``) or as a Go duration (``90s``, ``1h30m``), the form
    kubeboot's own settings and flags accept; ValueError if it is neither. The sign is not checked."""
    try:
        return float(text)
    except ValueError:
        return parse_duration(text)


def format_duration(seconds: float) -> str:
    """Go's canonical form: ``4m0s``, ``8760h0m0s``, ``1.5s``."""
    if seconds == 0:
        return "0s"
    neg = seconds < 0
    seconds = abs(seconds)
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    sec = f"{s:.9f}".rstrip("0").rstrip(".")
    out = ""
    if h:
        out += f"{int(h)}h"
    if h or m:
        out += f"{int(m)}m"
    out += f"{sec}s"
    return ("-" if neg else "") + out
