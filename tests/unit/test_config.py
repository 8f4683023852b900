"""Configuration from BACKEND_* variables: parsing, fail-over lists and secret hygiene."""

import pytest

from backendai_jupyter.client import ClientConfig, ConfigError

BASE = {
    "BACKEND_ENDPOINT": "http://127.0.0.1:8081",
    "BACKEND_ACCESS_KEY": "AKTEST",
    "BACKEND_SECRET_KEY": "very-secret-value",
}


def test_from_env_defaults() -> None:
    cfg = ClientConfig.from_env(BASE)
    assert str(cfg.endpoint) == "http://127.0.0.1:8081"
    assert cfg.endpoint_type == "api"
    assert (cfg.domain, cfg.group) == ("default", "default")
    assert cfg.skip_ssl_verify is False
    assert cfg.connection_timeout == 10.0 and cfg.read_timeout is None


def test_from_env_everything() -> None:
    env = {
        **BASE,
        "BACKEND_ENDPOINT": "https://a.example:8443, https://b.example/api",
        "BACKEND_DOMAIN": "d",
        "BACKEND_GROUP": "g",
        "BACKEND_VFOLDER_MOUNTS": "data, models,",
        "BACKEND_SKIP_SSLCERT_VALIDATION": "yes",
        "BACKEND_CONNECTION_TIMEOUT": "3.5",
        "BACKEND_READ_TIMEOUT": "60",
    }
    cfg = ClientConfig.from_env(env)
    assert [str(u) for u in cfg.endpoints] == ["https://a.example:8443", "https://b.example/api"]
    assert (cfg.domain, cfg.group, cfg.vfolder_mounts) == ("d", "g", ("data", "models"))
    assert cfg.skip_ssl_verify is True
    assert (cfg.connection_timeout, cfg.read_timeout) == (3.5, 60.0)


def test_session_mode_needs_no_keys() -> None:
    cfg = ClientConfig.from_env(
        {"BACKEND_ENDPOINT": "http://web:8090", "BACKEND_ENDPOINT_TYPE": "session"}
    )
    assert cfg.endpoint_type == "session"


def test_overrides_win() -> None:
    cfg = ClientConfig.from_env(BASE, group="other", endpoint="http://x:1")
    assert cfg.group == "other" and str(cfg.endpoint) == "http://x:1"


@pytest.mark.parametrize(
    "changes,message",
    [
        ({"BACKEND_ENDPOINT": "127.0.0.1:8081"}, "malformed endpoint URL: '127.0.0.1:8081'"),
        ({"BACKEND_ENDPOINT": "ftp://host"}, "malformed endpoint URL"),
        ({"BACKEND_ENDPOINT": "http://"}, "malformed endpoint URL"),
        ({"BACKEND_ENDPOINT": " , "}, "no endpoint URL given"),
        ({"BACKEND_ENDPOINT": "http://u:pw@host"}, "must not contain credentials"),
        ({"BACKEND_ENDPOINT": ""}, "set BACKEND_ENDPOINT"),
        ({"BACKEND_ACCESS_KEY": ""}, "missing access key: set BACKEND_ACCESS_KEY"),
        ({"BACKEND_SECRET_KEY": ""}, "missing secret key: set BACKEND_SECRET_KEY"),
        ({"BACKEND_ENDPOINT_TYPE": "grpc"}, "must be 'api' or 'session'"),
        ({"BACKEND_SKIP_SSLCERT_VALIDATION": "maybe"}, "must be a boolean"),
        ({"BACKEND_CONNECTION_TIMEOUT": "soon"}, "must be a number of seconds"),
    ],
)
def test_bad_config(changes: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        ClientConfig.from_env({**BASE, **changes})
    assert message in str(info.value)
    assert "\n" not in str(info.value)
    assert "very-secret-value" not in str(info.value)


def test_secret_never_shown() -> None:
    cfg = ClientConfig.from_env(BASE)
    assert "very-secret-value" not in repr(cfg)
    assert "very-secret-value" not in str(cfg.describe())
    assert cfg.describe()["secret_key"] == "(set)"


@pytest.mark.parametrize(
    "extra,limit,transport",
    [
        ({}, 300.0, "rest"),
        ({"BACKEND_OUTAGE_LIMIT": "30"}, 30.0, "rest"),
        ({"BACKEND_OUTAGE_LIMIT": "0"}, float("inf"), "rest"),
        ({"BACKEND_EXECUTE_TRANSPORT": "WebSocket"}, 300.0, "websocket"),
    ],
)
def test_outage_limit_and_execute_transport(extra: dict[str, str], limit: float, transport: str) -> None:
    cfg = ClientConfig.from_env({**BASE, **extra})
    assert (cfg.outage_limit, cfg.execute_transport) == (limit, transport)


@pytest.mark.parametrize(
    "extra,message",
    [
        ({"BACKEND_OUTAGE_LIMIT": "soon"}, "BACKEND_OUTAGE_LIMIT must be a number of seconds"),
        ({"BACKEND_EXECUTE_TRANSPORT": "pigeon"}, "BACKEND_EXECUTE_TRANSPORT must be 'rest' or 'websocket'"),
    ],
)
def test_bad_outage_settings(extra: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        ClientConfig.from_env({**BASE, **extra})
