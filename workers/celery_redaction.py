"""The safety net under the phases' own redaction, in the Celery processes: no token secret,
certificate key or private key reaches a log line or a task event (what Flower shows).

- ``connect_log_redaction``: when Celery sets up logging (the worker's main process, its pool
  children, the task logger), ``tasks.redaction.install_filter`` puts the redacting filter on every
  handler, so whatever a phase, a library or Celery itself logs — messages, exceptions, redirected
  ``print`` output — is redacted before it is written.
- ``RedactingEvents``: the app's events class; its dispatcher redacts the string fields of every event
  it sends (``task-sent`` from the submitter; ``task-failed`` with the exception and traceback,
  ``task-retried``, ``task-received`` with args from the workers) before it is published to the
  broker, where Flower and any other monitor read them.
"""

from __future__ import annotations

from typing import Any

from celery.app.events import Events
from celery.events.dispatcher import EventDispatcher

from kubeboot.tasks.redaction import install_filter, redact_value


class RedactingDispatcher(EventDispatcher):  # type: ignore[misc]  # celery ships no type information
    def send(self, type: str, *args: Any, **fields: Any) -> Any:  # Celery names it "type"
        return super().send(type, *args, **redact_value(fields))

    def publish(self, type: str, fields: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        return super().publish(type, redact_value(fields), *args, **kwargs)


class RedactingEvents(Events):  # type: ignore[misc]
    dispatcher_cls = f"{__name__}:RedactingDispatcher"


def _install(**_: Any) -> None:
    install_filter()


def connect_log_redaction() -> None:
    """Redact every handler Celery configures, in this process and its pool children (idempotent:
    Celery's signals keep one receiver per function)."""
    from celery import signals

    for signal in (signals.after_setup_logger, signals.after_setup_task_logger, signals.worker_process_init):
        signal.connect(_install, weak=False)


def flower_logging() -> None:
    """Flower's log on stderr, redacted: a root handler set up before Flower starts (tornado then adds
    none of its own, it only sets the level), with tornado's format."""
    import logging

    from tornado.log import LogFormatter

    handler = logging.StreamHandler()
    handler.setFormatter(LogFormatter(color=False))
    logging.getLogger().addHandler(handler)
    install_filter()
