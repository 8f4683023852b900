"""Where the kernel and the magics get their configuration: the user's ``BACKEND_*`` variables, or,
when no endpoint is configured, the embedded local endpoint (started on demand).
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Mapping
from typing import Any

from ._config import ClientConfig

__all__ = ["DEFAULT_IMAGE", "default_image", "load_config"]

#: The image sessions use when none is named: the stock Backend.AI Python image. The local
#: endpoint runs any image name with this machine's Python.
DEFAULT_IMAGE = "cr.backend.ai/stable/python:3.13-ubuntu24.04"


def default_image(env: Mapping[str, str] | None = None) -> str:
    """``$BACKEND_IMAGE``, else :data:`DEFAULT_IMAGE`."""
    value = (os.environ if env is None else env).get("BACKEND_IMAGE", "").strip()
    return value or DEFAULT_IMAGE

_announced = threading.Event()


def load_config(
    env: Mapping[str, str] | None = None, *, announce: bool = True, **overrides: Any
) -> ClientConfig:
    """Build a :class:`ClientConfig`; fall back to the local endpoint when none is configured.

    Blocking (it may start the local endpoint, ~1 s): call it from a thread or at start-up.
    The fall-back is announced once per process on stderr (never with the secret key).
    """
    values = dict(os.environ if env is None else env)
    configured = values.get("BACKEND_ENDPOINT") or values.get("SORNA_ENDPOINT")
    if not (configured or overrides.get("endpoint") or overrides.get("endpoints")):
        # Imported lazily: the server's dependencies are an optional extra.
        from ..server.local import ensure_local_endpoint

        local = ensure_local_endpoint()
        values.update(local)
        if announce and not _announced.is_set():
            _announced.set()
            print(
                "backendai-jupyter: BACKEND_ENDPOINT is not set; using the embedded local "
                f"endpoint at {local.get('BACKEND_ENDPOINT')} (sessions run on this machine)",
                file=sys.stderr,
            )
    return ClientConfig.from_env(values, **overrides)
