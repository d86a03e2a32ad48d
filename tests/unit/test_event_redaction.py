"""Task events (what Flower shows: args, exceptions, tracebacks) leave the process redacted."""

from __future__ import annotations

from typing import Any

from kubeboot.config.settings import Settings
from kubeboot.workers.celery_app import make_app

TOKEN = "q7x2kd.m4v9t1z8r3p6w0yb"
KEY = "3f1c2a9be0d4475c8a61f0e2b9d3c7a45e6f8091b2c3d4e5f60718293a4b5c6d"


class Producer:
    """Stands in for kombu's producer: keeps what would have gone to the broker."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    def publish(self, event: dict[str, Any], **_: Any) -> None:
        self.sent.append(event)


def dispatcher() -> Any:
    app = make_app("redis://127.0.0.1:1/0", Settings())
    return app.events.Dispatcher(enabled=False)


def test_a_published_event_carries_no_token_secret_certificate_key_or_private_key() -> None:
    producer = Producer()
    dispatcher().publish("task-failed", {
        "uuid": "u-1", "args": "('r-1', 'cp1')",
        "exception": f"PermanentError('join --token {TOKEN} --certificate-key {KEY}')",
        "traceback": "Traceback ...\n-----BEGIN EC PRIVATE KEY-----\nMHc\n-----END EC PRIVATE KEY-----\n",
    }, producer)
    [event] = producer.sent
    assert event["type"] == "task-failed" and event["uuid"] == "u-1" and event["args"] == "('r-1', 'cp1')"
    assert event["exception"] == "PermanentError('join --token q7x2kd.<redacted> --certificate-key <redacted>')"
    assert event["traceback"] == "Traceback ...\n<redacted private key>\n"


def test_a_sent_event_is_redacted_too() -> None:
    d = dispatcher()
    captured: list[dict[str, Any]] = []
    d._publish = lambda event, producer, routing_key, **_: captured.append(event)  # the broker's side
    d.enabled, d._closed = True, False
    d.send("task-retried", uuid="u-2", exception=f"TemporaryError('token {TOKEN} not yet valid')", retry=False)
    [event] = captured
    assert event["exception"] == "TemporaryError('token q7x2kd.<redacted> not yet valid')"
    assert "retry" not in event  # options of send stay options
