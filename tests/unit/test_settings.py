"""Settings come from KUBEBOOT_* variables, with documented defaults and one-line errors naming the variable."""

from __future__ import annotations

import base64
import dataclasses
from pathlib import Path

import pytest

from kubeboot.config.errors import ConfigError
from kubeboot.config.settings import Settings, parse_secret_key

KEY = bytes(range(32))
HOME = {"HOME": "/home/ada"}


def test_an_empty_environment_gives_the_documented_defaults() -> None:
    s = Settings.from_env(HOME)
    assert s.redis_url is None
    assert s.state_dir == Path("/home/ada/.local/state/kubeboot")
    assert s.secret_key is None
    assert s.visibility_timeout == 600
    assert (s.phase_time_limit, s.phase_soft_time_limit, s.retry_max_delay) == (150.0, 120.0, 30.0)
    assert s.lock_ttl == 900.0
    assert s.secret_ttl == 24 * 3600.0
    assert (s.flower_url, s.flower_port, s.flower_basic_auth) == (None, 5555, None)
    assert s.flower_base_url == "http://127.0.0.1:5555"
    assert s.secret_key_file == Path("/home/ada/.local/state/kubeboot/secret.key")


def test_every_variable_is_read() -> None:
    s = Settings.from_env({
        **HOME,
        "KUBEBOOT_REDIS_URL": "redis://redis.example:6379/2",
        "KUBEBOOT_STATE_DIR": "/var/lib/kubeboot-state",
        "KUBEBOOT_SECRET_KEY": KEY.hex(),
        "KUBEBOOT_VISIBILITY_TIMEOUT": "900",
        "KUBEBOOT_FLOWER_URL": "https://flower.example/",
        "KUBEBOOT_FLOWER_PORT": "5566",
        "KUBEBOOT_FLOWER_BASIC_AUTH": "ops:s3cret,dev:pw",
        "KUBEBOOT_LOCK_TTL": "1200.5",
        "KUBEBOOT_SECRET_TTL": "90m",
        "KUBEBOOT_PHASE_TIME_LIMIT": "5m",
        "KUBEBOOT_RETRY_MAX_DELAY": "45",
    })
    assert s == Settings(
        redis_url="redis://redis.example:6379/2", state_dir=Path("/var/lib/kubeboot-state"), secret_key=KEY,
        visibility_timeout=900, flower_url="https://flower.example/", flower_port=5566,
        flower_basic_auth="ops:s3cret,dev:pw", lock_ttl=1200.5, secret_ttl=5400.0, phase_time_limit=300.0,
        retry_max_delay=45.0,
    )
    assert s.flower_base_url == "https://flower.example"


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        pytest.param({"XDG_STATE_HOME": "/xdg/state"}, "/xdg/state/kubeboot", id="an absolute XDG_STATE_HOME wins"),
        pytest.param({"XDG_STATE_HOME": "rel/state"}, "/home/ada/.local/state/kubeboot",
                     id="a relative XDG_STATE_HOME is ignored, as the XDG spec says"),
        pytest.param({"XDG_STATE_HOME": "/xdg", "KUBEBOOT_STATE_DIR": "/explicit"}, "/explicit",
                     id="KUBEBOOT_STATE_DIR wins over XDG"),
        pytest.param({"KUBEBOOT_STATE_DIR": "~/kb"}, "/home/ada/kb", id="a leading tilde means HOME"),
        pytest.param({"KUBEBOOT_STATE_DIR": ""}, "/home/ada/.local/state/kubeboot",
                     id="an empty variable counts as unset"),
    ],
)
def test_the_state_dir_is_chosen_by_precedence(env: dict[str, str], expected: str) -> None:
    assert Settings.from_env({**HOME, **env}).state_dir == Path(expected)


