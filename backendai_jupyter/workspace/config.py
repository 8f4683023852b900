"""The one configuration of a workspace: where to connect and what session the kernel wants.

Two kinds of settings share one ``%backendai config set KEY=VALUE ...`` grammar
(:func:`split_items`, pure):

* **client settings** (:data:`CLIENT_KEYS`): ``endpoint``, ``access_key``, ... They become
  ``BACKEND_*`` overrides on top of the process environment; :func:`load_config` turns the
  result into a :class:`~..client.ClientConfig`.
* **session settings** (:class:`~.settings.SessionSettings` keys): ``image``, ``resources``,
  ``mounts``, ``env``, ``start``, ``keep``, ``name``, ``rich``, ``scaling_group``,
  ``upload_dir``, ``upload_max``, ``upload_file_max``.

When no endpoint is configured at all, :func:`load_config` starts (or reuses) the embedded local
endpoint. That fallback lives here, above the client: the client library never starts a server.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Iterable, Mapping
from typing import Any

from ..client import ClientConfig, ConfigError, LocalEndpointError
from .settings import SESSION_KEYS

__all__ = ["CLIENT_KEYS", "load_config", "split_items"]

#: ``%backendai config set`` key → the ``BACKEND_*`` variable it overrides.
CLIENT_KEYS: Mapping[str, str] = {
    "endpoint": "BACKEND_ENDPOINT",
    "endpoint_type": "BACKEND_ENDPOINT_TYPE",
    "access_key": "BACKEND_ACCESS_KEY",
    "secret_key": "BACKEND_SECRET_KEY",
    "domain": "BACKEND_DOMAIN",
    "group": "BACKEND_GROUP",
    "vfolder_mounts": "BACKEND_VFOLDER_MOUNTS",
    "skip_ssl_verify": "BACKEND_SKIP_SSLCERT_VALIDATION",
    "api_version": "BACKEND_API_VERSION",
    "outage_limit": "BACKEND_OUTAGE_LIMIT",
    "execute_transport": "BACKEND_EXECUTE_TRANSPORT",
}


def _key(text: str) -> str:
    return text.strip().lower().replace("-", "_")


def split_items(items: Iterable[str]) -> tuple[dict[str, str], dict[str, str]]:
    """``["endpoint=URL", "image=python"]`` → (``BACKEND_*`` overrides, session settings).

    Pure. Raises :class:`ConfigError` for a word without ``=`` or an unknown key.
    """
    client: dict[str, str] = {}
    session: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = _key(key)
        if not sep:
            raise ConfigError(f"expected KEY=VALUE, got {item!r}")
        if key in CLIENT_KEYS:
            client[CLIENT_KEYS[key]] = value.strip()
        elif key in SESSION_KEYS:
            session[key] = value.strip()
        else:
            known = ", ".join([*CLIENT_KEYS, *SESSION_KEYS])
            raise ConfigError(f"unknown key {key!r} (one of {known})")
    return client, session


_announced = threading.Event()


def load_config(
    env: Mapping[str, str] | None = None, *, announce: bool = True, **overrides: Any
) -> ClientConfig:
    """Build a :class:`ClientConfig`; fall back to the local endpoint when none is configured.

    Blocking (it may start the local endpoint, ~1 s): call it from a thread or at start-up.
    The fall-back is announced once per process on stderr (never with the secret key); its
    failure is a :class:`LocalEndpointError`.
    """
    values = dict(os.environ if env is None else env)
    configured = values.get("BACKEND_ENDPOINT") or values.get("SORNA_ENDPOINT")
    if not (configured or overrides.get("endpoint") or overrides.get("endpoints")):
        try:
            # Imported lazily: the server's dependencies are an optional extra.
            from ..server.local import ensure_local_endpoint

            local = ensure_local_endpoint()
        except (ImportError, OSError, RuntimeError) as e:
            raise LocalEndpointError(
                "BACKEND_ENDPOINT is not set and the embedded local endpoint did not start: "
                f"{e}"
            ) from e
        values.update(local)
        # The embedded endpoint's sessions end with it (crash safety reaps them), so a run has
        # nothing to resume across its restart: stream over the websocket, which flushes every
        # 0.2 s, instead of REST's 2 s long polls. An explicit choice still wins.
        values.setdefault("BACKEND_EXECUTE_TRANSPORT", "websocket")
        if announce and not _announced.is_set():
            _announced.set()
            print(
                "backendai-jupyter: BACKEND_ENDPOINT is not set; using the embedded local "
                f"endpoint at {local.get('BACKEND_ENDPOINT')} (sessions run on this machine)",
                file=sys.stderr,
            )
    return ClientConfig.from_env(values, **overrides)
