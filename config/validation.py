"""Cross-field rules kubeadm enforces beyond one field (ValidateInitConfiguration and friends)."""

from __future__ import annotations

from config.resolved import InitConfig


def validate_init_config(cfg: InitConfig) -> None:
    """Raise ``ConfigError`` for the first rule ``cfg`` breaks."""
