"""Redaction of secrets in text that leaves a process: a table of inputs and what is left of them."""

from __future__ import annotations

import io
import logging

import pytest

from kubeboot.tasks.redaction import RedactingFilter, install_filter, redact, redact_value

TOKEN = "q7x2kd.m4v9t1z8r3p6w0yb"
KEY = "3f1c2a9be0d4475c8a61f0e2b9d3c7a45e6f8091b2c3d4e5f60718293a4b5c6d"
PEM_KEY = ("-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEIBkg4LVWM9nuwNSk3yByxZpYRTBnVJk5dxh2+5bGt0SLoAoGCCqGSM49\n"
           "AwEHoUQDQgAE7B2m0Q==\n-----END EC PRIVATE KEY-----")
CA_HASH = "sha256:" + "a" * 64

CASES = [
    pytest.param("[bootstrap-token] Using token: " + TOKEN, "[bootstrap-token] Using token: q7x2kd.<redacted>",
                 id="kubeadm's Using token line shows the token id only"),
    pytest.param(f"Using tokens: [{TOKEN} abcdef.0123456789abcdef]",
                 "Using tokens: [q7x2kd.<redacted> abcdef.<redacted>]", id="every token of a list"),
    pytest.param(f"kubeadm join cp:6443 --token {TOKEN} \\\n\t--discovery-token-ca-cert-hash {CA_HASH} "
                 f"\\\n\t--control-plane --certificate-key {KEY}",
                 f"kubeadm join cp:6443 --token q7x2kd.<redacted> \\\n\t--discovery-token-ca-cert-hash {CA_HASH} "
                 "\\\n\t--control-plane --certificate-key <redacted>",
                 id="a join command keeps its CA hash, loses its token secret and certificate key"),
    pytest.param(f"[upload-certs] Using certificate key:\n{KEY}", "[upload-certs] Using certificate key:\n<redacted>",
                 id="kubeadm's certificate key line, the key on the next line"),
    pytest.param(f"certificateKey: {KEY}", "certificateKey: <redacted>", id="a config field"),
    pytest.param(f'{{"certificate-key": "{KEY}"}}', '{"certificate-key": "<redacted>"}', id="a JSON field"),
    pytest.param(f"--certificate-key={KEY}", "--certificate-key=<redacted>", id="a flag with ="),
    pytest.param(f"spec digest {'b' * 64}", f"spec digest {'b' * 64}", id="other 64-hex values stay"),
    pytest.param(f"cert hash {CA_HASH}", f"cert hash {CA_HASH}", id="a CA hash stays"),
    pytest.param(f"before\n{PEM_KEY}\nafter", "before\n<redacted private key>\nafter", id="a PEM private key block"),
    pytest.param("-----BEGIN RSA PRIVATE KEY-----\nMIIEow", "<redacted private key>",
                 id="a private key block cut short"),
    pytest.param("-----BEGIN PRIVATE KEY-----\nMC4CAQ\n-----END PRIVATE KEY-----", "<redacted private key>",
                 id="a PKCS#8 block"),
    pytest.param("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----",
                 "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----", id="a certificate stays"),
    pytest.param("    client-key-data: LS0tLS1CRUdJTiBFQyBQUklWQVRFIEtFWS0tLS0t\n    token: x",
                 "    client-key-data: <redacted>\n    token: x", id="a kubeconfig's client key"),
    pytest.param("task kubeboot.tasks.phases.kubeletfinalize1 ran", "task kubeboot.tasks.phases.kubeletfinalize1 ran",
                 id="a dotted name with 6- and 16-character parts stays"),
    pytest.param("xq7x2kd.m4v9t1z8r3p6w0yb", "xq7x2kd.m4v9t1z8r3p6w0yb", id="7 characters before the dot: no token"),
    pytest.param("q7x2kd.m4v9t1z8r3p6w0yb9", "q7x2kd.m4v9t1z8r3p6w0yb9", id="17 characters after it: no token"),
    pytest.param("bootstrap-token-q7x2kd", "bootstrap-token-q7x2kd", id="a token Secret's name stays"),
    pytest.param("", "", id="empty"),
]


@pytest.mark.parametrize(("text", "expected"), CASES)
def test_redact(text: str, expected: str) -> None:
    assert redact(text) == expected


@pytest.mark.parametrize(("text", "expected"), CASES)
def test_redacting_twice_changes_nothing_more(text: str, expected: str) -> None:
    assert redact(redact(text)) == expected


def test_nested_event_fields_are_redacted_and_other_values_kept() -> None:
    fields = {"args": f"('r-1', '{TOKEN}')", "kwargs": {"k": [KEY, f"--certificate-key {KEY}"]},
              "retries": 2, "eta": None, "pair": (TOKEN, 1.5)}
    assert redact_value(fields) == {
        "args": "('r-1', 'q7x2kd.<redacted>')", "kwargs": {"k": [KEY, "--certificate-key <redacted>"]},
        "retries": 2, "eta": None, "pair": ("q7x2kd.<redacted>", 1.5)}


def _logger_to(stream: io.StringIO, name: str) -> logging.Logger:
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    handler.addFilter(RedactingFilter())
    logger = logging.getLogger(name)
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(logging.INFO)
    return logger


def test_the_filter_redacts_the_arguments_of_a_lazy_log_call() -> None:
    out = io.StringIO()
    _logger_to(out, "test.redaction.args").info("[%s] Using token: %s (%d%%)", "cp1", TOKEN, 100)
    assert out.getvalue() == "INFO [cp1] Using token: q7x2kd.<redacted> (100%)\n"


def test_the_filter_redacts_the_traceback_of_a_logged_exception() -> None:
    out = io.StringIO()
    logger = _logger_to(out, "test.redaction.exc")
    try:
        raise RuntimeError(f"join with --token {TOKEN} --certificate-key {KEY}\n{PEM_KEY}")
    except RuntimeError:
        logger.exception("phase failed")
    text = out.getvalue()
    assert "Traceback (most recent call last)" in text
    assert "RuntimeError: join with --token q7x2kd.<redacted> --certificate-key <redacted>" in text
    assert TOKEN.split(".")[1] not in text and KEY not in text and "PRIVATE KEY-----" not in text


def test_install_filter_reaches_the_handlers_of_the_root_and_of_named_loggers() -> None:
    root_out, named_out = io.StringIO(), io.StringIO()
    root = logging.getLogger()
    root_handler = logging.StreamHandler(root_out)
    root.addHandler(root_handler)
    named = logging.getLogger("test.redaction.install")
    named_handler = logging.StreamHandler(named_out)
    named.handlers[:] = [named_handler]
    named.propagate = False
    try:
        assert install_filter() >= 2
        assert install_filter() >= 2  # a second call adds no second filter
        assert sum(isinstance(f, RedactingFilter) for f in named_handler.filters) == 1
        root.warning("token %s", TOKEN)
        named.warning("key: certificate key %s", KEY)
    finally:
        root.removeHandler(root_handler)
    assert root_out.getvalue() == "token q7x2kd.<redacted>\n"
    assert named_out.getvalue() == "key: certificate key <redacted>\n"


def test_a_token_strings_repr_shows_its_id_only() -> None:
    from kubeboot.tasks.tokens import parse_token

    token = parse_token(TOKEN)
    assert repr(token) == "TokenString(id='q7x2kd')"
    assert str(token) == TOKEN  # what the phases put in the Secret and the join command
