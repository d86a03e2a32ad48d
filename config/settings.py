"""Process settings read from the environment (``KUBEBOOT_*``), validated once, frozen.

Reads: the environment mapping it is given (``os.environ`` by default), and the files its ``*_FILE``
variables name (below). Nothing else: no network. The secret key file and the embedded Redis server
live in ``state_dir``, but creating or reading them is the job of ``tasks.state.secrets`` and
``workers.redis_server``.

| variable                     | field               | default                                          |
|------------------------------|---------------------|--------------------------------------------------|
| ``KUBEBOOT_REDIS_URL``       | redis_url           | None: the CLI starts an embedded Redis           |
| ``KUBEBOOT_STATE_DIR``       | state_dir           | ``$XDG_STATE_HOME/kubeboot``, else               |
|                              |                     | ``~/.local/state/kubeboot``                      |
| ``KUBEBOOT_SECRET_KEY``      | secret_key          | None: generated into ``state_dir/secret.key``    |
|                              |                     | (32 bytes, base64 or hex)                        |
| ``KUBEBOOT_VISIBILITY_TIMEOUT`` | visibility_timeout | 600 seconds: a message held unacked this long is |
|                              |                     | delivered again (the Redis broker's rule)        |
| ``KUBEBOOT_PHASE_TIME_LIMIT`` | phase_time_limit   | 150 seconds: one attempt of a phase is killed    |
|                              |                     | after this (hard limit; the soft limit, which    |
|                              |                     | the phase sees as an error, is 80 % of it)       |
| ``KUBEBOOT_RETRY_MAX_DELAY`` | retry_max_delay     | 30 seconds: the longest wait between attempts    |
| ``KUBEBOOT_FLOWER_URL``      | flower_url          | ``http://127.0.0.1:<flower_port>``               |
| ``KUBEBOOT_FLOWER_PORT``     | flower_port         | 5555                                             |
| ``KUBEBOOT_FLOWER_BASIC_AUTH`` | flower_basic_auth | None (``user:password[,user:password]``)         |
| ``KUBEBOOT_LOCK_TTL``        | lock_ttl            | 900 seconds: longer than the visibility timeout, |
|                              |                     | so a dead worker's run keeps its cluster lock    |
|                              |                     | until its phase is delivered again; every phase  |
|                              |                     | start renews it                                  |
| ``KUBEBOOT_SECRET_TTL``      | secret_ttl          | 24h: a run's secrets (tokens, certificate key,   |
|                              |                     | kubeconfigs, join command) are deleted from      |
|                              |                     | Redis this long after the run ends; seconds or a |
|                              |                     | Go duration (``90m``, ``24h``, ``1h30m``)        |
| ``KUBEBOOT_TASK_TTL``        | task_ttl            | 1h: how long the signature of a sent phase task  |
|                              |                     | holds (``tasks.trust.tokens``); a chain that     |
|                              |                     | outlives it is re-signed by the recovery sweep   |
| ``KUBEBOOT_REDIS_TLS_CA_FILE``, | redis_tls_ca,    | with a ``rediss://`` URL: the CA that signed the |
| ``..._CERT_FILE``,           | redis_tls_cert,     | Redis server's certificate, and this client's    |
| ``..._KEY_FILE``             | redis_tls_key       | certificate and key (Redis ``tls-auth-clients``) |
| ``KUBEBOOT_NODE_PINS_DIR``   | node_pins_dir       | control side: ``<worker id>.pub`` of every node  |
|                              |                     | worker (default ``<state dir>/keys/nodes``)      |
| ``KUBEBOOT_NODE_KEY_FILE``   | node_key_file       | node side: this node worker's private key        |
|                              |                     | (default ``<state dir>/keys/node-<id>.key``)     |
| ``KUBEBOOT_CONTROL_PUBLIC_KEY_FILE`` | control_public_key_file | node side: the pinned public keys of the |
|                              |                     | control side (default                            |
|                              |                     | ``<state dir>/keys/control.pub``)                |

Keys and passwords are better kept in files than in the environment (which ``/proc``, ``docker inspect``
and crash reports show): ``KUBEBOOT_SECRET_KEY_FILE``, ``KUBEBOOT_REDIS_URL_FILE`` (the URL holds the
Redis password) and ``KUBEBOOT_FLOWER_BASIC_AUTH_FILE`` name a file holding the value (a Docker secret
under ``/run/secrets/``, a systemd credential); setting both a variable and its ``_FILE`` is an error.

A bad value raises ``ConfigError`` naming the variable, never echoing a secret value.

The timing variables are checked together (``check_timing``), since each is only safe relative to the
others; a bad combination is a ``ConfigError`` naming every variable involved:

- ``VISIBILITY_TIMEOUT > PHASE_TIME_LIMIT + RETRY_MAX_DELAY``: a message is held unacked while its phase
  runs (up to the hard limit) and while its retry waits for its countdown; held longer than the
  visibility timeout, it would be delivered a second time while the first copy still runs.
- ``LOCK_TTL > VISIBILITY_TIMEOUT``: a live run renews its cluster lock at every phase start, so the
  longest gap is one attempt plus one retry delay (below the visibility timeout by the first rule); and
  when a worker dies and nobody restarts it, its phase comes back after the visibility timeout, which
  must find the run still holding its cluster.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from kubeboot.config import constants as c
from kubeboot.config.duration import parse_seconds
from kubeboot.config.errors import ConfigError

ENV_PREFIX = "KUBEBOOT_"
SECRET_KEY_BYTES = 32  # AES-256
DEFAULT_SECRET_TTL = 24 * 3600.0  # a day to read the join command; the tokens themselves live 24 h
_HEX_KEY = re.compile(r"[0-9a-fA-F]{64}")
_REDIS_SCHEMES = ("redis://", "rediss://", "unix://")
DEFAULT_TASK_TTL = 3600.0
# Variables whose value may come from a file instead (``<NAME>_FILE``): keys and passwords.
FILE_VARIABLES = ("SECRET_KEY", "REDIS_URL", "FLOWER_BASIC_AUTH")


@dataclass(frozen=True)
class Settings:
    """Everything a kubeboot process needs to find its broker, state and Flower."""

    redis_url: str | None = None
    state_dir: Path = field(default_factory=lambda: default_state_dir({}))
    # repr=False: settings get printed in debug output; key material must not be.
    secret_key: bytes | None = field(default=None, repr=False)
    visibility_timeout: int = 600
    flower_url: str | None = None
    flower_port: int = 5555
    flower_basic_auth: str | None = field(default=None, repr=False)
    lock_ttl: float = 900.0
    secret_ttl: float = DEFAULT_SECRET_TTL
    phase_time_limit: float = 150.0
    retry_max_delay: float = 30.0
    task_ttl: float = DEFAULT_TASK_TTL
    redis_tls_ca: Path | None = None
    redis_tls_cert: Path | None = None
    redis_tls_key: Path | None = None
    node_pins_dir: Path | None = None
    node_key_file: Path | None = None
    control_public_key_file: Path | None = None

    def __post_init__(self) -> None:
        check_timing(self)
        if (self.redis_tls_cert is None) != (self.redis_tls_key is None):
            raise ConfigError("a client certificate and its key go together: set both or neither",
                              field=f"{_var('REDIS_TLS_CERT_FILE')}, {_var('REDIS_TLS_KEY_FILE')}")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> Settings:
        env = _with_files({k: v for k, v in environ.items() if k.startswith(ENV_PREFIX) and v != ""})
        port = _positive_int(env, "FLOWER_PORT", 5555, maximum=65535)
        return cls(
            redis_url=_redis_url(env),
            state_dir=_state_dir(env, environ),
            secret_key=_secret_key(env),
            visibility_timeout=_positive_int(env, "VISIBILITY_TIMEOUT", 600),
            flower_url=_flower_url(env),
            flower_port=port,
            flower_basic_auth=_basic_auth(env),
            lock_ttl=_positive_duration(env, "LOCK_TTL", 900.0),
            secret_ttl=_positive_duration(env, "SECRET_TTL", DEFAULT_SECRET_TTL),
            phase_time_limit=_positive_duration(env, "PHASE_TIME_LIMIT", 150.0),
            retry_max_delay=_positive_duration(env, "RETRY_MAX_DELAY", 30.0),
            task_ttl=_positive_duration(env, "TASK_TTL", DEFAULT_TASK_TTL),
            redis_tls_ca=_path(env, "REDIS_TLS_CA_FILE"),
            redis_tls_cert=_path(env, "REDIS_TLS_CERT_FILE"),
            redis_tls_key=_path(env, "REDIS_TLS_KEY_FILE"),
            node_pins_dir=_path(env, "NODE_PINS_DIR"),
            node_key_file=_path(env, "NODE_KEY_FILE"),
            control_public_key_file=_path(env, "CONTROL_PUBLIC_KEY_FILE"),
        )

    @property
    def secret_key_file(self) -> Path:
        return self.state_dir / c.SECRET_KEY_FILE

    @property
    def pins_dir(self) -> Path:
        """Where the control side pins node workers' public keys."""
        return self.node_pins_dir or self.state_dir / c.NODE_PINS_DIR

    def redis_ssl(self, url: str | None = None) -> dict[str, str]:
        """redis-py's TLS keyword arguments for a ``rediss://`` URL (``url``, default the configured one;
        empty for any other scheme): the server's certificate is always verified, against
        ``KUBEBOOT_REDIS_TLS_CA_FILE`` (else the system's CAs)."""
        if not (url or self.redis_url or "").startswith("rediss://"):
            return {}
        out = {"ssl_cert_reqs": "required"}
        for name, path in (("ssl_ca_certs", self.redis_tls_ca), ("ssl_certfile", self.redis_tls_cert),
                           ("ssl_keyfile", self.redis_tls_key)):
            if path is not None:
                out[name] = str(path)
        return out

    @property
    def flower_base_url(self) -> str:
        """Where people open Flower: the configured URL, else the local Flower on its port."""
        return (self.flower_url or f"http://127.0.0.1:{self.flower_port}").rstrip("/")

    @property
    def phase_soft_time_limit(self) -> float:
        """Raised inside the phase (``SoftTimeLimitExceeded``) so it can fail with a message before the
        hard limit kills its process."""
        return round(self.phase_time_limit * 0.8, 3)