@pytest.mark.parametrize(
    "written",
    [
        pytest.param(KEY.hex(), id="64 hex digits"),
        pytest.param(KEY.hex().upper(), id="upper-case hex"),
        pytest.param(base64.b64encode(KEY).decode(), id="standard base64"),
        pytest.param(base64.urlsafe_b64encode(KEY).decode(), id="url-safe base64"),
        pytest.param(" " + base64.b64encode(KEY).decode() + "\n", id="base64 with surrounding whitespace"),
    ],
)
def test_the_secret_key_is_accepted_as_hex_or_base64(written: str) -> None:
    assert Settings.from_env({**HOME, "KUBEBOOT_SECRET_KEY": written}).secret_key == KEY


@pytest.mark.parametrize(("written", "seconds"), [
    pytest.param("3600", 3600.0, id="seconds"),
    pytest.param("0.5", 0.5, id="a fraction of a second"),
    pytest.param("24h", 86400.0, id="a Go duration"),
    pytest.param("1h30m", 5400.0, id="a Go duration of several units"),
])
def test_the_secret_ttl_is_seconds_or_a_go_duration(written: str, seconds: float) -> None:
    assert Settings.from_env({**HOME, "KUBEBOOT_SECRET_TTL": written}).secret_ttl == seconds


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        pytest.param("KUBEBOOT_REDIS_URL", "localhost:6379", id="a redis url without scheme"),
        pytest.param("KUBEBOOT_STATE_DIR", "relative/dir", id="a relative state dir"),
        pytest.param("KUBEBOOT_SECRET_KEY", "c2hvcnQ=", id="a 5-byte secret key"),
        pytest.param("KUBEBOOT_SECRET_KEY", "zz" * 32, id="a secret key that is neither hex nor base64"),
        pytest.param("KUBEBOOT_VISIBILITY_TIMEOUT", "ten", id="a visibility timeout that is not a number"),
        pytest.param("KUBEBOOT_VISIBILITY_TIMEOUT", "0", id="a zero visibility timeout"),
        pytest.param("KUBEBOOT_FLOWER_PORT", "70000", id="a flower port above 65535"),
        pytest.param("KUBEBOOT_FLOWER_URL", "flower:5555", id="a flower url without scheme"),
        pytest.param("KUBEBOOT_FLOWER_BASIC_AUTH", "admin", id="basic auth without a password"),
        pytest.param("KUBEBOOT_FLOWER_BASIC_AUTH", "a:b,:c", id="basic auth with an empty user"),
        pytest.param("KUBEBOOT_LOCK_TTL", "-1", id="a negative lock ttl"),
        pytest.param("KUBEBOOT_LOCK_TTL", "nan", id="a lock ttl that is not a number"),
        pytest.param("KUBEBOOT_SECRET_TTL", "0", id="a zero secret ttl"),
        pytest.param("KUBEBOOT_SECRET_TTL", "-5m", id="a negative secret ttl"),
        pytest.param("KUBEBOOT_SECRET_TTL", "1 day", id="a secret ttl that is no duration"),
        pytest.param("KUBEBOOT_PHASE_TIME_LIMIT", "0s", id="a zero phase time limit"),
        pytest.param("KUBEBOOT_RETRY_MAX_DELAY", "soon", id="a retry delay that is no duration"),
    ],
)
def test_a_bad_value_is_a_config_error_naming_the_variable(variable: str, value: str) -> None:
    with pytest.raises(ConfigError) as err:
        Settings.from_env({**HOME, variable: value})
    assert str(err.value).startswith(f"{variable}: ")
    assert "\n" not in str(err.value)


def test_a_bad_secret_key_is_never_echoed_in_the_error() -> None:
    leaked = "0123456789abcdef0123456789abcdef"  # hex, but only 16 bytes
    with pytest.raises(ConfigError) as err:
        Settings.from_env({**HOME, "KUBEBOOT_SECRET_KEY": leaked})
    assert leaked not in str(err.value)


