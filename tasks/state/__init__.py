"""Run state in Redis: the run store, cluster locks and sealed secrets (schemas in each module)."""

from kubeboot.tasks.state.lock import InitLock, LockHeldError, LockHolder, SerialLock, control_plane_join_lock
from kubeboot.tasks.state.records import Event, PhaseRecord, RunRecord
from kubeboot.tasks.state.secrets import SecretBox, SecretError, box_from_settings, load_or_create_key
from kubeboot.tasks.state.store import RunExistsError, RunStore, spec_digest
from kubeboot.tasks.state.transitions import NoSuchRunError, Verdict

__all__ = [
    "Event",
    "InitLock",
    "LockHeldError",
    "LockHolder",
    "NoSuchRunError",
    "PhaseRecord",
    "RunExistsError",
    "RunRecord",
    "RunStore",
    "SecretBox",
    "SecretError",
    "SerialLock",
    "Verdict",
    "box_from_settings",
    "control_plane_join_lock",
    "load_or_create_key",
    "spec_digest",
]
