"""Client configuration: explicit arguments first, then the ``BACKEND_*`` variables users have.

No module globals: a :class:`ClientConfig` is built once and passed to the :class:`Client`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from yarl import URL

from ._exceptions import ConfigError
from .parsing import parse_bool

__all__ = ["ClientConfig", "EndpointType", "parse_endpoints"]

EndpointType = Literal["api", "session"]


def _env(env: Mapping[str, str], name: str) -> str | None:
    # The official client also reads the legacy SORNA_ prefix.
    value = env.get(f"BACKEND_{name}")
    if value is None:
        value = env.get(f"SORNA_{name}")
    return value


def _parse_seconds(name: str, text: str | None, default: float | None) -> float | None:
    if text is None or not text.strip():
        return default
    try:
        value = float(text)
    except ValueError:
        raise ConfigError(f"BACKEND_{name} must be a number of seconds, got {text!r}") from None
    if value <= 0:
        return None
    return value


def parse_endpoints(text: str | URL | list[str] | tuple[str, ...]) -> tuple[URL, ...]:
    """Parse one endpoint URL or a comma-separated fail-over list.

    Raises :class:`ConfigError` naming the bad entry: only ``http``/``https`` URLs with a host.
    """
    if isinstance(text, URL):
        items = [str(text)]
    elif isinstance(text, str):
        items = text.split(",")
    else:
        items = list(text)
    urls: list[URL] = []
    for raw in items:
        item = raw.strip()
        if not item:
            continue
        try:
            url = URL(item)
        except (ValueError, TypeError):
            raise ConfigError(f"malformed endpoint URL: {item!r}") from None
        if url.scheme not in ("http", "https") or not url.host:
            raise ConfigError(
                f"malformed endpoint URL: {item!r} (expected http[s]://host[:port][/path])"
            )
        if url.user or url.password:
            raise ConfigError(f"endpoint URL must not contain credentials: {url.host}")
        # The path is kept (a manager behind a reverse proxy prefix); query/fragment are not.
        urls.append(url.with_query(None).with_fragment(None))
    if not urls:
        raise ConfigError("no endpoint URL given")
    return tuple(urls)


@dataclass(frozen=True)
class ClientConfig:
    """Everything the client needs to talk to one Backend.AI manager (or webserver).

    The secret key is excluded from ``repr`` and from :meth:`describe`.
    """

    endpoints: tuple[URL, ...]
    access_key: str = ""
    secret_key: str = field(default="", repr=False)
    endpoint_type: EndpointType = "api"
    domain: str = "default"
    group: str = "default"
    vfolder_mounts: tuple[str, ...] = ()
    skip_ssl_verify: bool = False
    connection_timeout: float | None = 10.0
    read_timeout: float | None = None
    hash_type: str = "sha256"
    #: Pin an API version instead of negotiating (e.g. ``"v5.20191215"``).
    api_version: str | None = None
    #: Seconds a run keeps retrying while the manager is unreachable (``BACKEND_OUTAGE_LIMIT``).
    outage_limit: float = 300.0
    #: How ``transport="auto"`` runs code (``BACKEND_EXECUTE_TRANSPORT``): ``rest`` survives a
    #: manager restart (output in 2 s batches); ``websocket`` streams every 0.2 s but loses the
    #: run, and the session, when the manager restarts mid-run (see :mod:`.execution`).
    execute_transport: Literal["rest", "websocket"] = "rest"
    #: Folder transfers through a same-machine endpoint's socket, the file's descriptor instead
    #: of its bytes (``BACKEND_LOCAL_TRANSFERS``; see :mod:`._local_transfer`).
    local_transfers: bool = True

    def __post_init__(self) -> None:
        if self.endpoint_type not in ("api", "session"):
            raise ConfigError(
                f"BACKEND_ENDPOINT_TYPE must be 'api' or 'session', got {self.endpoint_type!r}"
            )
        if self.execute_transport not in ("rest", "websocket"):
            raise ConfigError(
                "BACKEND_EXECUTE_TRANSPORT must be 'rest' or 'websocket', "
                f"got {self.execute_transport!r}"
            )
        if self.endpoint_type == "api":
            if not self.access_key:
                raise ConfigError("missing access key: set BACKEND_ACCESS_KEY")
            if not self.secret_key:
                raise ConfigError("missing secret key: set BACKEND_SECRET_KEY")

    @property
    def endpoint(self) -> URL:
        return self.endpoints[0]

    def with_(self, **changes: Any) -> ClientConfig:
        return replace(self, **changes)

    def describe(self) -> dict[str, str]:
        """A printable view of the configuration; the secret key is never shown."""
        return {
            "endpoint": ", ".join(str(u) for u in self.endpoints),
            "endpoint_type": self.endpoint_type,
            "access_key": self.access_key,
            "secret_key": "(set)" if self.secret_key else "(not set)",
            "domain": self.domain,
            "group": self.group,
            "vfolder_mounts": ", ".join(self.vfolder_mounts),
            "skip_ssl_verify": str(self.skip_ssl_verify),
            "connection_timeout": str(self.connection_timeout),
            "read_timeout": str(self.read_timeout),
            "outage_limit": str(self.outage_limit),
            "execute_transport": self.execute_transport,
            "local_transfers": str(self.local_transfers),
        }

    @classmethod
    def from_env(
        cls,
        env: Mapping[str, str] | None = None,
        **overrides: Any,
    ) -> ClientConfig:
        """Build a config from ``BACKEND_*`` variables; keyword arguments win over them."""
        env = os.environ if env is None else env
        endpoint_text = overrides.pop("endpoint", None) or _env(env, "ENDPOINT")
        if not endpoint_text:
            raise ConfigError("no Backend.AI endpoint configured: set BACKEND_ENDPOINT")
        values: dict[str, Any] = {"endpoints": parse_endpoints(endpoint_text)}
        text = _env(env, "ENDPOINT_TYPE")
        if text:
            values["endpoint_type"] = text.strip().lower()
        for name, key in (
            ("access_key", "ACCESS_KEY"),
            ("secret_key", "SECRET_KEY"),
            ("domain", "DOMAIN"),
            ("group", "GROUP"),
        ):
            text = _env(env, key)
            if text:
                values[name] = text.strip()
        text = _env(env, "VFOLDER_MOUNTS")
        if text:
            values["vfolder_mounts"] = tuple(m.strip() for m in text.split(",") if m.strip())
        text = _env(env, "SKIP_SSLCERT_VALIDATION")
        if text is not None:
            values["skip_ssl_verify"] = parse_bool(
                "BACKEND_SKIP_SSLCERT_VALIDATION", text, expected="a boolean (true/false)",
                error=ConfigError,
            )
        values["connection_timeout"] = _parse_seconds(
            "CONNECTION_TIMEOUT", _env(env, "CONNECTION_TIMEOUT"), 10.0
        )
        values["read_timeout"] = _parse_seconds("READ_TIMEOUT", _env(env, "READ_TIMEOUT"), None)
        limit = _parse_seconds("OUTAGE_LIMIT", _env(env, "OUTAGE_LIMIT"), 300.0)
        values["outage_limit"] = float("inf") if limit is None else limit  # 0: never give up
        text = _env(env, "EXECUTE_TRANSPORT")
        if text:
            values["execute_transport"] = text.strip().lower()
        text = _env(env, "LOCAL_TRANSFERS")
        if text is not None:
            values["local_transfers"] = parse_bool(
                "BACKEND_LOCAL_TRANSFERS", text, expected="a boolean (true/false)",
                error=ConfigError,
            )
        text = _env(env, "API_VERSION")
        if text:
            values["api_version"] = text.strip()
        values.update({k: v for k, v in overrides.items() if v is not None})
        if "endpoints" in overrides or isinstance(values.get("endpoints"), str):
            values["endpoints"] = parse_endpoints(values["endpoints"])
        if values.get("endpoint_type") == "session":
            values.setdefault("access_key", "")
            values.setdefault("secret_key", "")
        return cls(**values)