def check_timing(s: Settings) -> None:
    """The rules of the module docstring; ``ConfigError`` naming the variables of the first one broken."""
    vt, tl, rd, lock = (_var(n) for n in ("VISIBILITY_TIMEOUT", "PHASE_TIME_LIMIT", "RETRY_MAX_DELAY", "LOCK_TTL"))
    if not s.visibility_timeout > s.phase_time_limit + s.retry_max_delay:
        raise ConfigError(
            f"{vt}={s.visibility_timeout:g} must be above {tl}={s.phase_time_limit:g} plus "
            f"{rd}={s.retry_max_delay:g} (seconds): a phase still running or waiting for its retry would be "
            "delivered a second time")
    if not s.lock_ttl > s.visibility_timeout:
        raise ConfigError(
            f"{lock}={s.lock_ttl:g} must be above {vt}={s.visibility_timeout:g} (seconds): a run whose worker "
            "died would lose its cluster lock before its phase is delivered again")


def _with_files(env: dict[str, str]) -> dict[str, str]:
    """``KUBEBOOT_<NAME>_FILE`` read into ``KUBEBOOT_<NAME>`` (trailing newline dropped)."""
    for name in FILE_VARIABLES:
        var, file_var = _var(name), _var(name + "_FILE")
        if file_var not in env:
            continue
        if var in env:
            raise ConfigError(f"set {var} or {file_var}, not both", field=file_var)
        try:
            env[var] = Path(env[file_var]).read_text().strip()
        except OSError as e:
            raise ConfigError(f"cannot read {env[file_var]}: {e.strerror}", field=file_var) from None
        if not env[var]:
            raise ConfigError(f"{env[file_var]} is empty", field=file_var)
    return env


