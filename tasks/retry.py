"""Retry policies, defined once. One layer per timescale (STYLE habit 6):

- inside a phase, for hiccups of a second or two (an API call, a file lock): the tenacity policies
  below, named, each with its bound;
- between attempts of a phase, for waiting on the world (a control plane becoming healthy): the
  Celery retry of ``PhaseTask`` with ``backoff`` — jittered, exponential, capped by
  ``KUBEBOOT_RETRY_MAX_DELAY`` (``Settings.retry_max_delay``), which start-up checks is far below
  the broker's visibility timeout so a task waiting for its countdown is never delivered twice.
"""

from __future__ import annotations

import random
from typing import Any, Final

MAX_ATTEMPTS: Final = 12  # a phase that has started this many times fails the run
BACKOFF_BASE: Final = 1.0  # seconds before the 2nd attempt (before jitter)
BACKOFF_CAP: Final = 30.0  # never wait longer than this between attempts (Settings.retry_max_delay's default)


def backoff(attempt: int, hint: float | None = None, *, cap: float = BACKOFF_CAP,
            rng: random.Random | None = None) -> float:
    """Seconds to wait before attempt ``attempt + 1``: ``hint`` (the phase's own estimate) or
    exponential from BACKOFF_BASE, capped, with "full jitter" in [50 %, 100 %] so that many runs
    failing together do not retry in lockstep."""
    base = hint if hint is not None else BACKOFF_BASE * 2 ** max(0, attempt - 1)
    base = min(max(base, 0.0), cap)
    return round(base * (0.5 + 0.5 * (rng or random).random()), 3)


def api_call_policy() -> dict[str, Any]:
    """tenacity ``retry`` kwargs for one Kubernetes API call: 0.5 s apart (kubeadm's
    APICallRetryInterval), at most 10 tries, re-raising the last real error."""
    import tenacity

    return {
        "wait": tenacity.wait_fixed(0.5),
        "stop": tenacity.stop_after_attempt(10),
        "reraise": True,
    }
