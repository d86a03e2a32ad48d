"""Secrets out of text that leaves a process: log lines, run-state messages, task events.

``redact(text)`` rewrites, wherever they occur:
- a bootstrap token ``[a-z0-9]{6}.[a-z0-9]{16}`` → ``<id>.<redacted>`` (the id names the token's Secret and
  is no credential: kubeadm's own ``token list`` shows it);
- a certificate key (64 hex digits) after ``--certificate-key`` or ``certificate key`` (kubeadm's
  ``Using certificate key:`` line), or after a ``certificate-key:`` / ``certificateKey:`` field →
  ``<redacted>``; other 64-hex strings (CA hashes, spec digests) are left alone;
- a PEM private key block ``-----BEGIN ... PRIVATE KEY----- ... -----END ... PRIVATE KEY-----`` (or a cut
  one, up to the end of the text) → ``<redacted private key>``;
- a kubeconfig's ``client-key-data: <base64>`` → ``client-key-data: <redacted>``.

Two layers use it. At the source, phases print what kubeadm prints, passed through ``redact`` when
their output goes to a log (``PhaseContext.shown``). As a safety net, ``RedactingFilter`` is installed on
every handler of a kubeboot process (``install_filter``): workers, the control worker, Flower, sandbox
components. The run store redacts the messages it records and the Celery app its task events.

Pure: imports only ``re`` and ``logging`` (phases use it; it must not bring celery or redis).
"""

from __future__ import annotations

import logging
import re
from typing import Any, Final

REDACTED: Final = "<redacted>"
REDACTED_KEY: Final = "<redacted private key>"

# A token inside a longer run of [a-z0-9] is no token, nor is one continuing a dotted name
# ("kubeboot.phases.<16 chars>"): a token never follows "<name>." in what kubeboot prints.
_TOKEN: Final = re.compile(r"(?<![a-z0-9])(?<![a-z0-9]\.)([a-z0-9]{6})\.[a-z0-9]{16}(?![a-z0-9])")
_CERT_KEY: Final = re.compile(
    r"((?:--certificate-key|certificate[ _-]?key|certificateKey)[\"']?\s*[:=]?\s*[\"']?)[0-9a-fA-F]{64}(?![0-9a-fA-F])",
    re.IGNORECASE)
_PRIVATE_KEY: Final = re.compile(
    r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----.*?(?:-----END [A-Z0-9 ]*PRIVATE KEY-----|\Z)", re.DOTALL)
_CLIENT_KEY_DATA: Final = re.compile(r"(client-key-data[\"']?\s*:\s*[\"']?)[A-Za-z0-9+/=]+")


# What each pattern cannot match without (a substring test is far cheaper than a scan with lookarounds,
# and most text redacted — task event fields: ids, names, argument reprs — holds none of them).
_HEX64: Final = re.compile(r"[0-9a-fA-F]{64}")  # IGNORECASE adds no character to [0-9a-fA-F]


def redact(text: str) -> str:
    """``text`` with every token secret, certificate key and private key replaced (see the module doc)."""
    if not text:
        return text
    if "PRIVATE KEY" in text:
        text = _PRIVATE_KEY.sub(REDACTED_KEY, text)
    if "client-key-data" in text:
        text = _CLIENT_KEY_DATA.sub(rf"\1{REDACTED}", text)
    if _HEX64.search(text):
        text = _CERT_KEY.sub(rf"\1{REDACTED}", text)
    return _TOKEN.sub(rf"\1.{REDACTED}", text) if "." in text else text


def redact_value(value: Any) -> Any:
    """``redact`` through strings nested in lists, tuples and dicts (task event fields); other values
    (numbers, None, callables) unchanged."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {k: redact_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(redact_value(v) for v in value)
    return value


class RedactingFilter(logging.Filter):
    """Rewrites a record's message, exception text and stack before any handler formats it.

    The message is rendered once (``getMessage``) and stored redacted with no arguments left, so a
    formatter downstream cannot put a secret back from ``args``. The exception text is pre-rendered
    too: a formatter uses ``exc_text`` when set instead of rendering the exception again.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a malformed record is the logging module's to report, not ours
            return True
        record.msg, record.args = redact(message), ()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


_FILTER: Final = RedactingFilter()


def install_filter() -> int:
    """Put the redacting filter on every handler of every logger configured so far (the root logger
    included); returns how many handlers carry it. Call again after anything adds handlers."""
    loggers: list[logging.Logger] = [logging.getLogger()]
    loggers += [lg for lg in logging.Logger.manager.loggerDict.values() if isinstance(lg, logging.Logger)]
    handlers = {id(h): h for lg in loggers for h in lg.handlers}
    for handler in handlers.values():
        if _FILTER not in handler.filters:
            handler.addFilter(_FILTER)
    return len(handlers)
