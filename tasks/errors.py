"""The error taxonomy of phases (ARCHITECTURE section 2): temporary, permanent, or a bug."""

from __future__ import annotations


class PhaseError(Exception):
    """A phase cannot continue; the message says what to fix."""


class PermanentError(PhaseError):
    """Retrying will not help until a person changes something."""


class TemporaryError(PhaseError):
    """The world is not ready yet; retry after ``delay`` seconds."""

    def __init__(self, message: str, delay: float = 5.0) -> None:
        super().__init__(message)
        self.delay = delay


class RunStopped(PhaseError):
    """The run state already recorded why the run stopped (attempt ceiling, superseded run, a finish
    with phases left): the task fails with this message and its chain goes no further."""
