"""klog-style log lines on stderr: ``I1129 05:13:00.123456   12345 file.py:42] message``.

The sandbox kubelet captures a component's stderr as its container log, so these lines read like
a real control-plane component's log next to etcd's.
"""

from __future__ import annotations

import logging
import os
import sys
import time

from kubeboot.tasks.redaction import install_filter

_LEVELS = {logging.DEBUG: "I", logging.INFO: "I", logging.WARNING: "W", logging.ERROR: "E", logging.CRITICAL: "F"}


class KlogFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%m%d %H:%M:%S", time.localtime(record.created))
        micros = int((record.created % 1) * 1_000_000)
        head = f"{_LEVELS.get(record.levelno, 'I')}{stamp}.{micros:06d} {os.getpid():>7} "
        text = f"{head}{record.filename}:{record.lineno}] {record.getMessage()}"
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return text


def setup(verbose: bool = False) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(KlogFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    install_filter()  # tokens and keys the component handles never reach its log
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    # The client library's connection chatter is not the component's log.
    logging.getLogger("urllib3").setLevel(logging.ERROR)
    logging.getLogger("kubernetes").setLevel(logging.WARNING)