def _path(env: Mapping[str, str], name: str) -> Path | None:
    raw = env.get(_var(name))
    if raw is None:
        return None
    if not os.path.isabs(raw):
        raise ConfigError(f"must be an absolute path, got {raw!r}", field=_var(name))
    return Path(raw)


def parse_secret_key(text: str, *, source: str) -> bytes:
    """Decode a 32-byte key written as 64 hex digits or base64 (standard or URL-safe)."""
    value = text.strip()
    if _HEX_KEY.fullmatch(value):
        return bytes.fromhex(value)
    try:
        raw = base64.b64decode(value.replace("-", "+").replace("_", "/"), validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != SECRET_KEY_BYTES:
        # The message never repeats the value: it is (meant to be) key material.
        raise ConfigError(f"must be {SECRET_KEY_BYTES} bytes written as 64 hex digits or base64", field=source)
    return raw


def default_state_dir(environ: Mapping[str, str]) -> Path:
    """XDG base-directory rule: an absolute ``$XDG_STATE_HOME`` wins, else ``~/.local/state``."""
    xdg = environ.get("XDG_STATE_HOME", "")
    if xdg and os.path.isabs(xdg):
        return Path(xdg) / "kubeboot"
    home = environ.get("HOME") or str(Path("~").expanduser())
    return Path(home) / ".local" / "state" / "kubeboot"


def _var(name: str) -> str:
    return ENV_PREFIX + name


def _redis_url(env: Mapping[str, str]) -> str | None:
    url = env.get(_var("REDIS_URL"))
    if url is not None and not url.startswith(_REDIS_SCHEMES):
        raise ConfigError("must start with redis://, rediss:// or unix://", field=_var("REDIS_URL"))
    return url


def _state_dir(env: Mapping[str, str], environ: Mapping[str, str]) -> Path:
    raw = env.get(_var("STATE_DIR"))
    if raw is None:
        return default_state_dir(environ)
    if raw.startswith("~"):
        home = environ.get("HOME") or str(Path("~").expanduser())
        raw = home + raw[1:]
    if not os.path.isabs(raw):
        # A relative state dir would silently depend on the working directory of each process.
        raise ConfigError(f"must be an absolute path, got {raw!r}", field=_var("STATE_DIR"))
    return Path(raw)


def _secret_key(env: Mapping[str, str]) -> bytes | None:
    text = env.get(_var("SECRET_KEY"))
    return None if text is None else parse_secret_key(text, source=_var("SECRET_KEY"))


def _positive_int(env: Mapping[str, str], name: str, default: int, maximum: int | None = None) -> int:
    text = env.get(_var(name))
    if text is None:
        return default
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value <= 0 or (maximum is not None and value > maximum):
        bound = f" at most {maximum}" if maximum else ""
        raise ConfigError(f"must be a positive whole number{bound}, got {text!r}", field=_var(name))
    return value


def _positive_duration(env: Mapping[str, str], name: str, default: float) -> float:
    """Seconds, written as a number of seconds or a Go duration (``24h``, ``1h30m``)."""
    text = env.get(_var(name))
    if text is None:
        return default
    try:
        value = parse_seconds(text)
    except ValueError:
        value = 0.0
    if not value > 0 or value == float("inf"):
        raise ConfigError(f"must be a positive duration (seconds, or e.g. 90m, 24h), got {text!r}", field=_var(name))
    return value


def _flower_url(env: Mapping[str, str]) -> str | None:
    url = env.get(_var("FLOWER_URL"))
    if url is not None and not url.startswith(("http://", "https://")):
        raise ConfigError("must start with http:// or https://", field=_var("FLOWER_URL"))
    return url


def _basic_auth(env: Mapping[str, str]) -> str | None:
    text = env.get(_var("FLOWER_BASIC_AUTH"))
    if text is None:
        return None
    # Flower's --basic-auth format: comma-separated user:password pairs, each part non-empty.
    for pair in text.split(","):
        user, sep, password = pair.partition(":")
        if not (user and sep and password):
            raise ConfigError("must be user:password pairs separated by commas", field=_var("FLOWER_BASIC_AUTH"))
    return text