def test_the_repr_hides_the_key_and_the_flower_password() -> None:
    s = Settings.from_env({**HOME, "KUBEBOOT_SECRET_KEY": KEY.hex(), "KUBEBOOT_FLOWER_BASIC_AUTH": "ops:hunter2"})
    assert "hunter2" not in repr(s)
    assert repr(KEY) not in repr(s)
    assert KEY.hex() not in repr(s)


def test_settings_are_frozen() -> None:
    s = Settings.from_env(HOME)
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.lock_ttl = 1.0  # type: ignore[misc]


def test_parse_secret_key_names_its_source() -> None:
    with pytest.raises(ConfigError, match=r"^/state/secret\.key: must be 32 bytes"):
        parse_secret_key("not a key", source="/state/secret.key")


# --- the timing variables, checked together -----------------------------------------------------------
VT, TL, RD = "KUBEBOOT_VISIBILITY_TIMEOUT", "KUBEBOOT_PHASE_TIME_LIMIT", "KUBEBOOT_RETRY_MAX_DELAY"


@pytest.mark.parametrize(
    ("env", "named"),
    [
        pytest.param({"KUBEBOOT_VISIBILITY_TIMEOUT": "60"},
                     (f"{VT}=60", f"{TL}=150", f"{RD}=30"),
                     id="a visibility timeout below a phase's hard limit: a running phase is delivered again"),
        pytest.param({"KUBEBOOT_PHASE_TIME_LIMIT": "10m"},
                     (f"{VT}=600", f"{TL}=600", f"{RD}=30"),
                     id="a hard limit that reaches the visibility timeout"),
        pytest.param({"KUBEBOOT_RETRY_MAX_DELAY": "450"},
                     (f"{VT}=600", f"{TL}=150", f"{RD}=450"),
                     id="a retry delay that pushes a waiting retry past the visibility timeout"),
        pytest.param({"KUBEBOOT_LOCK_TTL": "300"}, ("KUBEBOOT_LOCK_TTL=300", "KUBEBOOT_VISIBILITY_TIMEOUT=600"),
                     id="a lock ttl below the visibility timeout: a dead worker's run loses its cluster"),
        pytest.param({"KUBEBOOT_VISIBILITY_TIMEOUT": "1200"},
                     ("KUBEBOOT_LOCK_TTL=900", "KUBEBOOT_VISIBILITY_TIMEOUT=1200"),
                     id="a longer visibility timeout without a longer lock ttl"),
    ],
)
def test_a_bad_combination_of_timing_variables_is_one_error_naming_them(
    env: dict[str, str], named: tuple[str, ...]
) -> None:
    with pytest.raises(ConfigError) as err:
        Settings.from_env({**HOME, **env})
    message = str(err.value)
    assert "\n" not in message
    for variable in named:
        assert variable in message


@pytest.mark.parametrize(
    "env",
    [
        pytest.param({}, id="the defaults"),
        pytest.param({"KUBEBOOT_VISIBILITY_TIMEOUT": "40", "KUBEBOOT_PHASE_TIME_LIMIT": "25",
                      "KUBEBOOT_RETRY_MAX_DELAY": "10", "KUBEBOOT_LOCK_TTL": "60"}, id="all shorter, in proportion"),
        pytest.param({"KUBEBOOT_VISIBILITY_TIMEOUT": "3600", "KUBEBOOT_LOCK_TTL": "2h"}, id="all longer"),
    ],
)
def test_consistent_timing_variables_are_accepted(env: dict[str, str]) -> None:
    s = Settings.from_env({**HOME, **env})
    assert s.visibility_timeout > s.phase_time_limit + s.retry_max_delay
    assert s.lock_ttl > s.visibility_timeout


def test_settings_built_in_code_are_checked_too() -> None:
    with pytest.raises(ConfigError, match="KUBEBOOT_LOCK_TTL=10 must be above KUBEBOOT_VISIBILITY_TIMEOUT=600"):
        Settings(lock_ttl=10)
